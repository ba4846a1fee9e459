"""The Sinkhorn loop: agreement with POT on the same normalised cost and eps, tiling, eps -> 0, and the remedies."""

from __future__ import annotations

from functools import partial

import numpy as np
import ot
import pytest
import torch
from scoring_cases import clouds, label_joint, loop_conditional_entropy, one_torch_thread  # noqa: F401 (fixture)

from otce_ray import otce_score
from otce_ray.scoring import sinkhorn as sinkhorn_module
from otce_ray.scoring.backends.torch_tiles import TILE_BYTES, TorchTiles, full_precision_matmul
from otce_ray.scoring.coarse import group_points
from otce_ray.scoring.cost_scale import normalise
from otce_ray.scoring.entropy import conditional_entropy
from otce_ray.scoring.sinkhorn import STALL_PASSES, SinkhornPotentials, _pass

# The loop over the torch tile backend (the backend is the caller's choice: the registry's, in the engine).
sinkhorn_potentials = partial(sinkhorn_module.sinkhorn_potentials, backend=TorchTiles)
plan_label_joint = partial(sinkhorn_module.plan_label_joint, backend=TorchTiles)
solve_sinkhorn = partial(sinkhorn_module.solve_sinkhorn, backend=TorchTiles)
TIGHT = 1e-12  # L1 marginal tolerance of the float64 reference solves


def _problem(n: int = 60, m: int = 50, seed: int = 0):
    """A normalised float64 problem with unequal sizes and class counts."""
    xs, ys, xt, yt = clouds(n, d=5, classes=3, seed=seed, m=m, target_classes=4)
    x, y, _ = normalise(torch.from_numpy(xs), torch.from_numpy(xt))
    return x, y, torch.from_numpy(ys), torch.from_numpy(yt)


def _our_plan(x, y, run: SinkhornPotentials, eps, a=None, b=None):
    """P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps), materialised from our potentials (small N only)."""
    a = np.full(len(x), 1 / len(x)) if a is None else a
    b = np.full(len(y), 1 / len(y)) if b is None else b
    cost = ot.dist(x.numpy(), y.numpy())
    plan = np.exp((run.f.numpy()[:, None] + run.g.numpy()[None, :] - cost) / eps) * a[:, None] * b[None, :]
    return plan, cost


@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn"])
@pytest.mark.parametrize("eps", [0.5, 0.05])
def test_coupling_joint_and_entropy_match_pot(method, eps):
    x, y, ys, yt = _problem()
    n, m = len(x), len(y)
    run = sinkhorn_potentials(x, y, eps, tolerance=TIGHT, max_iterations=10_000)
    assert run.converged and run.marginal_error <= TIGHT and run.remedy is None and run.dtype == torch.float64
    plan, cost = _our_plan(x, y, run, eps)
    reference = ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), cost, eps, method=method,
                            stopThr=1e-15, numItermax=100_000)
    assert np.abs(plan - reference).sum() <= 1e-9

    joint, transport = plan_label_joint(x, y, run.f, run.g, eps, ys, yt, 3, 4)
    np.testing.assert_allclose(joint.numpy(), label_joint(reference, ys.numpy(), yt.numpy()), rtol=0, atol=1e-9)
    assert transport == pytest.approx(float((reference * cost).sum()), abs=1e-9)
    expected = loop_conditional_entropy(reference, ys.numpy(), yt.numpy())
    assert conditional_entropy(joint.numpy()) == pytest.approx(expected, abs=1e-9)


def test_weighted_points_match_pot():
    """Non-uniform weights (what merged duplicates carry) on both sides, against POT's log-domain solve."""
    x, y, _, _ = _problem()
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0.2, 3.0, len(x)), rng.uniform(0.2, 3.0, len(y))
    a, b = a / a.sum(), b / b.sum()
    run = sinkhorn_potentials(x, y, 0.05, row_weights=torch.from_numpy(a), column_weights=torch.from_numpy(b),
                              tolerance=TIGHT, max_iterations=10_000)
    assert run.converged
    plan, cost = _our_plan(x, y, run, 0.05, a, b)
    reference = ot.sinkhorn(a, b, cost, 0.05, method="sinkhorn_log", stopThr=1e-15, numItermax=100_000)
    assert np.abs(plan - reference).sum() <= 1e-9


def test_solve_sinkhorn_reports_its_solve():
    x, y, ys, yt = _problem()
    run = sinkhorn_potentials(x, y, 0.05, tolerance=1e-6)
    solution = solve_sinkhorn(x, y, ys, yt, 3, 4, 0.05, tolerance=1e-6)
    joint, transport = plan_label_joint(x, y, run.f, run.g, 0.05, ys, yt, 3, 4)
    assert (solution.iterations, solution.marginal_error, solution.converged, solution.remedy) == (
        run.iterations, run.marginal_error, True, None)
    assert run.marginal_error <= 1e-6
    assert torch.equal(solution.joint, joint) and solution.transport_cost == transport
    assert float(solution.joint.sum()) == pytest.approx(1.0, abs=1e-6)


def test_duplicate_pixels_are_merged_without_changing_the_plan():
    """Each point repeated 1-4 times: the merged solve's joint and cost are those of the plan over all pixels."""
    x, y, ys, yt = _problem()
    rng = np.random.default_rng(1)
    rows, columns = np.repeat(np.arange(len(x)), rng.integers(1, 5, len(x))), np.repeat(np.arange(len(y)), 3)
    xd, yd, ysd, ytd = x[rows], y[columns], ys[rows], yt[columns]
    merged = solve_sinkhorn(xd, yd, ysd, ytd, 3, 4, 0.05, tolerance=1e-10)
    whole = sinkhorn_potentials(xd, yd, 0.05, tolerance=1e-10)
    joint, cost = plan_label_joint(xd, yd, whole.f, whole.g, 0.05, ysd, ytd, 3, 4)
    np.testing.assert_allclose(merged.joint.numpy(), joint.numpy(), rtol=0, atol=1e-9)
    assert merged.transport_cost == pytest.approx(cost, abs=1e-9)


@pytest.mark.parametrize("rows_per_tile", [1, 7])
def test_streaming_in_tiles_equals_one_tile(rows_per_tile):
    """Row and column updates, the column sums by group and the joint in tiles of 1 or about 7 rows (last partial,
    tiles straddling groups) vs one tile."""
    x, y, ys, yt = _problem()
    tiny = partial(TorchTiles, tile_bytes=rows_per_tile * max(len(x), len(y)) * x.element_size())
    whole = partial(TorchTiles, tile_bytes=1 << 30)
    one = sinkhorn_potentials(x, y, 0.05, tolerance=1e-9, backend=whole)
    many = sinkhorn_potentials(x, y, 0.05, tolerance=1e-9, backend=tiny)
    assert one.iterations == many.iterations
    np.testing.assert_allclose(many.f.numpy(), one.f.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(many.g.numpy(), one.g.numpy(), rtol=0, atol=1e-12)
    assert many.marginal_error == pytest.approx(one.marginal_error, abs=1e-12)
    joint1, cost1 = plan_label_joint(x, y, one.f, one.g, 0.05, ys, yt, 3, 4, backend=whole)
    joint2, cost2 = plan_label_joint(x, y, one.f, one.g, 0.05, ys, yt, 3, 4, backend=tiny)
    np.testing.assert_allclose(joint2.numpy(), joint1.numpy(), rtol=0, atol=1e-14)
    assert cost2 == pytest.approx(cost1, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_entropic_score_tends_to_the_exact_one_as_eps_shrinks(seed):
    """<P_eps, C> decreases to the OT cost as eps falls (a theorem); the CE gap closes with it.

    The theorem is about exact entropic plans: one whose marginals are off by an L1 error e may undercut the OT cost
    by up to e x max cost, so the solves are held to a tolerance (1e-4) well under the gaps compared.
    """
    xs, ys, xt, yt = clouds(40, seed=seed)
    exact = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1, solver="emd", standardise=False).repeats[0]
    cost_gaps, entropy_gaps = [], []
    for eps in (0.2, 0.05, 0.01, 0.003):
        record = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1, epsilon=eps, tolerance=1e-4,
                            standardise=False).repeats[0]
        assert record.converged
        cost_gaps.append(record.transport_cost - exact.transport_cost)
        entropy_gaps.append(abs(record.conditional_entropy - exact.conditional_entropy))
    assert cost_gaps[-1] > 0 and cost_gaps == sorted(cost_gaps, reverse=True)
    assert entropy_gaps[-1] < 2e-3 and entropy_gaps[-1] < entropy_gaps[0] / 10


@pytest.mark.parametrize("eps", [0.01, 0.0005])
def test_cold_start_passes_take_the_exact_path(eps, monkeypatch):
    """No eps-scaling: from the initial potentials at a small eps the first pass's row sums leave exp's range and
    its fused column sums underflow (in one dtype at least), so it falls back to shifting by row maxima and to the
    exact column update. Twenty plain passes (no acceleration, no coarse correction, which would amplify rounding)
    in float32 track float64."""
    x, y, _, _ = _problem()
    exact_updates = []
    exact_update = TorchTiles.column_softmin
    monkeypatch.setattr(TorchTiles, "column_softmin",
                        lambda *args: exact_updates.append(1) or exact_update(*args))
    iterates = {}
    for dtype in (torch.float64, torch.float32):
        backend = TorchTiles(x.to(dtype), y.to(dtype))
        single = group_points(x, backend.row_weights, y, backend.column_weights, groups=1)
        f, g = backend.initial_row_potential(), torch.zeros(len(y), dtype=torch.float64)
        for _ in range(20):
            step = _pass(backend, single, f, g, eps)
            f, g = step.f, step.next_g
        iterates[dtype] = f, g, step.error
    assert exact_updates  # the exact column update ran
    (f64, g64, error64), (f32, g32, error32) = iterates[torch.float64], iterates[torch.float32]
    assert torch.isfinite(torch.cat([f64, g64, f32, g32])).all()
    assert error32 == pytest.approx(error64, rel=1e-3)
    np.testing.assert_allclose(f32.numpy(), f64.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(g32.numpy(), g64.numpy(), rtol=0, atol=1e-5)


def test_cold_start_converges_to_the_annealed_solution():
    """Without eps-scaling the accelerated iterations still reach the tolerance, at the same plan."""
    x, y, ys, yt = _problem()
    warm = sinkhorn_potentials(x, y, 0.01, tolerance=1e-6)
    cold = sinkhorn_potentials(x, y, 0.01, tolerance=1e-6, diameter=0.01)
    assert warm.converged and cold.converged
    warm_joint, _ = plan_label_joint(x, y, warm.f, warm.g, 0.01, ys, yt, 3, 4)
    cold_joint, _ = plan_label_joint(x, y, cold.f, cold.g, 0.01, ys, yt, 3, 4)
    np.testing.assert_allclose(cold_joint.numpy(), warm_joint.numpy(), rtol=0, atol=1e-6)


def test_the_coarse_correction_changes_the_path_not_the_solution():
    x, y, ys, yt = _problem(200, 180, seed=3)
    coarse = sinkhorn_potentials(x, y, 0.01, tolerance=1e-8)
    plain = sinkhorn_potentials(x, y, 0.01, tolerance=1e-8, groups=1)
    assert coarse.converged and plain.converged
    joints = [plan_label_joint(x, y, run.f, run.g, 0.01, ys, yt, 3, 4)[0] for run in (coarse, plain)]
    np.testing.assert_allclose(joints[0].numpy(), joints[1].numpy(), rtol=0, atol=1e-7)


def test_a_tolerance_below_the_float32_floor_is_reached_by_the_float64_remedy():
    """float32 sums bottom out near 1e-6: with a 1e-9 tolerance the float32 solve stalls (Anderson, then its plain
    passes), and the float64 retry from its best potentials reaches the tolerance; the remedy is recorded."""
    x, y, ys, yt = _problem()
    run = sinkhorn_potentials(x.float(), y.float(), 0.05, tolerance=1e-9, max_iterations=5000)
    assert (run.remedy, run.dtype, run.converged) == ("float64", torch.float64, True)
    assert run.marginal_error <= 1e-9
    assert run.iterations < 5 * STALL_PASSES + 200  # stalls are cut short, far from the cap
    plan, _ = _our_plan(x.float().double(), y.float().double(), run, 0.05)  # the points solved: float32's
    assert np.abs(plan.sum(0) - 1 / len(y)).sum() <= 1e-9  # the error reported is the plan's own
    solution = solve_sinkhorn(x.float(), y.float(), ys, yt, 3, 4, 0.05, tolerance=1e-9, max_iterations=5000)
    assert (solution.remedy, solution.converged) == ("float64", True)


def test_a_stalled_acceleration_falls_back_to_plain_passes(monkeypatch):
    """An accelerator whose every jump lands off the mark (noise of 50 eps) never gives a better error: after
    STALL_PASSES the loop restarts plain passes from the best iterate and reaches the tolerance, remedy 'plain'."""
    x, y, ys, yt = _problem()
    noise = torch.Generator().manual_seed(0)
    jumps = []

    def misguided(self, g, residual, error, eps):
        jumps.append(error)
        return g + residual + 50 * eps * torch.randn(len(g), generator=noise, dtype=torch.float64)

    monkeypatch.setattr(sinkhorn_module.Anderson, "step", misguided)
    run = sinkhorn_potentials(x, y, 0.05, tolerance=1e-6, diameter=0.05)  # no annealing: the stall is at eps
    assert (run.remedy, run.converged) == ("plain", True) and run.marginal_error <= 1e-6
    assert len(jumps) >= STALL_PASSES
    solution = solve_sinkhorn(x, y, ys, yt, 3, 4, 0.05, tolerance=1e-6)
    assert solution.converged


def test_the_solver_holds_full_float32_precision_and_restores_the_callers_setting():
    x, y, _, _ = _problem()
    reference = sinkhorn_potentials(x.float(), y.float(), 0.05, tolerance=1e-5)
    torch.set_float32_matmul_precision("medium")
    try:
        with full_precision_matmul():
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "medium"
        relaxed = sinkhorn_potentials(x.float(), y.float(), 0.05, tolerance=1e-5)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")
    assert torch.equal(relaxed.f, reference.f) and torch.equal(relaxed.g, reference.g)


def test_tile_buffer_is_sized_for_the_problem_not_the_default():
    """Small problems get a small buffer (capped at the point count), so a repeat of 100 pixels holds kilobytes."""
    x, y, _, _ = _problem()
    backend = TorchTiles(x.float(), y.float())
    assert backend.buffer.numel() * backend.buffer.element_size() < TILE_BYTES
