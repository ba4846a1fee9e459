"""The torch tile backend: the n x m kernel streamed over tiles of rows, one matrix product and one exp2 per tile.

Expanding C_ij = |x_i|^2 + |y_j|^2 - 2 x_i.y_j, a tile of log2(b_j exp((g_j - C_ij) / eps)) shifted per row is one
product of [2 log2(e) / eps x, -log2(e) s, 1] with [y^T; 1; log2(e) ((g - |y|^2) / eps + log b)]: the column bias and
the row shift ride in the product, so no tile temporary is made and exp stays in range once the iterates settle
(s_i is the log sum the current f implies). Base 2 because exp2 runs ~3x faster than exp on CPU and has no slow path
for underflowing arguments. The same code runs on CPU and CUDA; every product runs at full float32 precision
(``full_precision_matmul``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch

from otce_ray.scoring.backends import RowPass

TILE_BYTES = 4 * 1024 * 1024  # per tile on CPU: small enough to stay in cache, large for matmul
CUDA_TILE_BYTES = 256 * 1024 * 1024  # per tile on a GPU: few, large products keep it busy (4 MiB: launch-bound)
SAFE_LOG_SUM = 60.0  # |log sum exp(block - shift)| beyond this risks fp32 overflow (float64 shares the bound)
LOG2_E = 1.0 / math.log(2.0)


@contextlib.contextmanager
def full_precision_matmul() -> Iterator[None]:
    """Hold float32 products at full precision while the backend runs, then restore the caller's setting.

    The bias and the row shift ride inside the products: TF32 on a GPU, or bf16 passes that
    ``torch.set_float32_matmul_precision('high')`` may allow on a CPU, would round them to 10 or 8 bits, and the
    solve then stalls or moves the joint (an emulation of TF32 at n = 1,000 moved it by 8.5e-3).
    """
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _tile_rows(columns: int, itemsize: int, tile_bytes: int) -> int:
    return max(1, tile_bytes // max(1, columns * itemsize))


class Points:
    """One point set as a backend's kernels see it: points, squared norms and weights (float64); the flash-sinkhorn
    backend uses it too."""

    def __init__(self, points: torch.Tensor, weights: torch.Tensor | None) -> None:
        self.points = points
        self.sq = points.double().square().sum(1)
        if weights is None:
            weights = torch.full((len(points),), 1.0 / len(points), dtype=torch.float64, device=points.device)
        self.weights = weights.to(device=points.device, dtype=torch.float64)
        self.log_weights = self.weights.log()


class PointPair:
    """x (n rows, weights a) and y (m rows, weights b) with x's row groups, as a backend holds them: the protocol's
    ``dtype``, ``device`` and weights. ``row_groups`` lists the sizes of consecutive groups of rows (None: one)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, row_weights: torch.Tensor | None = None,
                 column_weights: torch.Tensor | None = None, row_groups: Sequence[int] | None = None) -> None:
        self.group_sizes = [len(x)] if row_groups is None else [int(size) for size in row_groups]
        if sum(self.group_sizes) != len(x) or min(self.group_sizes) < 1:
            raise ValueError(f"row_groups: sizes {self.group_sizes} do not split {len(x)} rows")
        self.rows, self.columns = Points(x, row_weights), Points(y, column_weights)
        self.row_group = torch.repeat_interleave(torch.arange(len(self.group_sizes), device=x.device),
                                                 torch.tensor(self.group_sizes, device=x.device))  # each row's group

    @property
    def dtype(self) -> torch.dtype:
        return self.rows.points.dtype

    @property
    def device(self) -> torch.device:
        return self.rows.points.device

    @property
    def row_weights(self) -> torch.Tensor:
        return self.rows.weights

    @property
    def column_weights(self) -> torch.Tensor:
        return self.columns.weights


def _operands(rows: Points, potential: torch.Tensor, columns: Points, column_potential: torch.Tensor,
              eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(left, right, s)`` with (left @ right)_ij = log2(e) ((h_j - C_ij) / eps + log w_j + |p_i|^2 / eps) - s_i.

    s_i = log2(e) (|p_i|^2 - potential_i) / eps, as rounded into ``left`` (the value the products actually use).
    The vectors are formed in float64 and rounded once to the points' dtype.
    """
    dtype, device = rows.points.dtype, rows.points.device
    shift = ((rows.sq - potential) * (LOG2_E / eps)).to(dtype)
    bias = ((column_potential - columns.sq) / eps + columns.log_weights) * LOG2_E
    left = torch.cat([rows.points * (2.0 * LOG2_E / eps), -shift[:, None],
                      torch.ones(len(shift), 1, dtype=dtype, device=device)], dim=1)
    right = torch.cat([columns.points.T, torch.ones(1, len(bias), dtype=dtype, device=device),
                       bias.to(dtype)[None, :]])
    return left, right, shift


def _tile_exp(left: torch.Tensor, right: torch.Tensor, shift: torch.Tensor,
              out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(E, row sums of E, s)`` for one tile of ``_operands``' rows, E written in ``out``.

    A tile whose row sums leave exp(+-SAFE_LOG_SUM) (early iterates, a new eps) is redone without the shift and then
    shifted by its row maxima, which is exact; the shift actually used (log2 units) is returned.
    """
    rows = len(left)
    block = torch.mm(left, right, out=out[:rows]).exp2_()
    sums = block.sum(1)
    if bool((sums.log().abs() < SAFE_LOG_SUM).all()):
        return block, sums, shift
    unshifted = left.clone()
    unshifted[:, -2] = 0  # the shift column
    block = torch.mm(unshifted, right, out=out[:rows])
    top = block.max(1).values
    block.sub_(top[:, None]).exp2_()
    return block, block.sum(1), top


def _softmin(block_sums: torch.Tensor, shift: torch.Tensor, sq: torch.Tensor, eps: float) -> torch.Tensor:
    """-eps log sum_j w_j exp((h_j - C_ij) / eps) from a tile's row sums and the shift its exponentials carry."""
    return sq - eps * (block_sums.double().log() + shift.double() / LOG2_E)


class TorchTiles(PointPair):
    """Entropic-OT arithmetic between x (n, d) and y (m, d) in tiles of rows.

    ``row_weights`` and ``column_weights`` (float64, summing to 1) default to uniform. ``row_groups`` lists the sizes
    of consecutive groups of rows (x sorted by group); ``row_pass`` returns the plan's column sums per group (the
    loop's coarse correction needs them), each group's share of a tile costing one matrix-vector product.
    ``tile_bytes`` sizes the tiles; ``None`` picks TILE_BYTES on CPU, CUDA_TILE_BYTES on a GPU.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, row_weights: torch.Tensor | None = None,
                 column_weights: torch.Tensor | None = None, row_groups: Sequence[int] | None = None,
                 tile_bytes: int | None = None) -> None:
        super().__init__(x, y, row_weights=row_weights, column_weights=column_weights, row_groups=row_groups)
        n, m = len(x), len(y)
        if tile_bytes is None:
            tile_bytes = CUDA_TILE_BYTES if x.is_cuda else TILE_BYTES
        self.row_tile = min(n, _tile_rows(m, x.element_size(), tile_bytes))
        self.column_tile = min(m, _tile_rows(n, x.element_size(), tile_bytes))
        # One buffer for every tile of every pass: a fresh block per tile costs page faults worth half the product.
        self.buffer = torch.empty(max(self.row_tile * m, self.column_tile * n), dtype=x.dtype, device=x.device)
        self.groups = len(self.group_sizes)
        self._segments = _tile_segments(self.group_sizes, self.row_tile)

    def _tiles(self, columns: int) -> torch.Tensor:
        return self.buffer[: len(self.buffer) // columns * columns].view(-1, columns)

    def initial_row_potential(self) -> torch.Tensor:
        return self.rows.sq.clone()  # s = 0: the first pass's exponentials are exp(-C / eps) up to the bias

    def row_pass(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> RowPass:
        """The plan of a tile is a_i E_ij / rowsum_i, so each group's column sums cost one matrix-vector product."""
        n, m = len(self.rows.points), len(self.columns.points)
        row_weights = self.rows.weights.to(self.dtype)
        updated = torch.empty(n, dtype=torch.float64, device=self.device)
        sums_by_group = torch.zeros(self.groups, m, dtype=self.dtype, device=self.device)
        plan_weights = torch.empty(n, dtype=self.dtype, device=self.device)  # a_i / rowsum_i
        buffer = self._tiles(m)
        with full_precision_matmul():
            left, right, shift = _operands(self.rows, f, self.columns, g, eps)
            for start, segments in self._segments:
                rows = slice(start, start + self.row_tile)
                block, sums, used = _tile_exp(left[rows], right, shift[rows], buffer)
                updated[rows] = _softmin(sums, used, self.rows.sq[rows], eps)
                weights = plan_weights[rows]
                torch.div(row_weights[rows], sums, out=weights)
                for group, low, high in segments:
                    sums_by_group[group].addmv_(block[low:high].T, weights[low:high])
        totals = torch.zeros(self.groups, dtype=torch.float64, device=self.device)
        totals.index_add_(0, self.row_group, plan_weights.double())
        return RowPass(f=updated, column_sums=sums_by_group, lost=torch.finfo(self.dtype).tiny * totals)

    def column_softmin(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
        """T_g(f), streamed over tiles of columns; ``g`` only steers the shifts."""
        n, m = len(self.rows.points), len(self.columns.points)
        out = torch.empty(m, dtype=torch.float64, device=self.device)
        buffer = self._tiles(n)
        with full_precision_matmul():
            left, right, shift = _operands(self.columns, g, self.rows, f, eps)
            for start in range(0, m, self.column_tile):
                columns = slice(start, start + self.column_tile)
                _, sums, used = _tile_exp(left[columns], right, shift[columns], buffer)
                out[columns] = _softmin(sums, used, self.columns.sq[columns], eps)
        return out

    def apply_plan(self, f: torch.Tensor, g: torch.Tensor, eps: float,
                   matrices: list[torch.Tensor]) -> list[torch.Tensor]:
        """One product per matrix and tile (a product of its own, so that permuting a matrix's columns permutes
        the result exactly); returned in float64. (f, g) should satisfy f = T_f(g): then no exponential overflows."""
        n, m = len(self.rows.points), len(self.columns.points)
        row_weights = self.rows.weights[:, None]
        matrices = [matrix.to(self.dtype) for matrix in matrices]
        outs = [torch.empty(n, matrix.shape[1], dtype=torch.float64, device=self.device) for matrix in matrices]
        buffer = self._tiles(m)
        with full_precision_matmul():
            left, right, _ = _operands(self.rows, f, self.columns, g, eps)
            for start in range(0, n, self.row_tile):
                rows = slice(start, start + self.row_tile)
                block = torch.mm(left[rows], right, out=buffer[: len(left[rows])]).exp2_()
                for matrix, out in zip(matrices, outs):
                    out[rows] = (block @ matrix).double() * row_weights[rows]
        return outs


def _tile_segments(lengths: list[int], tile: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """For each tile of ``tile`` rows: its start and the (group, first, stop) row ranges, relative to the tile,
    of the groups it overlaps."""
    bounds = [0]
    for size in lengths:
        bounds.append(bounds[-1] + size)
    tiles, group = [], 0
    for start in range(0, bounds[-1], tile):
        stop = min(start + tile, bounds[-1])
        while bounds[group + 1] <= start:
            group += 1
        segments, k = [], group
        while k < len(lengths) and bounds[k] < stop:
            segments.append((k, max(bounds[k], start) - start, min(bounds[k + 1], stop) - start))
            k += 1
        tiles.append((start, segments))
    return tiles
