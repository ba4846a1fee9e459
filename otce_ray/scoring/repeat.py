"""One OTCE repeat: the only place a repeat is sampled, standardised and solved.

``score_repeat`` is the repeat unit of every path that scores: ``otce_score`` (the library call) loops over it, the
pipeline runs it as a Ray task on the pixels a loader read from the stores, and the validation grid re-scores stores
through ``otce_score``. Given the same pixels, settings and repeat index, all three produce the same record.

Repeat k of a run with seed s draws its pixels with the seeds ``sample_seeds(s, k)``, one per side, each picking rows
by ``otce_ray.store.choose_rows`` among the side's valid pixels (a store holds valid pixels only, so its rows are
those pixels, in store order).

Standardisation (``settings.standardise``) z-scores each side *over the repeat's own sample*, not over every valid
pixel of the side. Each repeat is then a complete estimate computed from its N pixels alone: the K repeats stay
independent draws (which the leaderboard's t-interval assumes), a repeat needs no pass over a store of millions of
rows, and a store that grows (more images extracted) leaves the statistics of a repeat over the same rows unchanged.
At N = 10,000 the sample's mean and standard deviation are within about 1% of a standard deviation of the whole
side's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from otce_ray.scoring.backends.registry import resolve_backend
from otce_ray.scoring.cost_scale import normalise
from otce_ray.scoring.entropy import conditional_entropy
from otce_ray.scoring.exact import solve_emd
from otce_ray.scoring.inputs import PixelSet, check_pair, pixel_set, standardised
from otce_ray.scoring.settings import OTCESettings

BASELINE_STREAM = 2**31  # the seed stream of the baseline metrics' sample: no run has that many repeats


class Sampleable(Protocol):
    """One side's valid pixels, from which a seeded sample of rows is taken: an ``otce_ray.scoring.inputs.PixelSet``
    (the library call) or an ``otce_ray.store.PixelSamples`` (the rows a pipeline loader read from a store)."""

    def sample(self, size: int, seed: int, *, with_logits: bool = ...) -> Any:
        """The rows ``otce_ray.store.choose_rows(len, size, seed)`` picks, with ``features`` and ``labels``."""


@dataclass(frozen=True)
class RepeatRecord:
    """One repeat's numbers, as a run record or a leaderboard drill-down shows them."""

    repeat: int
    score: float  # -H(Yt|Ys)
    conditional_entropy: float
    transport_cost: float  # <P, C> on the raw squared-Euclidean cost
    iterations: int  # Sinkhorn passes over the kernel: annealing levels, the target eps, every attempt; 0 for emd
    marginal_error: float  # L1 marginal error of the plan
    converged: bool
    epsilon: float | None  # absolute eps used (relative eps x cost scale); None for emd
    cost_scale: float
    n_source: int  # pixels this repeat used per side: n_pixels, or every valid pixel of a side that has fewer
    n_target: int
    seconds: float
    tolerance: float | None = None  # the L1 marginal tolerance the solve was held to; None for emd
    remedy: str | None = None  # None, or the remedy that ran after the accelerated solve missed it (sinkhorn.py)
    backend: str | None = None  # the Sinkhorn backend that solved it (``auto`` resolved); None for emd
    # the label joint P(ys, yt) the plan gives, rows and columns in the order of the class values of this repeat's
    # sample on each side
    source_classes: tuple[int, ...] = ()
    target_classes: tuple[int, ...] = ()
    joint: tuple[tuple[float, ...], ...] = ()

    def warning(self, solver: str) -> str | None:
        """What a user should know about this repeat: a plan that missed its tolerance (even after the engine's
        remedy) is left out of the model's score, and says so."""
        if self.converged:
            return None
        remedy = f" even after {self.remedy}" if self.remedy else ""
        return (f"repeat {self.repeat}: {solver} missed its tolerance{remedy} (marginal error "
                f"{self.marginal_error:.1e} > {self.tolerance:.0e}): dropped from the score")


def sample_seeds(seed: int, stream: int) -> tuple[int, int]:
    """Independent sampling seeds for the source and target side of repeat ``stream``, derived from (seed, stream)."""
    source, target = np.random.SeedSequence([seed, stream]).generate_state(2)
    return int(source), int(target)


def score_repeat(
    source: Sampleable, target: Sampleable, settings: OTCESettings, repeat: int, device: str | torch.device = "cpu"
) -> RepeatRecord:
    """Repeat ``repeat`` of the OTCE estimator under ``settings``: sample, standardise, solve, -H(Yt|Ys).

    ``source`` and ``target`` hold one side's valid pixels each (see ``Sampleable``); ``device`` is where the solve
    runs (a torch device that exists here). Raises ValueError for pixels that cannot be scored (NaN features,
    dimensions that differ), naming the side.
    """
    device = torch.device(device)
    source_seed, target_seed = sample_seeds(settings.seed, repeat)
    drawn = source.sample(settings.n_pixels, source_seed, with_logits=False)
    xs = pixel_set(drawn.features, drawn.labels, None, "source")
    drawn = target.sample(settings.n_pixels, target_seed, with_logits=False)
    xt = pixel_set(drawn.features, drawn.labels, None, "target")
    check_pair(xs, xt)
    started = time.perf_counter()
    if settings.standardise:
        xs, xt = standardised(xs), standardised(xt)
    solve = _solve(xs, xt, settings, device)
    return RepeatRecord(
        repeat=repeat,
        score=-solve["conditional_entropy"],
        n_source=len(xs.classes),
        n_target=len(xt.classes),
        seconds=time.perf_counter() - started,
        source_classes=tuple(int(c) for c in xs.class_values),
        target_classes=tuple(int(c) for c in xt.class_values),
        **solve,
    )


def _solve(source: PixelSet, target: PixelSet, settings: OTCESettings, device: torch.device) -> dict[str, Any]:
    """The OT solve of one repeat and what its record says about it (every RepeatRecord field but the sample's)."""
    ks, kt = len(source.class_values), len(target.class_values)
    # Exact OT needs no eps, so it runs on the raw (centred) cost as the authors' code does.
    xs, xt, scale = normalise(source.features.to(device), target.features.to(device), settings.cost_scale or "none")
    if settings.solver == "emd":
        exact = solve_emd(xs.cpu().numpy(), xt.cpu().numpy(), source.classes.numpy(), target.classes.numpy(), ks, kt,
                          max_iterations=settings.emd_max_iterations)
        return _described(np.asarray(exact.joint), transport_cost=exact.transport_cost, iterations=0,
                          marginal_error=exact.marginal_error, converged=True, epsilon=None, cost_scale=scale)
    backend = resolve_backend(settings.backend, device)
    solution = backend.solve(xs.float(), xt.float(), source.classes.to(device), target.classes.to(device), ks, kt,
                             settings.epsilon, tolerance=settings.tolerance, max_iterations=settings.max_iterations)
    return _described(solution.joint.cpu().numpy(), transport_cost=solution.transport_cost * scale,
                      iterations=solution.iterations, marginal_error=solution.marginal_error,
                      converged=solution.converged, epsilon=settings.epsilon * scale, cost_scale=scale,
                      tolerance=settings.tolerance, remedy=solution.remedy, backend=backend.name)


def _described(joint: np.ndarray, **fields: Any) -> dict[str, Any]:
    return {"conditional_entropy": conditional_entropy(joint),
            "joint": tuple(tuple(float(p) for p in row) for row in joint), **fields}
