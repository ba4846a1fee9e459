"""``otce-ray bench ot``: our streamed Sinkhorn against POT on the same pixel sets, eps and tolerance.

Each solve runs in a fresh process so its peak memory (VmHWM above the resident size before the solve) is its own.
Both sides solve the same problem: the cost centred and divided by the same cost scale, the same eps, and the same
stopping rule expressed as the L1 error of the plan's marginals. POT stops on the L2 error of one marginal, so its
threshold starts where an L1 error spread evenly would put it (4 tol / sqrt(n)) and halves until its plan meets our
L1 tolerance. The peer is the fastest POT configuration whose plan converges: plain ``sinkhorn`` in float32 (what
our solver computes in) and in float64; the log-domain methods only when neither converges. The last printed line
is one JSON object for scripts.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import time
from typing import Any

import numpy as np

POT_CONFIGURATIONS = (("sinkhorn", "float32"), ("sinkhorn", "float64"))
POT_FALLBACKS = (("sinkhorn_stabilized", "float64"), ("sinkhorn_log", "float64"))
POT_MAX_ITERATIONS = 100_000
POT_THRESHOLD_TRIES = 8
CLASSES = 8


def pixel_sets(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two labelled pixel sets like a source model's features on two domains: class clusters, shifted and noisier
    on the target side, with target labels a different label set (a permutation of the source classes)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(CLASSES, dim))
    ys = rng.integers(0, CLASSES, n)
    yt = rng.integers(0, CLASSES, n)
    xs = centres[ys] + rng.normal(size=(n, dim))
    xt = centres[yt] + 0.5 + 1.5 * rng.normal(size=(n, dim))
    return xs.astype(np.float32), ys, xt.astype(np.float32), (yt * 3) % CLASSES


def _peak_reset() -> int:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kib("VmRSS")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _ours(n: int, dim: int, seed: int, epsilon: float, tolerance: float, device: str) -> dict[str, Any]:
    from otce_ray.scoring.estimator import otce_score

    xs, ys, xt, yt = pixel_sets(n, dim, seed)
    base = _peak_reset()
    started = time.perf_counter()
    result = otce_score(xs, ys, xt, yt, n_pixels=n, repeats=1, epsilon=epsilon, tolerance=tolerance, device=device)
    seconds = time.perf_counter() - started
    record = result.repeats[0]
    return {
        "method": f"otce-ray ({result.device})",
        "seconds": seconds,
        "iterations": record.iterations,
        "marginal_error": record.marginal_error,
        "conditional_entropy": record.conditional_entropy,
        "peak_mib": (_status_kib("VmHWM") - base) / 1024,
        "converged": record.converged,
    }


def _pot(n: int, dim: int, seed: int, epsilon: float, tolerance: float, method: str, dtype: str, threshold: float):
    import warnings

    import ot
    import torch

    from otce_ray.scoring.cost_scale import normalise
    from otce_ray.scoring.entropy import conditional_entropy

    xs, ys, xt, yt = pixel_sets(n, dim, seed)
    base = _peak_reset()
    started = time.perf_counter()
    source, target, _ = normalise(torch.from_numpy(xs), torch.from_numpy(xt))
    cost = ot.dist(source.numpy().astype(dtype), target.numpy().astype(dtype))
    a = np.full(n, 1.0 / n, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = ot.sinkhorn(a, a, cost, epsilon, method=method, numItermax=POT_MAX_ITERATIONS,
                                stopThr=threshold, log=True)
    joint = np.eye(CLASSES)[ys].T @ (plan @ np.eye(CLASSES)[yt])
    seconds = time.perf_counter() - started
    error = float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - a).sum())
    finite = bool(np.isfinite(plan).all() and plan.sum() > 0.5)
    return {
        "method": f"POT {method} {dtype}",
        "seconds": seconds,
        "iterations": int(log.get("niter", len(log.get("err", [])))),
        "marginal_error": error if finite else math.nan,
        "conditional_entropy": conditional_entropy(joint) if finite else math.nan,
        "peak_mib": (_status_kib("VmHWM") - base) / 1024,
        "converged": finite and error <= tolerance,
        "threshold": threshold,
    }


def _in_child(function, *args) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def _pot_converged(n: int, dim: int, seed: int, epsilon: float, tolerance: float, method: str, dtype: str):
    """POT's run at the loosest threshold (within 2x) whose plan meets the L1 tolerance, or None."""
    threshold = 4 * tolerance / math.sqrt(n)
    for _ in range(POT_THRESHOLD_TRIES):
        run = _in_child(_pot, n, dim, seed, epsilon, tolerance, method, dtype, threshold)
        if run["converged"]:
            return run
        if not math.isfinite(run["marginal_error"]):
            return None
        threshold /= 2
    return None


def _pot_peers(n: int, dim: int, seed: int, epsilon: float, tolerance: float) -> list[dict[str, Any]]:
    """Every POT configuration that converges, fastest first; the log-domain ones only if no plain one does."""
    runs = [_pot_converged(n, dim, seed, epsilon, tolerance, *config) for config in POT_CONFIGURATIONS]
    if not any(runs):
        runs = [_pot_converged(n, dim, seed, epsilon, tolerance, *config) for config in POT_FALLBACKS]
    runs = sorted((run for run in runs if run), key=lambda run: run["seconds"])
    return runs or [{"method": "POT (none converged)", "seconds": math.nan, "iterations": 0,
                     "marginal_error": math.nan, "conditional_entropy": math.nan, "peak_mib": math.nan,
                     "converged": False}]


def main(sizes: list[int], dim: int = 64, epsilon: float | None = None, seed: int = 0, device: str = "auto",
         tolerance: float | None = None) -> int:
    from otce_ray.scoring.estimator import DEFAULT_EPSILON
    from otce_ray.scoring.sinkhorn import DEFAULT_TOLERANCE

    epsilon = DEFAULT_EPSILON if epsilon is None else epsilon
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    print(f"# d = {dim}, relative eps = {epsilon} (cost / median cost), L1 marginal tolerance = {tolerance}")
    header = f"{'n':>7} {'method':<28} {'seconds':>9} {'iters':>6} {'marg.err':>9} {'peak MiB':>9} {'CE':>9}"
    print(header)
    summary: dict[str, Any] = {}
    for n in sizes:
        ours = _in_child(_ours, n, dim, seed, epsilon, tolerance, device)
        peers = _pot_peers(n, dim, seed, epsilon, tolerance)
        peer = peers[0]
        for run in (ours, *peers):
            print(f"{n:>7} {run['method']:<28} {run['seconds']:>9.2f} {run['iterations']:>6} "
                  f"{run['marginal_error']:>9.1e} {run['peak_mib']:>9.1f} {run['conditional_entropy']:>9.5f}")
        speedup = peer["seconds"] / ours["seconds"]
        memory = ours["peak_mib"] / peer["peak_mib"] if peer["peak_mib"] else math.nan
        ce_diff = abs(ours["conditional_entropy"] - peer["conditional_entropy"])
        print(f"{n:>7} {'ratio vs ' + peer['method']:<28} speedup {speedup:.2f}x, memory {memory:.3f}, |dCE| {ce_diff:.1e}")
        summary = {
            "n": n, "dim": dim, "epsilon": epsilon, "tolerance": tolerance, "device": ours["method"],
            "peer": peer["method"], "speedup_vs_pot": round(speedup, 3),
            "peak_memory_ratio_vs_pot": round(memory, 4), "ce_abs_diff": ce_diff,
            "ours_seconds": round(ours["seconds"], 3), "pot_seconds": round(peer["seconds"], 3),
            "ours_iterations": ours["iterations"], "pot_iterations": peer["iterations"],
            "ours_peak_mib": round(ours["peak_mib"], 1), "pot_peak_mib": round(peer["peak_mib"], 1),
        }
    print(json.dumps(summary))
    return 0
