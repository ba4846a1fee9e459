"""Inference over cells: weighted correlations and decision statistics with known answers, the hierarchical
bootstrap's structure, BCa intervals, TOST and Holm."""

from __future__ import annotations

import numpy as np
import pytest

from otce_ray.evaluation.inference import (
    Cells,
    bca_interval,
    compare,
    draw_plans,
    holm,
    over_cells,
    random_pick,
    regret,
    relative_regret,
    top1_hit,
    top3_recall,
    weighted_pearson,
)


def test_weighted_pearson_is_pearson_with_models_repeated():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=8), rng.normal(size=8)
    assert weighted_pearson(x, y, np.ones(8)) == pytest.approx(np.corrcoef(x, y)[0, 1])
    w = np.array([2, 0, 1, 1, 3, 0, 1, 1])
    repeated = np.repeat(np.arange(8), w)
    assert weighted_pearson(x, y, w) == pytest.approx(np.corrcoef(x[repeated], y[repeated])[0, 1])
    assert np.isnan(weighted_pearson(x, y, np.array([1, 1, 0, 0, 0, 0, 0, 0])))  # two models: no correlation


def test_decisions_have_their_known_answers():
    truth = np.array([0.1, 0.5, 0.3, 0.2])
    perfect, wrong = truth.copy(), -truth
    ones = np.ones(4)
    assert (top1_hit(perfect, truth, ones), regret(perfect, truth, ones), relative_regret(perfect, truth, ones),
            top3_recall(perfect, truth, ones)) == (1.0, 0.0, 0.0, 1.0)
    assert top1_hit(wrong, truth, ones) == 0.0 and regret(wrong, truth, ones) == pytest.approx(0.4)
    assert relative_regret(wrong, truth, ones) == pytest.approx(0.4 / (0.5 - truth.mean()))
    assert top3_recall(wrong, truth, ones) == pytest.approx(2 / 3)
    without_best = np.array([1, 0, 1, 1])  # model 1 not drawn: the best drawn is model 2
    assert top1_hit(np.array([0.0, 9.0, 1.0, 0.5]), truth, without_best) == 1.0
    assert random_pick("top1_hit", truth, ones) == 0.25 and random_pick("regret", truth, ones) == pytest.approx(
        0.5 - truth.mean())


def _cells() -> tuple[Cells, dict, dict]:
    rng = np.random.default_rng(1)
    seeds, targets, models, positions, x, y = (5, 6, 7), {}, {}, {}, {}, {}
    for seed in seeds:
        models[seed] = tuple(f"m{i}" for i in range(10))
        targets[seed] = ("a", "b")
        for target in targets[seed]:
            positions[(seed, target)] = np.arange(10)
            y[(seed, target)] = rng.normal(size=10)
            x[(seed, target)] = y[(seed, target)] + rng.normal(scale=0.8, size=10)
    return Cells(seeds, targets, models, positions), x, y


def test_the_hierarchical_bootstrap_draws_seeds_then_targets_and_models_within_each():
    cells, x, y = _cells()
    plans = draw_plans(cells, 50, seed=3)
    assert len(plans) == 50 and all(len(plan.draws) == 3 for plan in plans)
    for plan in plans:
        for seed, target_indices, weights in plan.draws:
            assert seed in cells.seeds and len(target_indices) == 2 and weights.sum() == 10
    assert draw_plans(cells, 5, seed=3)[0].draws[0][0] == draw_plans(cells, 5, seed=3)[0].draws[0][0]
    value = over_cells(cells, x, y, weighted_pearson, True)
    boot = over_cells(cells, x, y, weighted_pearson, True, draw_plans(cells, 400, seed=0))
    jack = np.array([over_cells(cells, x, y, weighted_pearson, True, keep=[s for s in cells.seeds if s != out])
                     for out in cells.seeds])
    interval = bca_interval(value, boot, jack)
    assert interval.low < value < interval.high and 0.3 < value < 0.95


def test_bca_is_the_percentile_interval_when_unbiased_and_unaccelerated():
    resampled = np.random.default_rng(2).normal(size=20_000)
    interval = bca_interval(0.0, resampled, np.array([1.0, 1.0, 1.0]))  # no spread over the jackknife: a = 0
    assert (interval.low, interval.high) == pytest.approx((-1.96, 1.96), abs=0.05)


def test_tost_calls_equivalent_only_when_the_90_percent_interval_is_inside_the_margin():
    rng = np.random.default_rng(4)
    tight = compare(0.001, rng.normal(0.001, 0.005, 5000), np.array([0.0, 0.002, 0.001]))
    wide = compare(0.001, rng.normal(0.001, 0.03, 5000), np.array([0.0, 0.002, 0.001]))
    assert tight.equivalent(0.02) and not wide.equivalent(0.02)
    assert tight.low < tight.low90 < tight.high90 < tight.high and 0 < tight.p_value <= 1


def test_holm_adjusts_step_down_and_keeps_order_and_nan():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])
