"""Exact OT: with N = M and uniform marginals the optimum is a permutation (Birkhoff), found independently by
scipy's assignment solver; its conditional entropy is counted with a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scoring_cases import clouds, loop_conditional_entropy, one_torch_thread, squared_distances  # noqa: F401

from otce_ray import otce_score
from otce_ray.scoring.exact import solve_emd


def _assignment(xs, xt):
    """The optimal permutation plan (1/N on each matched pair) and its cost."""
    cost = squared_distances(xs, xt)
    rows, cols = linear_sum_assignment(cost)
    plan = np.zeros_like(cost)
    plan[rows, cols] = 1.0 / len(xs)
    return plan, float(cost[rows, cols].mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emd_score_equals_the_assignment_formula(seed):
    xs, ys, xt, yt = clouds(30, d=3, classes=3, seed=seed, target_classes=4)
    ys, yt = np.array([2, 5, 9])[ys], np.array([0, 4, 7, 11])[yt]  # non-contiguous label values
    plan, cost = _assignment(xs, xt)
    result = otce_score(xs, ys, xt, yt, n_pixels=30, repeats=1, solver="emd", standardise=False)
    assert result.score == pytest.approx(-loop_conditional_entropy(plan, ys, yt), abs=1e-6)
    assert result.repeats[0].transport_cost == pytest.approx(cost, rel=1e-9)
    assert result.settings.epsilon is None and result.repeats[0].epsilon is None


def test_solve_emd_joint_is_the_permutation_joint():
    xs, ys, xt, yt = clouds(30, d=3, seed=4)
    plan, cost = _assignment(xs, xt)
    expected = np.zeros((3, 3))
    for i, j in zip(*np.nonzero(plan)):
        expected[ys[i], yt[j]] += plan[i, j]
    solution = solve_emd(xs, xt, ys, yt, 3, 3)
    np.testing.assert_allclose(solution.joint, expected, rtol=0, atol=1e-12)
    assert solution.transport_cost == pytest.approx(cost, rel=1e-9)
    assert solution.marginal_error < 1e-12


@pytest.mark.filterwarnings("ignore:numItermax reached")
def test_iteration_cap_is_an_error_naming_the_argument():
    xs, ys, xt, yt = clouds(30, d=3)
    with pytest.raises(ValueError, match=r"\bmax_iterations\b"):
        solve_emd(xs, xt, ys, yt, 3, 3, max_iterations=1)
    with pytest.raises(ValueError, match=r"solver='emd'.*\bmax_iterations\b"):
        otce_score(xs, ys, xt, yt, n_pixels=30, repeats=1, solver="emd", emd_max_iterations=1)
    with pytest.raises(ValueError, match=r"max_iterations only apply to solver 'sinkhorn', not 'emd'"):
        otce_score(xs, ys, xt, yt, n_pixels=30, repeats=1, solver="emd", max_iterations=1)
