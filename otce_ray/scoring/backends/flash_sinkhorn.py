"""The flash-sinkhorn backend: the engine's Sinkhorn loop over FlashSinkhorn's fused Triton kernels, on a CUDA card.

FlashSinkhorn (PyPI ``flash-sinkhorn``, an optional dependency: the ``gpu`` extra) computes a softmin over the n x m
kernel in one fused kernel (products, exponentials and the log-sum in on-chip memory, O((n + m) d) device memory)
and applies the plan to a matrix the same way. It refuses CPU tensors, so this backend runs on CUDA only and is
reported unavailable elsewhere, with the reason, never silently replaced.

Why the engine's loop and not flash-sinkhorn's own solvers: they run plain Sinkhorn iterations at the target eps
(``sinkhorn_flashstyle_alternating``) or GeomLoss's symmetric updates after one step per eps level
(``sinkhorn_flashstyle_symmetric``). At the engine's default until validation v3 (relative eps 0.01, z-scored
features), emulated densely in float64 on CPU at n = 2,000, d = 64, they needed ~1,800 and more than 6,000
iterations to reach an L1 marginal error of 1e-3, where the engine's loop (annealing, coarse correction, Anderson)
needs about 20 passes.
So this module implements the seam of ``otce_ray.scoring.backends`` with FlashSinkhorn's two kernels:

- the softmin ``flashsinkhorn_lse_fused`` for ``row_pass``'s row update and for ``column_softmin``;
- ``apply_plan_mat_flashstyle`` for the plan's column sums by row group (``row_pass``), the plan applied to the label
  one-hots and moments (``apply_plan``) and the final check of both marginals.

Conventions. FlashSinkhorn's potentials follow GeomLoss: with C_ij = cost_scale |x_i - y_j|^2,

    f_i = -eps log sum_j b_j exp((g_j - C_ij) / eps),   P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps),

which is the engine's convention (``otce_ray.scoring.sinkhorn``) at cost_scale = 1, the value used here: the
potentials need no conversion. Its kernels take *shifted* potentials f^ = f - |x|^2, g^ = g - |y|^2: expanding
C_ij = |x_i|^2 + |y_j|^2 - 2 x_i.y_j gives (f_i + g_j - C_ij) / eps = (f^_i + g^_j + 2 x_i.y_j) / eps, which is
what they exponentiate, and the softmin kernel returns the shifted row update,
lse_i = -eps LSE_j[2 x_i.y_j / eps + g^_j / eps + log b_j] = T_f(g)_i - |x_i|^2. GeomLoss's ``SamplesLoss``
parameters do not enter: eps is passed as it is (GeomLoss's blur would be sqrt(eps) on a cost halved), and there is
no debiasing (one plan at one eps, not the Sinkhorn divergence). TF32 stays off: the products carry the potentials'
differences at eps 0.01, and FlashSinkhorn's own guide warns that TF32 skews plans at small eps.

Precision and convergence. The kernels compute in float32. The loop's float64 remedy therefore runs on the torch
backend (``kernels`` returns ``TorchTiles`` for float64 points), and is recorded as ``float64`` as usual. A float32
solve is then checked on its own terms: both marginals of its plan are measured by the apply kernel (P 1 and P^T 1),
and the repeat's ``marginal_error`` is the larger L1 error. A plan that misses the tolerance there is never returned:
the repeat is solved again by the ``torch_tiles`` backend from the start and recorded with ``remedy="torch_tiles"``
(its passes added to the flash ones), converged or not as that solve says.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from otce_ray.scoring.backends import RowPass, SinkhornBackend
from otce_ray.scoring.backends.torch_tiles import Points, PointPair, TorchTiles
from otce_ray.scoring.merge import merge_duplicates
from otce_ray.scoring.sinkhorn import SinkhornSolution, plan_label_joint, sinkhorn_potentials, solve_sinkhorn

SOFTMIN_MODULE = "flash_sinkhorn.kernels.sinkhorn_flashstyle_sqeuclid"  # flashsinkhorn_lse_fused
APPLY_MODULE = "flash_sinkhorn.kernels.apply_flash"  # apply_plan_mat_flashstyle
REMEDY = "torch_tiles"


def unavailable(device: torch.device) -> str | None:
    """Why the backend cannot run on ``device`` (None: it can): not a CUDA device, or flash-sinkhorn not importable."""
    if device.type != "cuda":
        return "flash-sinkhorn needs a CUDA device (it refuses CPU tensors)"
    try:
        for module in (SOFTMIN_MODULE, APPLY_MODULE):
            importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] == "flash_sinkhorn":
            return "flash-sinkhorn is not installed: pip install flash-sinkhorn"
        return f"flash-sinkhorn does not import: {error}"
    except Exception as error:  # noqa: BLE001 - a broken install (Triton, the driver) is a reason, not a crash
        return f"flash-sinkhorn does not import: {type(error).__name__}: {error}"
    return None


class FlashKernels(PointPair):
    """The ``SinkhornBackend`` seam over FlashSinkhorn's kernels, for float32 points on a CUDA device.

    ``row_groups`` (sizes of consecutive groups of x's rows) are the loop's coarse groups: ``row_pass`` sums the
    plan's columns by group in one application of the plan to the groups' one-hot matrix.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, row_weights: torch.Tensor | None = None,
                 column_weights: torch.Tensor | None = None, row_groups: Sequence[int] | None = None) -> None:
        if x.dtype != torch.float32:
            raise ValueError(f"FlashKernels: flash-sinkhorn computes in float32, got {x.dtype} points")
        super().__init__(x.contiguous(), y.contiguous(), row_weights=row_weights, column_weights=column_weights,
                         row_groups=row_groups)
        self.group_onehot = F.one_hot(self.row_group, len(self.group_sizes)).float()

    def initial_row_potential(self) -> torch.Tensor:
        return self.rows.sq.clone()  # f^ = 0; the kernels shift every log-sum by its own maximum, so any start is safe

    def row_pass(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> RowPass:
        """T_f(g) by the softmin kernel, then the column sums of the plan (T_f(g), g) by row group.

        The apply kernel keeps a running maximum per column (online log-sum-exp), so an entry is lost only when its
        column's whole sum falls below float32's smallest normal number: that is the ``lost`` bound per group.
        """
        updated = _softmin(self.rows, self.columns, g, eps)
        sums = self._apply(updated, g, eps, self.group_onehot, axis=0).T
        lost = torch.full((len(sums),), torch.finfo(torch.float32).tiny, dtype=torch.float64, device=self.device)
        return RowPass(f=updated, column_sums=sums.float(), lost=lost)

    def column_softmin(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
        return _softmin(self.columns, self.rows, f, eps)

    def apply_plan(self, f: torch.Tensor, g: torch.Tensor, eps: float,
                   matrices: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self._apply(f, g, eps, matrix, axis=1) for matrix in matrices]

    def marginal_errors(self, f: torch.Tensor, g: torch.Tensor, eps: float) -> tuple[float, float]:
        """L1 errors of the plan (f, g)'s row and column marginals, each measured by applying the plan to ones."""
        rows = self._apply(f, g, eps, torch.ones(len(self.columns.points), 1, device=self.device), axis=1)[:, 0]
        columns = self._apply(f, g, eps, torch.ones(len(self.rows.points), 1, device=self.device), axis=0)[:, 0]
        return (float((rows - self.rows.weights).abs().sum()),
                float((columns - self.columns.weights).abs().sum()))

    def _apply(self, f: torch.Tensor, g: torch.Tensor, eps: float, matrix: torch.Tensor, axis: int) -> torch.Tensor:
        """P @ matrix (axis 1, matrix (m, k)) or P^T @ matrix (axis 0, matrix (n, k)), float64.

        The kernel takes matrices exactly as wide as the points (d columns): ``matrix`` goes through in slices of d
        columns, the last padded with zero columns, whose products are dropped.
        """
        apply = importlib.import_module(APPLY_MODULE).apply_plan_mat_flashstyle
        width = self.rows.points.shape[1]
        f_hat, g_hat = (f - self.rows.sq).float(), (g - self.columns.sq).float()
        products = []
        for start in range(0, matrix.shape[1], width):
            piece = matrix[:, start:start + width].float()
            padded = F.pad(piece, (0, width - piece.shape[1])).contiguous()
            out = apply(self.rows.points, self.columns.points, f_hat, g_hat, self.rows.log_weights.float(),
                        self.columns.log_weights.float(), padded, eps=eps, axis=axis, allow_tf32=False)
            products.append(out[:, :piece.shape[1]])
        return torch.cat(products, dim=1).double()


def _softmin(rows: Points, columns: Points, column_potential: torch.Tensor, eps: float) -> torch.Tensor:
    """-eps log sum_j w_j exp((h_j - C_ij) / eps) for every row i, float64: the kernel's shifted update plus |x_i|^2."""
    kernel = importlib.import_module(SOFTMIN_MODULE).flashsinkhorn_lse_fused
    shifted = kernel(rows.points, columns.points, (column_potential - columns.sq).float(),
                     columns.log_weights.float(), eps, allow_tf32=False)
    return shifted.double() + rows.sq


def kernels(x: torch.Tensor, y: torch.Tensor, **options) -> SinkhornBackend:
    """The backend for points of x's dtype: FlashKernels in float32, the torch backend for the float64 remedy."""
    return FlashKernels(x, y, **options) if x.dtype == torch.float32 else TorchTiles(x, y, **options)


def solve(x: torch.Tensor, y: torch.Tensor, source_labels: torch.Tensor, target_labels: torch.Tensor,
          source_classes: int, target_classes: int, eps: float, *, tolerance: float,
          max_iterations: int) -> SinkhornSolution:
    """``solve_sinkhorn`` over FlashSinkhorn's kernels, with the check and the fallback of the module docstring."""
    merged_x, merged_source, a = merge_duplicates(x, source_labels)
    merged_y, merged_target, b = merge_duplicates(y, target_labels)
    potentials = sinkhorn_potentials(merged_x, merged_y, eps, row_weights=a, column_weights=b, tolerance=tolerance,
                                     max_iterations=max_iterations, backend=kernels)
    error = potentials.marginal_error
    if potentials.dtype == torch.float32:
        plan = FlashKernels(merged_x.float(), merged_y.float(), row_weights=a, column_weights=b)
        error = max(plan.marginal_errors(potentials.f, potentials.g, eps))
        if error > tolerance:
            redone = solve_sinkhorn(x, y, source_labels, target_labels, source_classes, target_classes, eps,
                                    tolerance=tolerance, max_iterations=max_iterations, backend=TorchTiles)
            return dataclasses.replace(redone, iterations=redone.iterations + potentials.iterations, remedy=REMEDY)
    joint, cost = plan_label_joint(
        merged_x.to(potentials.dtype), merged_y.to(potentials.dtype), potentials.f, potentials.g, eps, merged_source,
        merged_target, source_classes, target_classes, row_weights=a, column_weights=b, backend=kernels,
    )
    return SinkhornSolution(joint=joint, transport_cost=cost, iterations=potentials.iterations, marginal_error=error,
                            converged=error <= tolerance, remedy=potentials.remedy)
