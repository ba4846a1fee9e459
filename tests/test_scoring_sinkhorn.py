"""Streamed log-domain Sinkhorn: agreement with POT on the same normalised cost and eps, tiling, and eps -> 0."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch
from scoring_cases import clouds, label_joint, loop_conditional_entropy, one_torch_thread  # noqa: F401 (fixture)

from otce_ray import otce_score
from otce_ray.scoring.cost_scale import normalise
from otce_ray.scoring.entropy import conditional_entropy
from otce_ray.scoring import sinkhorn as sinkhorn_module
from otce_ray.scoring.sinkhorn import (
    STALL_ITERATIONS,
    TILE_BYTES,
    _Anderson,
    _Clouds,
    _column_error,
    _sinkhorn_step,
    full_precision_matmul,
    plan_label_joint,
    sinkhorn_potentials,
    solve_sinkhorn,
)

TIGHT = 1e-12  # L1 marginal tolerance of the float64 reference solves


def _problem(n: int = 60, m: int = 50, seed: int = 0):
    """A normalised float64 problem with unequal sizes and class counts."""
    xs, ys, xt, yt = clouds(n, d=5, classes=3, seed=seed, m=m, target_classes=4)
    x, y, _ = normalise(torch.from_numpy(xs), torch.from_numpy(xt))
    return x, y, torch.from_numpy(ys), torch.from_numpy(yt)


def _our_plan(x, y, f, g, eps):
    """P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps), materialised from our potentials (small N only)."""
    n, m = len(x), len(y)
    cost = ot.dist(x.numpy(), y.numpy())
    return np.exp((f.numpy()[:, None] + g.numpy()[None, :] - cost) / eps) / (n * m), cost


@pytest.mark.parametrize("method", ["sinkhorn_log", "sinkhorn"])
@pytest.mark.parametrize("eps", [0.5, 0.05])
def test_coupling_joint_and_entropy_match_pot(method, eps):
    x, y, ys, yt = _problem()
    n, m = len(x), len(y)
    f, g, _, error = sinkhorn_potentials(x, y, eps, tolerance=TIGHT, max_iterations=10_000)
    assert error <= TIGHT
    plan, cost = _our_plan(x, y, f, g, eps)
    reference = ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), cost, eps, method=method,
                            stopThr=1e-15, numItermax=100_000)
    assert np.abs(plan - reference).sum() <= 1e-9

    joint, transport = plan_label_joint(x, y, f, g, eps, ys, yt, 3, 4)
    np.testing.assert_allclose(joint.numpy(), label_joint(reference, ys.numpy(), yt.numpy()), rtol=0, atol=1e-9)
    assert transport == pytest.approx(float((reference * cost).sum()), abs=1e-9)
    expected = loop_conditional_entropy(reference, ys.numpy(), yt.numpy())
    assert conditional_entropy(joint.numpy()) == pytest.approx(expected, abs=1e-9)


def test_solve_sinkhorn_reports_its_solve():
    x, y, ys, yt = _problem()
    f, g, iterations, error = sinkhorn_potentials(x, y, 0.05, tolerance=1e-6)
    solution = solve_sinkhorn(x, y, ys, yt, 3, 4, 0.05, tolerance=1e-6)
    joint, transport = plan_label_joint(x, y, f, g, 0.05, ys, yt, 3, 4)
    assert (solution.iterations, solution.marginal_error, solution.converged) == (iterations, error, True)
    assert error <= 1e-6
    assert torch.equal(solution.joint, joint) and solution.transport_cost == transport
    assert float(solution.joint.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("rows_per_tile", [1, 7])
def test_streaming_in_tiles_equals_one_tile(rows_per_tile):
    """Row and column updates and the joint pass in tiles of 1 or about 7 rows (last partial) vs one tile."""
    x, y, ys, yt = _problem()
    tiny = rows_per_tile * max(len(x), len(y)) * x.element_size()
    whole = 1 << 30
    f1, g1, it1, err1 = sinkhorn_potentials(x, y, 0.05, tolerance=1e-9, tile_bytes=whole)
    f2, g2, it2, err2 = sinkhorn_potentials(x, y, 0.05, tolerance=1e-9, tile_bytes=tiny)
    assert it1 == it2
    np.testing.assert_allclose(f2.numpy(), f1.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g2.numpy(), g1.numpy(), rtol=0, atol=1e-12)
    assert err2 == pytest.approx(err1, abs=1e-12)
    joint1, cost1 = plan_label_joint(x, y, f1, g1, 0.05, ys, yt, 3, 4, tile_bytes=whole)
    joint2, cost2 = plan_label_joint(x, y, f1, g1, 0.05, ys, yt, 3, 4, tile_bytes=tiny)
    np.testing.assert_allclose(joint2.numpy(), joint1.numpy(), rtol=0, atol=1e-14)
    assert cost2 == pytest.approx(cost1, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_entropic_score_tends_to_the_exact_one_as_eps_shrinks(seed):
    """<P_eps, C> decreases to the OT cost as eps falls (a theorem); the CE gap closes with it.

    The theorem is about exact entropic plans: one whose marginals are off by an L1 error e may undercut the OT cost
    by up to e x max cost, so the solves are held to a tolerance (1e-4) well under the gaps compared.
    """
    xs, ys, xt, yt = clouds(40, seed=seed)
    exact = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1, solver="emd").repeats[0]
    cost_gaps, entropy_gaps = [], []
    for eps in (0.2, 0.05, 0.01, 0.003):
        record = otce_score(xs, ys, xt, yt, n_pixels=40, repeats=1, epsilon=eps, tolerance=1e-4).repeats[0]
        assert record.converged
        cost_gaps.append(record.transport_cost - exact.transport_cost)
        entropy_gaps.append(abs(record.conditional_entropy - exact.conditional_entropy))
    assert cost_gaps[-1] > 0 and cost_gaps == sorted(cost_gaps, reverse=True)
    assert entropy_gaps[-1] < 2e-3 and entropy_gaps[-1] < entropy_gaps[0] / 10



@pytest.mark.parametrize("eps", [0.01, 0.0005])
def test_cold_start_passes_take_the_exact_path(eps, monkeypatch):
    """No eps-scaling: from f = |x|^2, g = 0 at a small eps the first pass's row sums leave exp's range and its
    fused column sums underflow (in one dtype at least), so it falls back to shifting by row maxima and to the exact
    column update. Twenty plain Sinkhorn passes (no acceleration, which would amplify rounding) in float32 track
    float64."""
    x, y, _, _ = _problem()
    fallbacks = []
    exact_update = sinkhorn_module._column_update
    monkeypatch.setattr(sinkhorn_module, "_column_update", lambda *args: fallbacks.append(1) or exact_update(*args))
    iterates = {}
    for dtype in (torch.float64, torch.float32):
        clouds_ = _Clouds(x.to(dtype), y.to(dtype), TILE_BYTES)
        f, g = clouds_.x_sq.clone(), torch.zeros(len(y), dtype=dtype)
        for _ in range(20):
            f, residual = _sinkhorn_step(clouds_, f, g, eps)
            g = g + residual
        iterates[dtype] = f, g, _column_error(residual, clouds_.log_b, eps)
    assert fallbacks  # the exact column update ran
    (f64, g64, error64), (f32, g32, error32) = iterates[torch.float64], iterates[torch.float32]
    assert torch.isfinite(torch.cat([f64, g64, f32, g32])).all()
    assert error32 == pytest.approx(error64, rel=1e-3)
    np.testing.assert_allclose(f32.double().numpy(), f64.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(g32.double().numpy(), g64.numpy(), rtol=0, atol=1e-5)


def test_cold_start_converges_to_the_annealed_solution():
    """Without eps-scaling the accelerated iterations still reach the tolerance, at the same plan."""
    x, y, ys, yt = _problem()
    warm = sinkhorn_potentials(x, y, 0.01, tolerance=1e-6)
    cold = sinkhorn_potentials(x, y, 0.01, tolerance=1e-6, diameter=0.01)
    assert warm[3] <= 1e-6 and cold[3] <= 1e-6
    warm_joint, _ = plan_label_joint(x, y, warm[0], warm[1], 0.01, ys, yt, 3, 4)
    cold_joint, _ = plan_label_joint(x, y, cold[0], cold[1], 0.01, ys, yt, 3, 4)
    np.testing.assert_allclose(cold_joint.numpy(), warm_joint.numpy(), rtol=0, atol=1e-6)


def test_a_tolerance_below_the_float32_floor_stops_on_stall_with_the_best_iterate():
    """float32 sums bottom out near 1e-6: a 1e-12 tolerance stops STALL_ITERATIONS after the best error, far short
    of the cap, and returns the best plan seen (its error is the one reported)."""
    x, y, _, _ = _problem()
    f, g, iterations, error = sinkhorn_potentials(x.float(), y.float(), 0.05, tolerance=1e-12, max_iterations=5000)
    assert iterations < 1000 and 0 < error < 1e-4
    clouds_ = _Clouds(x.float(), y.float(), TILE_BYTES)
    _, residual = _sinkhorn_step(clouds_, f, g, 0.05)
    assert _column_error(residual, clouds_.log_b, 0.05) == pytest.approx(error, abs=1e-7)  # float32 re-evaluation
    assert STALL_ITERATIONS < 1000


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
    assert torch.equal(relaxed[0], reference[0]) and torch.equal(relaxed[1], reference[1])


def _linear_map(seed: int = 0, size: int = 30):
    """g -> A g + c with three eigenvalues near 1 (slow modes) and fast ones, as Sinkhorn's map near its fixed
    point on clustered points."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(size, size)))
    spectrum = np.concatenate([[0.999, 0.995, 0.99], rng.uniform(0, 0.1, size - 3)])
    matrix = torch.from_numpy(basis @ np.diag(spectrum) @ basis.T)
    offset = torch.from_numpy(rng.normal(size=size))
    fixed_point = torch.linalg.solve(torch.eye(size, dtype=torch.float64) - matrix, offset)
    return (lambda g: matrix @ g + offset), fixed_point


def test_anderson_finds_slow_modes_that_plain_iteration_crawls_along():
    apply, fixed_point = _linear_map()
    accelerated, plain = torch.zeros_like(fixed_point), torch.zeros_like(fixed_point)
    anderson = _Anderson()
    for _ in range(40):
        residual = apply(accelerated) - accelerated
        accelerated = anderson.step(accelerated, residual, float(residual.abs().sum()), eps=1e6)  # no clip
        plain = apply(plain)
    assert float((accelerated - fixed_point).abs().max()) < 1e-6
    assert float((plain - fixed_point).abs().max()) > 1.0


def test_anderson_jumps_are_clipped_to_trust_eps_and_restart_on_divergence():
    apply, _ = _linear_map()
    anderson, g = _Anderson(), torch.zeros(30, dtype=torch.float64)
    for _ in range(4):
        residual = apply(g) - g
        step = anderson.step(g, residual, float(residual.abs().sum()), eps=1e-3)
        assert float((step - (g + residual)).abs().max()) <= _Anderson.TRUST * 1e-3 * (1 + 1e-9)
        g = step
    history = len(anderson.residuals)
    anderson.step(g, apply(g) - g, error=1e9, eps=1e-3)  # an error far above the best seen
    assert history > 1 and len(anderson.residuals) == 1
