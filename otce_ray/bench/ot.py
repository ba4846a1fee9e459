"""``otce-ray bench ot``: our streamed Sinkhorn against POT on the same pixel sets, eps and tolerance.

Each solve runs in a fresh process so its peak memory is its own: on CPU the process's VmHWM above its resident size
before the solve, on CUDA the card's peak allocation above what was allocated before. On CUDA both sides run on the
same card (POT through its torch backend) after a small warm-up solve, so neither pays for CUDA's start-up. Both
solve the same problem: the cost centred and divided by the same cost scale, the same eps, and the same stopping rule
expressed as the L1 error of the plan's marginals. POT stops on the L2 error of one marginal, so its threshold starts
where an L1 error spread evenly would put it (4 tol / sqrt(n)) and halves until its plan meets our L1 tolerance. The
peer is the fastest POT configuration whose plan converges: plain ``sinkhorn`` in float32 (what our solver computes
in) and, on CPU, float64; the log-domain methods only when none converges. Where POT's n x n arrays cannot fit in
the memory free on the device, only ours runs. The last printed line is one JSON object for scripts.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from typing import Any, Callable

import numpy as np

POT_CONFIGURATIONS = {"cpu": (("sinkhorn", "float32"), ("sinkhorn", "float64")), "cuda": (("sinkhorn", "float32"),)}
POT_FALLBACKS = {"cpu": (("sinkhorn_stabilized", "float64"), ("sinkhorn_log", "float64")),
                 "cuda": (("sinkhorn_log", "float32"),)}
POT_ARRAYS = 3  # n x n arrays POT holds at once (cost, kernel, plan): below this much free memory it cannot run
POT_MAX_ITERATIONS = 100_000
POT_THRESHOLD_TRIES = 8
CLASSES = 8
WARM_UP_POINTS = 256


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


def _status_kib(field: str, path: str = "/proc/self/status") -> int:
    with open(path) as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in {path}")


def _peak_meter(device: str) -> Callable[[], float]:
    """Start measuring peak memory on ``device``; the returned function gives the MiB used above the start."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        return lambda: (torch.cuda.max_memory_allocated() - base) / 2**20
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current resident size
    base = _status_kib("VmRSS")
    return lambda: (_status_kib("VmHWM") - base) / 1024


def _free_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    return _status_kib("MemAvailable", "/proc/meminfo") * 1024


def _ours(n: int, dim: int, seed: int, epsilon: float, tolerance: float, device: str) -> dict[str, Any]:
    from otce_ray.scoring.estimator import otce_score

    def solve(points: int):
        xs, ys, xt, yt = pixel_sets(points, dim, seed)
        return otce_score(xs, ys, xt, yt, n_pixels=points, repeats=1, epsilon=epsilon, tolerance=tolerance,
                          device=device)

    if device == "cuda":
        solve(WARM_UP_POINTS)
    peak = _peak_meter(device)
    started = time.perf_counter()
    result = solve(n)  # returns host numbers: the device has finished
    seconds = time.perf_counter() - started
    record = result.repeats[0]
    return {
        "method": f"otce-ray ({result.device})",
        "seconds": seconds,
        "iterations": record.iterations,
        "marginal_error": record.marginal_error,
        "conditional_entropy": record.conditional_entropy,
        "peak_mib": peak(),
        "converged": record.converged,
    }


def _pot(n: int, dim: int, seed: int, epsilon: float, tolerance: float, method: str, dtype: str, threshold: float,
         device: str) -> dict[str, Any]:
    import warnings

    os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")  # JAX would take 75% of the card at import
    import ot
    import torch

    from otce_ray.scoring.cost_scale import normalise
    from otce_ray.scoring.entropy import conditional_entropy

    def solve(points: int, stop: float):
        xs, ys, xt, yt = pixel_sets(points, dim, seed)
        source, target, _ = normalise(torch.from_numpy(xs), torch.from_numpy(xt))
        if device == "cuda":  # POT's torch backend, on the card
            source, target = (side.to(device=device, dtype=getattr(torch, dtype)) for side in (source, target))
        else:  # POT's numpy backend, as most of its users run it
            source, target = (side.numpy().astype(dtype) for side in (source, target))
        cost = ot.dist(source, target)
        a = torch.full((points,), 1.0 / points, dtype=getattr(torch, dtype), device=device)
        weights = a if device == "cuda" else a.numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan, log = ot.sinkhorn(weights, weights, cost, epsilon, method=method, numItermax=POT_MAX_ITERATIONS,
                                    stopThr=stop, log=True)
        plan = torch.as_tensor(plan)
        onehot_s, onehot_t = (torch.nn.functional.one_hot(torch.from_numpy(labels), CLASSES).to(plan)
                              for labels in (ys, yt))
        joint = (onehot_s.T @ (plan @ onehot_t)).double().cpu().numpy()
        error = float((plan.sum(1) - a).abs().sum() + (plan.sum(0) - a).abs().sum())
        return plan, log, joint, error

    if device == "cuda":
        solve(WARM_UP_POINTS, threshold)
    peak = _peak_meter(device)
    started = time.perf_counter()
    plan, log, joint, error = solve(n, threshold)
    seconds = time.perf_counter() - started
    finite = bool(torch.isfinite(plan).all() and float(plan.sum()) > 0.5)
    return {
        "method": f"POT {method} {dtype}" + (" cuda" if device == "cuda" else ""),
        "seconds": seconds,
        "iterations": int(log.get("niter", len(log.get("err", [])))),
        "marginal_error": error if finite else math.nan,
        "conditional_entropy": conditional_entropy(joint) if finite else math.nan,
        "peak_mib": peak(),
        "converged": finite and error <= tolerance,
        "threshold": threshold,
    }


def _in_child(function, *args) -> Any:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def _pot_converged(n: int, dim: int, seed: int, epsilon: float, tolerance: float, method: str, dtype: str,
                   device: str) -> dict[str, Any] | None:
    """POT's run at the loosest threshold (within 2x) whose plan meets the L1 tolerance, or None."""
    threshold = 4 * tolerance / math.sqrt(n)
    for _ in range(POT_THRESHOLD_TRIES):
        run = _in_child(_pot, n, dim, seed, epsilon, tolerance, method, dtype, threshold, device)
        if run["converged"]:
            return run
        if not math.isfinite(run["marginal_error"]):
            return None
        threshold /= 2
    return None


def _pot_peers(n: int, dim: int, seed: int, epsilon: float, tolerance: float, device: str,
               free: int) -> list[dict[str, Any]]:
    """Every POT configuration that converges and fits in ``free`` bytes, fastest first; the log-domain ones only
    if no plain one converges."""
    def runs(configurations):
        fitting = [(method, dtype) for method, dtype in configurations
                   if POT_ARRAYS * n * n * np.dtype(dtype).itemsize <= free]
        return [_pot_converged(n, dim, seed, epsilon, tolerance, method, dtype, device) for method, dtype in fitting]

    found = runs(POT_CONFIGURATIONS[device])
    if not any(found):
        found = runs(POT_FALLBACKS[device])
    return sorted((run for run in found if run), key=lambda run: run["seconds"])


def main(sizes: list[int], dim: int = 64, epsilon: float | None = None, seed: int = 0, device: str = "auto",
         tolerance: float | None = None) -> int:
    from otce_ray.scoring.estimator import DEFAULT_EPSILON
    from otce_ray.scoring.inputs import resolve_device
    from otce_ray.scoring.sinkhorn import DEFAULT_TOLERANCE

    epsilon = DEFAULT_EPSILON if epsilon is None else epsilon
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    kind = resolve_device(device).type
    free = _in_child(_free_bytes, kind)
    print(f"# d = {dim}, relative eps = {epsilon} (cost / median cost), L1 marginal tolerance = {tolerance}, "
          f"device {kind}")
    print(f"{'n':>7} {'method':<28} {'seconds':>9} {'iters':>6} {'marg.err':>9} {'peak MiB':>9} {'CE':>9}")
    summary: dict[str, Any] = {}
    ours_only: list[dict[str, Any]] = []
    for n in sizes:
        ours = _in_child(_ours, n, dim, seed, epsilon, tolerance, kind)
        peers = _pot_peers(n, dim, seed, epsilon, tolerance, kind, free)
        for run in (ours, *peers):
            print(f"{n:>7} {run['method']:<28} {run['seconds']:>9.2f} {run['iterations']:>6} "
                  f"{run['marginal_error']:>9.1e} {run['peak_mib']:>9.1f} {run['conditional_entropy']:>9.5f}")
        if not peers:
            need = POT_ARRAYS * n * n * 4 / 2**30
            print(f"{n:>7} {'no POT peer':<28} none converged, or its n x n arrays (~{need:.1f} GiB in float32) "
                  f"exceed the {free / 2**30:.1f} GiB free")
            ours_only.append({"n": n, "ours_seconds": round(ours["seconds"], 3), "ours_iterations": ours["iterations"],
                              "ours_peak_mib": round(ours["peak_mib"], 1), "converged": ours["converged"]})
            continue
        peer = peers[0]
        speedup = peer["seconds"] / ours["seconds"]
        memory = ours["peak_mib"] / peer["peak_mib"] if peer["peak_mib"] else math.nan
        ce_diff = abs(ours["conditional_entropy"] - peer["conditional_entropy"])
        print(f"{n:>7} {'ratio vs ' + peer['method']:<28} speedup {speedup:.2f}x, memory {memory:.3f}, "
              f"|dCE| {ce_diff:.1e}")
        summary = {
            "n": n, "dim": dim, "epsilon": epsilon, "tolerance": tolerance, "device": ours["method"],
            "peer": peer["method"], "speedup_vs_pot": round(speedup, 3),
            "peak_memory_ratio_vs_pot": round(memory, 4), "ce_abs_diff": ce_diff,
            "ours_seconds": round(ours["seconds"], 3), "pot_seconds": round(peer["seconds"], 3),
            "ours_iterations": ours["iterations"], "pot_iterations": peer["iterations"],
            "ours_peak_mib": round(ours["peak_mib"], 1), "pot_peak_mib": round(peer["peak_mib"], 1),
        }
    print(json.dumps(summary | ({"ours_only": ours_only} if ours_only else {})))
    return 0
