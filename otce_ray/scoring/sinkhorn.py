"""Entropic OT between two pixel sets in the log domain, streamed over row tiles: no N x M array is ever built.

The potentials (f, g) of the uniform-marginal problem with cost C_ij = |x_i - y_j|^2 satisfy

    f_i = -eps log sum_j b_j exp((g_j - C_ij) / eps),   g_j = -eps log sum_i a_i exp((f_i - C_ij) / eps).

Expanding C_ij = |x_i|^2 + |y_j|^2 - 2 x_i.y_j turns each update into one matrix product and one logsumexp per
tile of rows: ``f_i = |x_i|^2 - eps LSE_j(2 x_i.y_j / eps + (g_j - |y_j|^2) / eps + log b_j)``. The same code runs
on CPU and CUDA. eps is annealed geometrically from the cost's diameter down to the target (eps-scaling), and
successive over-relaxation (``_Overrelaxation``) cuts the iterations at the target eps several-fold. Iteration
stops on the L1 error of both marginals of the plan, which comes for free from the updates themselves:
row_i = a_i exp((f_i - T_f(g)_i) / eps), and columns likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

DEFAULT_TOLERANCE = 1e-3
DEFAULT_MAX_ITERATIONS = 2000
ANNEALING_FACTOR = 0.5
TILE_BYTES = 4 * 1024 * 1024  # per tile of the cost: small enough to stay in cache, large for matmul
SAFE_LOG_SUM = 60.0  # |log sum exp(block - shift)| beyond this risks fp32 overflow or precision loss


@dataclass(frozen=True)
class SinkhornSolution:
    """What one solve yields: the label joint and the diagnostics a leaderboard row reports."""

    joint: torch.Tensor  # (source classes, target classes), float64, sums to ~1
    transport_cost: float  # <P, C> in the units of the points given
    iterations: int  # annealing steps plus iterations at the target eps
    marginal_error: float  # L1 error of the plan's row marginal plus that of its column marginal
    converged: bool


def _tile_rows(columns: int, itemsize: int, tile_bytes: int) -> int:
    return max(1, tile_bytes // max(1, columns * itemsize))


def _softmin_update(
    points: torch.Tensor,
    sq_norms: torch.Tensor,
    other_aug_t: torch.Tensor,
    other_potential: torch.Tensor,
    other_sq_norms: torch.Tensor,
    other_log_weights: torch.Tensor,
    eps: float,
    tile: int,
    current: torch.Tensor | None,
) -> torch.Tensor:
    """-eps LSE_j(log w_j + (h_j - C_ij) / eps) for every row i, one tile of rows at a time.

    ``other_aug_t`` is [other, 1]^T: its extra row carries a per-row shift s_i = (|x_i|^2 - current_i) / eps
    into the same matrix product, so each tile costs one addmm, one in-place exp and one sum (no max pass). The
    shift is the LSE implied by the potential being replaced, so exp stays in range once iterates settle; a tile
    whose sums leave a safe range (early iterates, eps changes) is redone with an exact logsumexp.
    """
    alpha = 2.0 / eps
    bias = (other_potential - other_sq_norms) / eps + other_log_weights
    shift = torch.zeros_like(sq_norms) if current is None else (sq_norms - current) / eps
    points_aug = torch.cat([points, (shift / -alpha)[:, None]], dim=1)
    out = torch.empty_like(sq_norms)
    for start in range(0, len(points), tile):
        rows = slice(start, start + tile)
        block = torch.addmm(bias, points_aug[rows], other_aug_t, alpha=alpha)
        lse = block.exp_().sum(1).log_()
        if bool((lse.abs() < SAFE_LOG_SUM).all()):
            out[rows] = lse + shift[rows]
        else:
            exact = torch.addmm(bias, points[rows], other_aug_t[:-1], alpha=alpha)
            out[rows] = torch.logsumexp(exact, dim=1)
    return sq_norms - eps * out


def _annealing_schedule(diameter: float, eps: float) -> list[float]:
    """Geometric eps schedule from the diameter down to (excluding) the target eps."""
    if diameter <= eps:
        return []
    steps = int(math.ceil(math.log(eps / diameter) / math.log(ANNEALING_FACTOR)))
    return [diameter * ANNEALING_FACTOR**k for k in range(steps)]


def _marginal_error(potential: torch.Tensor, updated: torch.Tensor, log_weights: torch.Tensor, eps: float) -> float:
    """L1 distance between one marginal of the plan and its target: marginal_i = w_i exp((h_i - T(h)_i) / eps)."""
    return float((log_weights.exp() * ((potential - updated) / eps).exp().sub(1).abs()).sum())


class _Overrelaxation:
    """Successive over-relaxation of the Sinkhorn updates with a step set from the observed contraction.

    Plain Sinkhorn contracts the marginal error by a factor lambda per iteration, close to 1 at small eps; SOR with
    omega = 2 / (1 + sqrt(1 - lambda)) contracts by about omega - 1 instead (Young's theory for two-block
    Gauss-Seidel, applied to Sinkhorn by Thibault et al. 2017 and Lehmann et al. 2021). lambda is measured over a
    few plain iterations. SOR's error is not monotone (a transient rise is normal), so only a rise far above the
    best error seen counts as divergence: the steps then fall back to plain Sinkhorn for good.
    """

    WARMUP = 4  # plain iterations before lambda is trusted
    MAX_OMEGA = 1.9
    DIVERGENCE = 50.0  # error / best error that abandons over-relaxation

    def __init__(self) -> None:
        self.omega = 1.0
        self.history: list[float] = []
        self.abandoned = False

    def step(self, error: float) -> float:
        self.history.append(error)
        if self.abandoned:
            return 1.0
        if error > self.DIVERGENCE * min(self.history):
            self.abandoned, self.omega = True, 1.0
        elif self.omega == 1.0 and len(self.history) > self.WARMUP:
            contraction = min(self.history[-1] / self.history[-2], 0.9999)
            self.omega = min(self.MAX_OMEGA, max(1.0, 2.0 / (1.0 + math.sqrt(1.0 - contraction))))
        return self.omega


def sinkhorn_potentials(
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    diameter: float | None = None,
    tile_bytes: int = TILE_BYTES,
) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Solve uniform-marginal entropic OT; return ``(f, g, iterations, marginal_error)`` (L1, rows + columns).

    ``iterations`` counts the annealing steps and the iterations at ``eps``; ``max_iterations`` caps the latter.
    ``diameter`` bounds the largest cost (start of the eps schedule); ``None`` takes the squared diameter of the
    union's bounding box, an upper bound computed in O((n + m) d).
    """
    n, m = len(x), len(y)
    log_a = torch.full((n,), -math.log(n), dtype=x.dtype, device=x.device)
    log_b = torch.full((m,), -math.log(m), dtype=x.dtype, device=x.device)
    x_sq, y_sq = x.square().sum(1), y.square().sum(1)
    row_tile = _tile_rows(m, x.element_size(), tile_bytes)
    col_tile = _tile_rows(n, x.element_size(), tile_bytes)
    if diameter is None:
        both = torch.cat([x, y])
        diameter = float((both.max(0).values - both.min(0).values).square().sum())

    ones = torch.ones(1, dtype=x.dtype, device=x.device)
    x_aug_t = torch.cat([x.T, ones.expand(1, n)])
    y_aug_t = torch.cat([y.T, ones.expand(1, m)])

    def update_f(g: torch.Tensor, eps_k: float, f: torch.Tensor | None = None) -> torch.Tensor:
        return _softmin_update(x, x_sq, y_aug_t, g, y_sq, log_b, eps_k, row_tile, f)

    def update_g(f: torch.Tensor, eps_k: float, g: torch.Tensor | None = None) -> torch.Tensor:
        return _softmin_update(y, y_sq, x_aug_t, f, x_sq, log_a, eps_k, col_tile, g)

    f = update_f(torch.zeros(m, dtype=x.dtype, device=x.device), max(diameter, eps))
    g, schedule = None, _annealing_schedule(diameter, eps)
    for eps_k in schedule:
        g = update_g(f, eps_k, g)
        f = update_f(g, eps_k, f)
    target_g = update_g(f, eps, g)
    g = target_g
    relaxation, iterations = _Overrelaxation(), 0
    while True:
        # Error of the plan (f, g): rows from T_f(g), columns from T_g(f); both also drive the next step.
        target_f = update_f(g, eps, f)
        iterations += 1
        error = _marginal_error(f, target_f, log_a, eps) + _marginal_error(g, target_g, log_b, eps)
        if error <= tolerance or iterations >= max_iterations:  # max_iterations caps those at the target eps
            break
        omega = relaxation.step(error)
        f = f + omega * (target_f - f)
        target_g = update_g(f, eps, g)
        g = g + omega * (target_g - g)
    return f, g, len(schedule) + iterations, error


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
    tile_bytes: int = TILE_BYTES,
) -> tuple[torch.Tensor, float]:
    """Return ``(onehot(ys)^T P onehot(yt), <P, C>)`` for the plan of potentials (f, g), streamed over row tiles."""
    n, m = len(x), len(y)
    log_ab = -math.log(n) - math.log(m)
    x_sq, y_sq = x.square().sum(1), y.square().sum(1)
    target_onehot = torch.nn.functional.one_hot(target_labels, target_classes).to(x.dtype)
    joint = torch.zeros(source_classes, target_classes, dtype=torch.float64, device=x.device)
    cost = torch.zeros((), dtype=torch.float64, device=x.device)
    tile = _tile_rows(m, x.element_size(), tile_bytes)
    for start in range(0, n, tile):
        rows = slice(start, start + tile)
        block_cost = (x_sq[rows, None] + y_sq[None, :]).addmm_(x[rows], y.T, alpha=-2.0).clamp_min_(0)
        plan = ((f[rows, None] + g[None, :] - block_cost) / eps + log_ab).exp_()
        joint.index_add_(0, source_labels[rows], (plan @ target_onehot).double())
        cost += (plan * block_cost).sum(dtype=torch.float64)
    return joint, float(cost)


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
    tile_bytes: int = TILE_BYTES,
) -> SinkhornSolution:
    """Entropic OT between ``x`` and ``y`` (already centred and scaled) and the label joint of its plan."""
    f, g, iterations, error = sinkhorn_potentials(
        x, y, eps, tolerance=tolerance, max_iterations=max_iterations, tile_bytes=tile_bytes
    )
    joint, cost = plan_label_joint(
        x, y, f, g, eps, source_labels, target_labels, source_classes, target_classes, tile_bytes=tile_bytes
    )
    return SinkhornSolution(
        joint=joint,
        transport_cost=cost,
        iterations=iterations,
        marginal_error=error,
        converged=error <= tolerance,
    )
