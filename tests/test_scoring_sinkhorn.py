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
from otce_ray.scoring.sinkhorn import (
    TILE_BYTES,
    _Clouds,
    _column_error,
    _sinkhorn_step,
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
def test_cold_start_passes_take_the_exact_path(eps):
    """No eps-scaling: from f = |x|^2, g = 0 at a small eps the row sums leave exp's range and the fused column sums
    underflow, so each pass must fall back to shifting by row maxima and to the exact column update. Twenty plain
    Sinkhorn passes (no acceleration, which would amplify rounding) in float32 track the float64 ones."""
    x, y, _, _ = _problem()
    iterates = {}
    for dtype in (torch.float64, torch.float32):
        clouds_ = _Clouds(x.to(dtype), y.to(dtype), TILE_BYTES)
        f, g = clouds_.x_sq.clone(), torch.zeros(len(y), dtype=dtype)
        for _ in range(20):
            f, residual = _sinkhorn_step(clouds_, f, g, eps)
            g = g + residual
        iterates[dtype] = f, g, _column_error(residual, clouds_.log_b, eps)
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
