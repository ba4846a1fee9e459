"""The flash-sinkhorn backend: how the registry offers it, and its arithmetic.

flash-sinkhorn refuses CPU tensors, so on CPU its two kernels are replaced by dense float64 references of what they
compute (``FakeFlash``: the formulas of their docstrings, with their shape checks); that exercises everything this
project writes around them (shifted potentials, padding to the points' width, column sums by group, the marginal
check and its fallback). The ``cuda`` tests run the real kernels; ``make gpu-check`` runs them on a card.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch

from otce_ray import otce_score
from otce_ray.bench.ot import pixel_sets
from otce_ray.scoring.backends import flash_sinkhorn
from otce_ray.scoring.backends.registry import resolve_backend
from otce_ray.scoring.backends.torch_tiles import TorchTiles
from otce_ray.scoring.entropy import conditional_entropy
from otce_ray.scoring.sinkhorn import solve_sinkhorn
from scoring_cases import clouds, one_torch_thread  # noqa: F401 - fixture

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


class FakeFlash:
    """Dense references of ``flashsinkhorn_lse_fused`` and ``apply_plan_mat_flashstyle`` (float64 inside, float32
    out, as the kernels return), installed as the ``flash_sinkhorn`` modules the backend imports."""

    def __init__(self, row_scale: float = 1.0) -> None:
        self.row_scale = row_scale  # > 1: P @ M comes out scaled, a plan whose row marginal is off
        self.calls = {"softmin": 0, "apply": 0}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        softmin = types.ModuleType(flash_sinkhorn.SOFTMIN_MODULE)
        softmin.flashsinkhorn_lse_fused = self.lse_fused
        apply = types.ModuleType(flash_sinkhorn.APPLY_MODULE)
        apply.apply_plan_mat_flashstyle = self.apply_plan_mat
        for name, module in (("flash_sinkhorn", types.ModuleType("flash_sinkhorn")),
                             ("flash_sinkhorn.kernels", types.ModuleType("flash_sinkhorn.kernels")),
                             (flash_sinkhorn.SOFTMIN_MODULE, softmin), (flash_sinkhorn.APPLY_MODULE, apply)):
            monkeypatch.setitem(sys.modules, name, module)

    def lse_fused(self, x, y, g_hat, log_w, eps, *, cost_scale=1.0, damping=1.0, allow_tf32=True, **_):
        """out_i = -eps damping LSE_j[2 cost_scale x_i.y_j / eps + g^_j / eps + log w_j]."""
        assert not allow_tf32 and x.dtype == y.dtype == g_hat.dtype == log_w.dtype == torch.float32
        self.calls["softmin"] += 1
        scores = (2 * cost_scale * x.double() @ y.double().T + g_hat.double()) / eps + log_w.double()
        return (-eps * damping * torch.logsumexp(scores, dim=1)).float()

    def apply_plan_mat(self, x, y, f_hat, g_hat, log_a, log_b, mat, *, eps, axis, cost_scale=1.0,
                       allow_tf32=False, **_):
        """P @ mat (axis 1) or P^T @ mat (axis 0), P_ij = a_i b_j exp((f^_i + g^_j + 2 cost_scale x_i.y_j) / eps)."""
        (n, d), m = x.shape, len(y)
        expected = (m, d) if axis == 1 else (n, d)
        if tuple(mat.shape) != expected:
            raise ValueError(f"For axis={axis}, mat must have shape {expected}.")
        assert not allow_tf32
        self.calls["apply"] += 1
        log_plan = (log_a.double()[:, None] + log_b.double()
                    + (f_hat.double()[:, None] + g_hat.double() + 2 * cost_scale * x.double() @ y.double().T) / eps)
        plan = log_plan.exp()
        out = plan @ mat.double() * self.row_scale if axis == 1 else plan.T @ mat.double()
        return out.float()


def _problem(n: int = 300, d: int = 4, classes: int = 3, target_classes: int = 7, seed: int = 0):
    """Centred points scaled so that the median cost is ~1, with more target classes than dimensions (the one-hot
    goes through the kernel in padded slices)."""
    xs, ys, xt, yt = clouds(n, d, classes, seed, target_classes=target_classes)
    x, y = torch.from_numpy(xs).float(), torch.from_numpy(xt).float()
    centre = torch.cat([x, y]).mean(0)
    scale = math.sqrt(float(torch.cdist(x, y).square().median()))
    return (x - centre) / scale, (y - centre) / scale, torch.from_numpy(ys), torch.from_numpy(yt), classes, \
        target_classes


def test_auto_takes_torch_tiles_on_cpu_and_says_why_not_flash():
    assert resolve_backend("auto", CPU).name == "torch_tiles"
    assert flash_sinkhorn.unavailable(CPU) == "flash-sinkhorn needs a CUDA device (it refuses CPU tensors)"
    xs, ys, xt, yt = clouds(60)
    result = otce_score(xs, ys, xt, yt, n_pixels=60, repeats=1, device="cpu")
    assert result.repeats[0].backend == "torch_tiles"


def test_flash_asked_for_on_cpu_is_an_error_naming_the_reason():
    xs, ys, xt, yt = clouds(60)
    with pytest.raises(ValueError, match=r"'flash_sinkhorn' cannot run on cpu: flash-sinkhorn needs a CUDA device"):
        otce_score(xs, ys, xt, yt, n_pixels=60, repeats=1, device="cpu", backend="flash_sinkhorn")


def test_flash_not_installed_is_a_reason_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_sinkhorn", None)  # any import of it fails as a missing module
    assert flash_sinkhorn.unavailable(CUDA) == "flash-sinkhorn is not installed: pip install flash-sinkhorn"


def test_flash_kernels_give_the_torch_backends_plan(monkeypatch):
    fake = FakeFlash()
    fake.install(monkeypatch)
    x, y, ys, yt, ks, kt = _problem()
    eps = 0.05
    flash = flash_sinkhorn.solve(x, y, ys, yt, ks, kt, eps, tolerance=1e-5, max_iterations=2000)
    tiles = solve_sinkhorn(x, y, ys, yt, ks, kt, eps, tolerance=1e-5, backend=TorchTiles)
    assert flash.converged and flash.remedy is None and flash.marginal_error <= 1e-5
    assert fake.calls["softmin"] >= flash.iterations and fake.calls["apply"] > flash.iterations  # its kernels ran
    assert flash.joint.shape == (ks, kt)
    np.testing.assert_allclose(flash.joint.numpy(), tiles.joint.numpy(), atol=2e-6)
    assert flash.transport_cost == pytest.approx(tiles.transport_cost, rel=1e-5)
    assert abs(conditional_entropy(flash.joint.numpy()) - conditional_entropy(tiles.joint.numpy())) < 1e-5


def test_a_flash_plan_whose_row_marginal_misses_the_tolerance_is_solved_again_by_torch_tiles(monkeypatch):
    """The loop reads only column sums; the final check measures both marginals, so a plan whose rows are off
    (here: P @ M scaled by 1 + 3e-4) is never returned."""
    fake = FakeFlash(row_scale=1 + 3e-4)
    fake.install(monkeypatch)
    x, y, ys, yt, ks, kt = _problem(n=120)
    solution = flash_sinkhorn.solve(x, y, ys, yt, ks, kt, 0.05, tolerance=1e-4, max_iterations=2000)
    tiles = solve_sinkhorn(x, y, ys, yt, ks, kt, 0.05, tolerance=1e-4, backend=TorchTiles)
    assert solution.remedy == "torch_tiles" and solution.converged
    assert solution.iterations > tiles.iterations  # the flash passes are counted too
    np.testing.assert_allclose(solution.joint.numpy(), tiles.joint.numpy())


def test_the_float64_remedy_runs_on_the_torch_backend():
    x, y, *_ = _problem(n=20)
    assert isinstance(flash_sinkhorn.kernels(x.double(), y.double()), TorchTiles)
    assert isinstance(flash_sinkhorn.kernels(x, y), flash_sinkhorn.FlashKernels)


def _flash_installed() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA device"
    return flash_sinkhorn.unavailable(CUDA)


@pytest.mark.cuda
@pytest.mark.skipif(_flash_installed() is not None, reason=str(_flash_installed()))
def test_auto_takes_flash_on_cuda():
    assert resolve_backend("auto", CUDA).name == "flash_sinkhorn"


@pytest.mark.cuda
@pytest.mark.skipif(_flash_installed() is not None, reason=str(_flash_installed()))
def test_flash_matches_the_torch_backend_at_10k_on_cuda():
    """N = 10,000, d = 64, the engine's defaults, both held to an L1 marginal error of 1e-4: conditional entropies
    within 1e-4, and the plan was flash-sinkhorn's own (no float64 or torch_tiles remedy)."""
    xs, ys, xt, yt = pixel_sets(10_000, 64, seed=0)
    runs = {backend: otce_score(xs, ys, xt, yt, n_pixels=10_000, repeats=1, tolerance=1e-4, device="cuda",
                                backend=backend).repeats[0]
            for backend in ("torch_tiles", "flash_sinkhorn")}
    flash, tiles = runs["flash_sinkhorn"], runs["torch_tiles"]
    assert flash.backend == "flash_sinkhorn" and flash.converged and flash.remedy in (None, "plain")  # its own plan
    assert tiles.converged
    assert abs(flash.conditional_entropy - tiles.conditional_entropy) <= 1e-4
