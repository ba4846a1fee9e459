"""Entropic OT between two pixel sets in the log domain: the loop, over a backend that streams the n x m kernel.

The potentials (f, g) of the uniform-marginal problem with cost C_ij = |x_i - y_j|^2 satisfy

    f_i = -eps log sum_j b_j exp((g_j - C_ij) / eps),   g_j = -eps log sum_i a_i exp((f_i - C_ij) / eps).

One pass (``_pass``, one sweep of the backend over the kernel) gives f = T_f(g), so the plan (f, g) has exact row
marginals; the L1 error of its column marginal, which is the stopping rule; and the next g: T_g of f shifted by the
coarse correction of its row group (``otce_ray.scoring.coarse``). eps is annealed geometrically from a bound on the
largest cost down to the target (eps-scaling), each level solved to the tolerance (``_settle``); Anderson
acceleration (``otce_ray.scoring.anderson``) extrapolates g. Pixels with equal features and label are merged into
weighted points first (``otce_ray.scoring.merge``). The arithmetic over point pairs lives behind one seam
(``otce_ray.scoring.backends``); this module never sees a tile.

Convergence is checked, not hoped for. Two remedies follow a solve that misses the tolerance, and the one that ran is
recorded (``SinkhornPotentials.remedy``):

- ``"plain"``: Anderson stalled (STALL_PASSES passes at the target eps without a better error: noisy float32
  residuals, or jumps that keep being undone). Plain passes take over from the best iterate; each is an exact block
  ascent of the dual objective, so they cannot diverge, and they run until the tolerance, the cap, or a stall of
  their own (the dtype's floor).
- ``"float64"``: the float32 solve ended short of the tolerance. The same loop runs again in float64, from the best
  float32 potentials, with a budget of its own.

A solve that still misses the tolerance returns its best iterate with ``converged=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from otce_ray.scoring.anderson import Anderson
from otce_ray.scoring.backends import SinkhornBackend
from otce_ray.scoring.coarse import COARSE_PRECISION, Grouping, coarse_scaling, group_points
from otce_ray.scoring.merge import merge_duplicates

DEFAULT_TOLERANCE = 1e-3
DEFAULT_MAX_ITERATIONS = 2000  # passes at the target eps, per attempt (float32, then the float64 remedy)
ANNEALING_FACTOR = 0.2  # each level is settled, so large steps cost little (docs/performance.md)
STALL_PASSES = 50  # passes without a better error: Anderson has stalled (or, in plain passes, the dtype's floor)
COLUMN_PRECISION = 1e-6  # largest relative error that entries lost to underflow may cause in a fused column sum
LEVEL_PASSES = 30  # passes at most per annealing level

BackendFactory = Callable[..., SinkhornBackend]  # (x, y, *, row_weights=, column_weights=, row_groups=) -> backend


@dataclass(frozen=True)
class SinkhornPotentials:
    """The potentials a solve ends with (its best iterate) and how it got there."""

    f: torch.Tensor  # (n,) float64, f = T_f(g): the plan's row marginal is exact
    g: torch.Tensor  # (m,) float64
    iterations: int  # passes over the kernel: annealing steps and passes at the target eps, every attempt
    marginal_error: float  # L1 error of the plan's column marginal
    converged: bool  # marginal_error <= tolerance
    remedy: str | None  # None, "plain" or "float64" (module docstring)
    dtype: torch.dtype  # the dtype the returned potentials were computed in


@dataclass(frozen=True)
class SinkhornSolution:
    """What one solve yields: the label joint and the diagnostics a leaderboard row reports."""

    joint: torch.Tensor  # (source classes, target classes), float64, sums to ~1
    transport_cost: float  # <P, C> in the units of the points given
    iterations: int
    marginal_error: float
    converged: bool
    remedy: str | None


@dataclass(frozen=True)
class _Pass:
    f: torch.Tensor  # T_f(g)
    g: torch.Tensor  # the g this pass started from
    error: float  # L1 column error of the plan (f, g)
    next_g: torch.Tensor  # T_g(f + the coarse correction)


@dataclass(frozen=True)
class _Attempt:
    best: _Pass
    passes: int
    stalled: bool  # Anderson stalled and plain passes took over


def _reliable(column: torch.Tensor, lost: float) -> bool:
    """Whether entries lost to underflow (at most ``lost`` per column) leave every column sum within precision."""
    return bool(torch.isfinite(column).all() and float(column.min()) * COLUMN_PRECISION > lost)


def _pass(backend: SinkhornBackend, grouping: Grouping, f: torch.Tensor, g: torch.Tensor, eps: float) -> _Pass:
    """One sweep over the kernel: f = T_f(g), the column error of (f, g), and T_g(f shifted by row group).

    When entries lost to underflow could bias the fused column sums (early iterates, a new eps), the column update
    is taken exactly by a second sweep, without the coarse correction.
    """
    row = backend.row_pass(f, g, eps)
    sums = row.column_sums.double()
    column, b = sums.sum(0), backend.column_weights
    if _reliable(column, float(row.lost.sum())):
        error = float((column - b).abs().sum())
        scaling = coarse_scaling(sums, grouping, COARSE_PRECISION * error)
        if scaling is not None:
            weights = torch.from_numpy(scaling).to(sums.device)
            corrected = weights @ sums
            if _reliable(corrected, float(weights @ row.lost)):
                column = corrected
        return _Pass(f=row.f, g=g, error=error, next_g=g - eps * (column.log() - b.log()))
    exact = backend.column_softmin(row.f, g, eps)
    return _Pass(f=row.f, g=g, error=_column_error(exact - g, b, eps), next_g=exact)


def _column_error(residual: torch.Tensor, b: torch.Tensor, eps: float) -> float:
    """L1 distance of the column marginal b_j exp(-residual_j / eps) to b, residual = T_g(f) - g."""
    return float((b * (residual / -eps).exp().sub(1).abs()).sum())


def _attempt(backend: SinkhornBackend, grouping: Grouping, eps: float, schedule: Sequence[float], f: torch.Tensor,
             g: torch.Tensor, tolerance: float, max_iterations: int) -> _Attempt:
    """Annealing passes, then passes at ``eps`` (Anderson, then plain after a stall) until the tolerance, the cap or
    a stall of the plain passes; returns the best pass seen at ``eps``."""
    annealing = 0
    for eps_k in schedule:
        f, g, passes = _settle(backend, grouping, f, g, eps_k, tolerance)
        annealing += passes
    accelerator, accelerating = Anderson(), True
    best, best_at, at_target = None, 0, 0
    while True:
        step = _pass(backend, grouping, f, g, eps)
        at_target += 1
        if best is None or step.error < best.error:
            best, best_at = step, at_target
        if step.error <= tolerance or at_target >= max_iterations:
            break
        if at_target - best_at >= STALL_PASSES:
            if not accelerating:
                break
            accelerating, best_at = False, at_target
            f, g = best.f, best.next_g  # a plain pass from the best iterate
            continue
        f = step.f
        g = accelerator.step(g, step.next_g - g, step.error, eps) if accelerating else step.next_g
    return _Attempt(best=best, passes=annealing + at_target, stalled=not accelerating)


def _settle(backend: SinkhornBackend, grouping: Grouping, f: torch.Tensor, g: torch.Tensor, eps: float,
            tolerance: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Accelerated passes at one annealing level until its plan is within ``tolerance`` or LEVEL_PASSES; returns
    (f, next g, passes).

    Path following: a level left unsolved hands its error to the smaller eps, where the slow modes that carry it
    are slower still. On z-scored ReLU features at eps 0.01 (n = 2,000) one pass per level took 4,015 passes and the
    float64 remedy, settling each level 117; on easy clouds it costs a few passes (docs/performance.md).
    """
    accelerator, passes = Anderson(), 0
    while True:
        step = _pass(backend, grouping, f, g, eps)
        passes += 1
        if step.error <= tolerance or passes >= LEVEL_PASSES:
            return step.f, step.next_g, passes
        f, g = step.f, accelerator.step(g, step.next_g - g, step.error, eps)


def annealing_schedule(diameter: float, eps: float) -> list[float]:
    """Geometric eps schedule from the diameter down to (excluding) the target eps."""
    if diameter <= eps:
        return []
    steps = int(math.ceil(math.log(eps / diameter) / math.log(ANNEALING_FACTOR)))
    return [diameter * ANNEALING_FACTOR**k for k in range(steps)]


def cost_bound(x: torch.Tensor, y: torch.Tensor) -> float:
    """An upper bound on max |x_i - y_j|^2 in O((n + m) d): the tighter of the bounding box's squared diameter and
    (max |x| + max |y|)^2."""
    both = torch.cat([x, y]).double()
    box = float((both.max(0).values - both.min(0).values).square().sum())
    radii = float(x.double().norm(dim=1).max() + y.double().norm(dim=1).max()) ** 2
    return min(box, radii)


def sinkhorn_potentials(
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    row_weights: torch.Tensor | None = None,
    column_weights: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    diameter: float | None = None,
    groups: int | None = None,
    backend: BackendFactory,
) -> SinkhornPotentials:
    """Solve entropic OT between x (n, d) and y (m, d), with the remedies of the module docstring.

    ``row_weights`` and ``column_weights`` (float64, summing to 1) default to uniform. ``max_iterations`` caps the
    passes at ``eps`` of each attempt. ``diameter`` bounds the largest cost (start of the eps schedule); None takes
    ``cost_bound``. ``groups`` sets the coarse groups per side (None: the default; 1 turns the coarse correction
    off). ``backend`` builds the backend from (x, y, row_weights=, column_weights=, row_groups=). Inputs are assumed
    checked (``otce_score`` does): non-empty, finite, eps > 0. The potentials come back in the order of x and y.
    """
    a, b = _weights(x, row_weights), _weights(y, column_weights)
    grouping = group_points(x, a, y, b, groups)
    ordered_x, ordered_a = x[grouping.row_order], a[grouping.row_order]
    schedule = annealing_schedule(cost_bound(x, y) if diameter is None else diameter, eps)

    def build(dtype: torch.dtype) -> SinkhornBackend:
        return backend(ordered_x.to(dtype), y.to(dtype), row_weights=ordered_a, column_weights=b,
                       row_groups=grouping.row_sizes)

    first = build(x.dtype)
    start_g = torch.zeros(len(y), dtype=torch.float64, device=y.device)
    attempt = _attempt(first, grouping, eps, schedule, first.initial_row_potential(), start_g, tolerance,
                       max_iterations)
    passes, remedy, dtype = attempt.passes, "plain" if attempt.stalled else None, x.dtype
    if attempt.best.error > tolerance and x.dtype != torch.float64:
        retry = _attempt(build(torch.float64), grouping, eps, [], attempt.best.f, attempt.best.g, tolerance,
                         max_iterations)
        passes, remedy = passes + retry.passes, "float64"
        if retry.best.error <= attempt.best.error:
            attempt, dtype = retry, torch.float64
    f = torch.empty_like(attempt.best.f)
    f[grouping.row_order] = attempt.best.f
    error = attempt.best.error
    return SinkhornPotentials(f=f, g=attempt.best.g, iterations=passes, marginal_error=error,
                              converged=error <= tolerance, remedy=remedy, dtype=dtype)


def _weights(points: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return torch.full((len(points),), 1.0 / len(points), dtype=torch.float64, device=points.device)
    return weights.to(device=points.device, dtype=torch.float64)


def plan_label_joint(
    x: torch.Tensor,
    y: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    eps: float,
    source_labels: torch.Tensor,
    target_labels: torch.Tensor,
    source_classes: int,
    target_classes: int,
    *,
    row_weights: torch.Tensor | None = None,
    column_weights: torch.Tensor | None = None,
    backend: BackendFactory,
) -> tuple[torch.Tensor, float]:
    """Return ``(onehot(ys)^T P onehot(yt), <P, C>)`` for the plan of potentials (f, g), without building P.

    The backend applies P to onehot(yt) (the joint's rows, summed by source label) and to [1, y, |y|^2] (row masses
    and, by expanding C, each row's share of <P, C>). (f, g) should satisfy f = T_f(g), as ``sinkhorn_potentials``
    returns them. <P, C> is clamped at 0 (the expansion can leave -1e-10 when the clouds coincide).
    """
    onehot = torch.nn.functional.one_hot(target_labels, target_classes)
    moments = torch.cat([torch.ones(len(y), 1, dtype=y.dtype, device=y.device), y, y.square().sum(1, keepdim=True)],
                        dim=1)
    plan = backend(x, y, row_weights=row_weights, column_weights=column_weights)
    by_label, by_moment = plan.apply_plan(f, g, eps, [onehot, moments])
    joint = torch.zeros(source_classes, target_classes, dtype=torch.float64, device=x.device)
    joint.index_add_(0, source_labels, by_label)
    x64 = x.double()
    mass, first, second = by_moment[:, 0], by_moment[:, 1:-1], by_moment[:, -1]
    cost = (x64.square().sum(1) * mass + second).sum() - 2 * (x64 * first).sum()
    return joint, max(float(cost), 0.0)


def solve_sinkhorn(
    x: torch.Tensor,
    y: torch.Tensor,
    source_labels: torch.Tensor,
    target_labels: torch.Tensor,
    source_classes: int,
    target_classes: int,
    eps: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    backend: BackendFactory,
) -> SinkhornSolution:
    """Entropic OT between ``x`` and ``y`` (already centred and scaled) and the label joint of its plan.

    Pixels with the same features and label are merged first (``otce_ray.scoring.merge``: exact); the joint is
    taken in the dtype the potentials were solved in.
    """
    x, source_labels, a = merge_duplicates(x, source_labels)
    y, target_labels, b = merge_duplicates(y, target_labels)
    potentials = sinkhorn_potentials(x, y, eps, row_weights=a, column_weights=b, tolerance=tolerance,
                                     max_iterations=max_iterations, backend=backend)
    joint, cost = plan_label_joint(
        x.to(potentials.dtype), y.to(potentials.dtype), potentials.f, potentials.g, eps, source_labels,
        target_labels, source_classes, target_classes, row_weights=a, column_weights=b, backend=backend,
    )
    return SinkhornSolution(joint=joint, transport_cost=cost, iterations=potentials.iterations,
                            marginal_error=potentials.marginal_error, converged=potentials.converged,
                            remedy=potentials.remedy)
