"""``otce-ray bench ot``: our streamed Sinkhorn against POT on the same pixel sets, eps and tolerance.

Two corpora. ``pixels`` (default): clustered pixel sets at ``--sizes``, ours against POT's fastest converging
configuration, with seconds, passes and peak memory per size. ``stress``: the convergence stress corpus
(``otce_ray.bench.stress.BENCH_CORPUS``, the cases up to the largest of ``--sizes``), STRESS_SEEDS clouds per case,
each held to the tolerance, with POT's ``sinkhorn_log`` on the same cost as the reference up to REFERENCE_MAX_N.

Each ``pixels`` solve runs in a fresh process so its peak memory is its own: on CPU the process's VmHWM above its
resident size before the solve, on CUDA the card's peak allocation above what was allocated before. Both sides first
solve a small warm-up problem in that process, so neither is charged for loading library code or for CUDA's start-up
(on CUDA both run on the same card, POT through its torch backend). Both solve the same problem: the cost centred and
divided by the same cost scale, the same eps, and the same stopping rule expressed as the L1 error of the plan's
marginals. POT stops on the L2 error of one marginal, so its threshold starts where an L1 error spread evenly would put
it (4 tol / sqrt(n)) and halves until its plan meets our L1 tolerance. The peer is the fastest POT configuration whose
plan converges: plain ``sinkhorn`` in float32 (what our solver computes in) and, on CPU, float64; the log-domain
methods only when none converges. Where POT's n x n arrays cannot fit in the memory free on the device, only ours
runs. Both plans stop at the tolerance, so each may miss the conditional entropy of the exact entropic plan by more
than the tolerance: the ``pixels`` corpus also prints that reference (ours in float64, far past the tolerance) and
how far each side lands from it. The last printed line is one JSON object for scripts.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from otce_ray.bench.meters import peak_meter, status_kib

POT_CONFIGURATIONS = {"cpu": (("sinkhorn", "float32"), ("sinkhorn", "float64")), "cuda": (("sinkhorn", "float32"),)}
POT_FALLBACKS = {"cpu": (("sinkhorn_stabilized", "float64"), ("sinkhorn_log", "float64")),
                 "cuda": (("sinkhorn_log", "float32"),)}
POT_ARRAYS = 3  # n x n arrays POT holds at once (cost, kernel, plan): below this much free memory it cannot run
POT_MAX_ITERATIONS = 100_000
POT_THRESHOLD_TRIES = 8
CLASSES = 8
# The pixels corpus is solved on raw features at relative eps 0.05 by default: the engine's default until the
# validation v2 and the eps of every figure in docs/performance.md (the default is now eps 0.05 on z-scored features).
PIXELS_EPSILON = 0.05
WARM_UP_POINTS = 256
STRESS_SEEDS = 3  # clouds per stress case (seed, seed + 1, ...)
REFERENCE_MAX_N = 2000  # POT's sinkhorn_log (float64, n x n log-sum-exps) as the stress reference up to this size
REFERENCE_TOLERANCE = 1e-6  # the pixels corpus's reference plan: ours in float64, 1,000x past the default tolerance


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


def _free_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    return status_kib("MemAvailable", "/proc/meminfo") * 1024


def _ours(n: int, dim: int, seed: int, epsilon: float, tolerance: float, device: str) -> dict[str, Any]:
    from otce_ray.scoring.estimator import otce_score

    def solve(points: int):
        xs, ys, xt, yt = pixel_sets(points, dim, seed)
        return otce_score(xs, ys, xt, yt, n_pixels=points, repeats=1, epsilon=epsilon, tolerance=tolerance,
                          device=device, standardise=False)  # POT solves the same raw clouds

    solve(WARM_UP_POINTS)
    peak = peak_meter(device)
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
        "remedy": record.remedy,
    }


@dataclass(frozen=True)
class PotRun:
    """One POT solve: its plan (a torch tensor), log, label joint and the L1 error of both marginals (summed)."""

    plan: Any
    log: dict[str, Any]
    joint: np.ndarray
    error: float

    @property
    def iterations(self) -> int:
        return int(self.log.get("niter", len(self.log.get("err", []))))

    @property
    def finite(self) -> bool:
        """Whether the plan is a plan: POT's plain Sinkhorn can underflow to a near-zero one without a word."""
        return bool(self.plan.isfinite().all() and float(self.plan.sum()) > 0.5)


def pot_sinkhorn(source: Any, target: Any, source_labels: Any, target_labels: Any, classes: tuple[int, int],
                 epsilon: float, method: str, stop: float) -> PotRun:
    """POT's ``ot.sinkhorn`` (``method``, stopping at ``stop``) between uniform weights on ``source`` and ``target``:
    numpy arrays go through POT's numpy backend, torch tensors through its torch backend on their device.

    The label joint is onehot(source_labels)^T P onehot(target_labels), labels being class indices below
    ``classes`` (source, target).
    """
    import warnings

    os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")  # JAX would take 75% of the card at import
    import ot
    import torch

    cost = ot.dist(source, target)
    if isinstance(source, torch.Tensor):
        a, b = (torch.full((len(side),), 1.0 / len(side), dtype=side.dtype, device=side.device)
                for side in (source, target))
    else:
        a, b = (np.full(len(side), 1.0 / len(side), dtype=side.dtype) for side in (source, target))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = ot.sinkhorn(a, b, cost, epsilon, method=method, numItermax=POT_MAX_ITERATIONS, stopThr=stop,
                                log=True)
    plan = torch.as_tensor(plan)
    onehot_s, onehot_t = (torch.nn.functional.one_hot(torch.as_tensor(labels).long(), count).to(plan)
                          for labels, count in zip((source_labels, target_labels), classes))
    joint = (onehot_s.T @ (plan @ onehot_t)).double().cpu().numpy()
    a, b = (torch.as_tensor(weights, device=plan.device) for weights in (a, b))
    error = float((plan.sum(1) - a).abs().sum() + (plan.sum(0) - b).abs().sum())
    return PotRun(plan, log, joint, error)


def _pot(n: int, dim: int, seed: int, epsilon: float, tolerance: float, method: str, dtype: str, threshold: float,
         device: str) -> dict[str, Any]:
    import torch

    from otce_ray.scoring.cost_scale import normalise
    from otce_ray.scoring.entropy import conditional_entropy

    def solve(points: int, stop: float) -> PotRun:
        xs, ys, xt, yt = pixel_sets(points, dim, seed)
        source, target, _ = normalise(torch.from_numpy(xs), torch.from_numpy(xt))
        if device == "cuda":  # POT's torch backend, on the card
            source, target = (side.to(device=device, dtype=getattr(torch, dtype)) for side in (source, target))
        else:  # POT's numpy backend, as most of its users run it
            source, target = (side.numpy().astype(dtype) for side in (source, target))
        return pot_sinkhorn(source, target, ys, yt, (CLASSES, CLASSES), epsilon, method, stop)

    solve(WARM_UP_POINTS, threshold)
    peak = peak_meter(device)
    started = time.perf_counter()
    run = solve(n, threshold)
    seconds = time.perf_counter() - started
    joint, error, finite = run.joint, run.error, run.finite
    return {
        "method": f"POT {method} {dtype}" + (" cuda" if device == "cuda" else ""),
        "seconds": seconds,
        "iterations": run.iterations,
        "marginal_error": error if finite else math.nan,
        "conditional_entropy": conditional_entropy(joint) if finite else math.nan,
        "peak_mib": peak(),
        "converged": finite and error <= tolerance,
        "threshold": threshold,
    }


def _reference_entropy(n: int, dim: int, seed: int, epsilon: float, device: str) -> float:
    """The conditional entropy of the entropic plan itself, which both solvers' plans at the tolerance approximate
    (each may miss it by more than the tolerance): ours in float64 to an L1 error of REFERENCE_TOLERANCE."""
    import torch

    from otce_ray.scoring.cost_scale import normalise
    from otce_ray.scoring.entropy import conditional_entropy
    from otce_ray.scoring.backends.torch_tiles import TorchTiles
    from otce_ray.scoring.sinkhorn import solve_sinkhorn

    xs, ys, xt, yt = (torch.from_numpy(array).to(device) for array in pixel_sets(n, dim, seed))
    x, y, _ = normalise(xs, xt)
    solution = solve_sinkhorn(x, y, ys, yt, CLASSES, CLASSES, epsilon, tolerance=REFERENCE_TOLERANCE,
                              backend=TorchTiles)
    return conditional_entropy(solution.joint.cpu().numpy())


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


def _pixels(sizes: list[int], dim: int, epsilon: float, seed: int, kind: str, tolerance: float) -> dict[str, Any]:
    """The ``pixels`` corpus: every size against POT; the JSON's top level is the largest size compared."""
    free = _in_child(_free_bytes, kind)
    print(f"# corpus pixels, d = {dim}, relative eps = {epsilon} (cost / median cost), L1 marginal tolerance = "
          f"{tolerance}, device {kind}")
    print(f"{'n':>7} {'method':<28} {'seconds':>9} {'passes':>6} {'marg.err':>9} {'peak MiB':>9} {'CE':>9}")
    summary: dict[str, Any] = {}
    per_size: list[dict[str, Any]] = []
    ours_only: list[dict[str, Any]] = []
    for n in sizes:
        ours = _in_child(_ours, n, dim, seed, epsilon, tolerance, kind)
        peers = _pot_peers(n, dim, seed, epsilon, tolerance, kind, free)
        for run in (ours, *peers):
            print(f"{n:>7} {run['method']:<28} {run['seconds']:>9.2f} {run['iterations']:>6} "
                  f"{run['marginal_error']:>9.1e} {run['peak_mib']:>9.1f} {run['conditional_entropy']:>9.5f}")
        mine = {"n": n, "ours_seconds": round(ours["seconds"], 3), "ours_iterations": ours["iterations"],
                "ours_peak_mib": round(ours["peak_mib"], 1), "converged": ours["converged"],
                "remedy": ours["remedy"]}
        if not peers:
            need = POT_ARRAYS * n * n * 4 / 2**30
            print(f"{n:>7} {'no POT peer':<28} none converged, or its n x n arrays (~{need:.1f} GiB in float32) "
                  f"exceed the {free / 2**30:.1f} GiB free")
            ours_only.append(mine)
            continue
        peer = peers[0]
        speedup = peer["seconds"] / ours["seconds"]
        memory = ours["peak_mib"] / peer["peak_mib"] if peer["peak_mib"] else math.nan
        ce_diff = abs(ours["conditional_entropy"] - peer["conditional_entropy"])
        print(f"{n:>7} {'ratio vs ' + peer['method']:<28} speedup {speedup:.2f}x, memory {memory:.3f}, "
              f"|dCE| {ce_diff:.1e}")
        reference = _reference_entropy(n, dim, seed, epsilon, kind)
        errors = [abs(run["conditional_entropy"] - reference) for run in (ours, peer)]
        print(f"{n:>7} {'reference (float64, L1 1e-6)':<28} CE {reference:.5f}: ours off by {errors[0]:.1e}, "
              f"{peer['method']} by {errors[1]:.1e}")
        summary = {
            "n": n, "dim": dim, "epsilon": epsilon, "tolerance": tolerance, "device": ours["method"],
            "peer": peer["method"], "speedup_vs_pot": round(speedup, 3),
            "peak_memory_ratio_vs_pot": round(memory, 4), "ce_abs_diff": ce_diff,
            "ours_seconds": round(ours["seconds"], 3), "pot_seconds": round(peer["seconds"], 3),
            "ours_iterations": ours["iterations"], "pot_iterations": peer["iterations"],
            "ours_peak_mib": round(ours["peak_mib"], 1), "pot_peak_mib": round(peer["peak_mib"], 1),
            "converged": ours["converged"], "remedy": ours["remedy"],
            "reference_ce": reference, "ours_ce_error": errors[0], "pot_ce_error": errors[1],
        }
        per_size.append(summary)
    return summary | {"corpus": "pixels", "per_size": per_size} | ({"ours_only": ours_only} if ours_only else {})


def _stress_run(case, tolerance: float, device: str) -> dict[str, Any]:
    from otce_ray.scoring.estimator import otce_score

    started = time.perf_counter()
    result = otce_score(case.source_features, case.source_labels, case.target_features, case.target_labels,
                        n_pixels=case.n, repeats=1, tolerance=tolerance, device=device, **case.options)
    record = result.repeats[0]
    return {"seconds": time.perf_counter() - started, "passes": record.iterations,
            "marginal_error": record.marginal_error, "converged": record.converged, "remedy": record.remedy,
            "conditional_entropy": record.conditional_entropy}


def _stress(sizes: list[int], seed: int, kind: str, tolerance: float) -> dict[str, Any]:
    """The ``stress`` corpus: every case up to the largest size, STRESS_SEEDS clouds each, against POT's
    ``sinkhorn_log`` on the first cloud up to REFERENCE_MAX_N."""
    from otce_ray.bench.stress import BENCH_CORPUS, pot_reference, stress_case

    print(f"# corpus stress, {STRESS_SEEDS} clouds per case (seeds {seed}..{seed + STRESS_SEEDS - 1}), "
          f"L1 marginal tolerance = {tolerance}, device {kind}; reference: POT sinkhorn_log float64 up to "
          f"n = {REFERENCE_MAX_N}")
    print(f"{'case':<32} {'n':>6} {'d':>5} {'s/solve':>8} {'passes':>11} {'max err':>8} {'conv':>5} "
          f"{'remedies':<14} {'|dCE| POT':>9}")
    cases, runs = [], []
    for name, n in BENCH_CORPUS:
        if n > max(sizes):
            continue
        clouds = [stress_case(name, n, seed + k) for k in range(STRESS_SEEDS)]
        solved = [_stress_run(cloud, tolerance, kind) for cloud in clouds]
        reference = pot_reference(clouds[0], tolerance) if n <= REFERENCE_MAX_N else None
        ce_diff = None if reference is None else abs(solved[0]["conditional_entropy"] - reference.conditional_entropy)
        passes = [run["passes"] for run in solved]
        remedies = sorted({run["remedy"] for run in solved if run["remedy"]})
        row = {"case": name, "n": n, "dim": clouds[0].dim, "seconds": round(statistics.mean(
               run["seconds"] for run in solved), 3), "passes": passes,
               "max_marginal_error": max(run["marginal_error"] for run in solved),
               "converged": sum(run["converged"] for run in solved), "remedies": remedies, "ce_abs_diff": ce_diff,
               "reference_marginal_error": None if reference is None else reference.marginal_error}
        print(f"{name:<32} {n:>6} {row['dim']:>5} {row['seconds']:>8.2f} "
              f"{statistics.median(passes):>5.0f}/{max(passes):<5} {row['max_marginal_error']:>8.1e} "
              f"{row['converged']:>2}/{len(solved):<2} {','.join(remedies) or '-':<14} "
              f"{'-' if ce_diff is None else f'{ce_diff:.1e}':>9}")
        cases.append(row)
        runs += solved
    passes = [run["passes"] for run in runs]
    diffs = [row["ce_abs_diff"] for row in cases if row["ce_abs_diff"] is not None]
    summary = {
        "corpus": "stress", "tolerance": tolerance, "device": kind, "solves": len(runs),
        "worst_marginal_error": max(run["marginal_error"] for run in runs),
        "passes_median": statistics.median(passes), "passes_max": max(passes),
        "fraction_converged": sum(run["converged"] for run in runs) / len(runs),
        "max_ce_abs_diff_vs_pot": max(diffs) if diffs else None, "cases": cases,
    }
    print(f"# worst marginal error {summary['worst_marginal_error']:.1e}, passes median {summary['passes_median']:.0f}"
          f" max {summary['passes_max']}, converged {summary['fraction_converged']:.0%} of {len(runs)} solves, "
          f"max |dCE| vs POT {'-' if not diffs else f'{max(diffs):.1e}'}")
    return summary


def main(sizes: list[int], dim: int = 64, epsilon: float | None = None, seed: int = 0, device: str = "auto",
         tolerance: float | None = None, corpus: str = "pixels") -> int:
    from otce_ray.scoring.inputs import resolve_device
    from otce_ray.scoring.sinkhorn import DEFAULT_TOLERANCE

    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    kind = resolve_device(device).type
    if corpus == "stress":
        summary = _stress(sizes, seed, kind, tolerance)
    elif corpus == "pixels":
        summary = _pixels(sizes, dim, PIXELS_EPSILON if epsilon is None else epsilon, seed, kind, tolerance)
    else:
        raise ValueError(f"corpus: unknown corpus {corpus!r} (expected 'pixels' or 'stress')")
    print(json.dumps(summary))
    return 0
