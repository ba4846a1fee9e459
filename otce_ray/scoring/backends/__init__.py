"""The seam between the Sinkhorn loop and the arithmetic over point pairs.

The loop (``otce_ray.scoring.sinkhorn``) owns eps-scaling, the coarse correction, acceleration and stopping; a backend
owns the n x m kernel exp((f_i + g_j - C_ij) / eps) of the squared-Euclidean cost between its two point sets, which it
never needs to hold whole. This is GeomLoss's ``softmin`` design (one function per backend: tensorized, online,
multiscale) with two additions the loop needs in the same pass: the plan's column sums per group of rows, and the
plan applied to a few matrices. Two backends implement it: torch tiles (``torch_tiles.TorchTiles``, anywhere) and
FlashSinkhorn's Triton kernels (``flash_sinkhorn.FlashKernels``, CUDA only); a KeOps backend would implement the same
methods and plug in without touching the loop.

Potentials cross the seam in float64 (the loop's Anderson extrapolation needs their low bits); a backend computes in
its own dtype and says so in ``dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class RowPass:
    """One pass over the rows at potentials (f, g): the updated row potential and the plan's column sums by group.

    ``f`` is T_f(g) = -eps log sum_j b_j exp((g_j - C_ij) / eps) (float64, one per row), so the plan (f, g) has exact
    row marginals. ``column_sums[k, j]`` sums that plan's column j over the rows of group k; each may miss up to
    ``lost[k]`` (entries below the dtype's smallest normal number, which the backend drops).
    """

    f: torch.Tensor  # (n,) float64
    column_sums: torch.Tensor  # (groups, m), the backend's dtype
    lost: torch.Tensor  # (groups,), bound on the mass each row of column_sums misses


class SinkhornBackend(Protocol):
    """What the loop asks of two weighted point sets: x (n rows, weights a) and y (m rows, weights b)."""

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def row_weights(self) -> torch.Tensor:
        """a: (n,) float64, summing to 1."""

    @property
    def column_weights(self) -> torch.Tensor:
        """b: (m,) float64, summing to 1."""

    def initial_row_potential(self) -> torch.Tensor:
        """A row potential (float64, (n,)) that keeps the first pass's exponentials in range from g = 0."""

    def row_pass(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> RowPass:
        """T_f(g) and the column sums by row group of the plan (T_f(g), g); ``f`` only steers numerical shifts."""

    def column_softmin(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
        """T_g(f) = -eps log sum_i a_i exp((f_i - C_ij) / eps), float64, one per column: the exact column update;
        ``g`` only steers numerical shifts."""

    def apply_plan(self, f: torch.Tensor, g: torch.Tensor, eps: float,
                   matrices: list[torch.Tensor]) -> list[torch.Tensor]:
        """P @ M for each (m, k) matrix M, where P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) as given (no
        renormalisation); each product is (n, k), float64."""
