"""The cost scale eps is measured against, checked against the dense cost of small clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scoring_cases import clouds, squared_distances

from otce_ray.scoring.cost_scale import COST_SCALES, cost_scale, normalise


def _tensors(*arrays):
    return [torch.from_numpy(array) for array in arrays]


def test_scales_match_the_dense_cost():
    xs, _, xt, _ = clouds(50, d=4, m=41)
    raw = squared_distances(xs, xt)
    ordered = np.sort(raw.ravel())
    x, y = _tensors(xs, xt)
    assert cost_scale(x, y, "mean") == pytest.approx(raw.mean(), rel=1e-12)
    assert cost_scale(x, y, "max") == pytest.approx(raw.max(), rel=1e-12)
    assert ordered[(raw.size - 1) // 2] * (1 - 1e-12) <= cost_scale(x, y, "median")
    assert cost_scale(x, y, "median") <= ordered[raw.size // 2] * (1 + 1e-12)
    assert cost_scale(x, y, "none") == 1.0


def test_median_of_zero_falls_back_to_the_mean():
    """Over half the pairs coincide (zero median), but not all: the scale is the exact mean, 10 x 1 / 100."""
    xs, xt = np.zeros((10, 2)), np.zeros((10, 2))
    xt[0, 0] = 1.0
    assert cost_scale(*_tensors(xs, xt), "median") == pytest.approx(0.1, rel=1e-12)


@pytest.mark.parametrize("kind", COST_SCALES)
def test_coincident_points_have_unit_scale(kind):
    assert cost_scale(*_tensors(np.full((5, 3), 2.0), np.full((4, 3), 2.0)), kind) == 1.0


@pytest.mark.parametrize("kind", ["median", "mean", "max"])
def test_normalise_centres_and_divides_the_cost_by_the_scale(kind):
    xs, _, xt, _ = clouds(30, d=3, m=20)
    x, y, scale = normalise(*_tensors(xs + 100.0, xt + 100.0), kind)
    assert x.dtype == y.dtype == torch.float64
    np.testing.assert_allclose(torch.cat([x, y]).mean(0).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(squared_distances(x.numpy(), y.numpy()) * scale, squared_distances(xs, xt),
                               rtol=1e-10)
    assert scale == pytest.approx(cost_scale(*_tensors(xs, xt), kind), rel=1e-10)


def test_unknown_scale_is_rejected():
    with pytest.raises(ValueError, match="unknown cost scale 'p90'"):
        cost_scale(*_tensors(np.zeros((2, 2)), np.ones((2, 2))), "p90")
