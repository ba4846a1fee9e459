"""Racing without Ray: the stopping rule on cases with a known answer, the stage settings, the bench's recall."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from otce_ray.bench.racing import recall
from otce_ray.config import ConfigError, parse_config
from otce_ray.extraction.planning import StorePlan
from otce_ray.scoring.racing import RacingSettings, Stage, order_of, shard_order
from otce_ray.scoring.settings import OTCESettings
from otce_ray.scoring.stopping import StageScores, decide, image_allowance, quantile


def _scores(mean: float, rng: np.random.Generator, *, repeats: int = 6, noise: float = 0.01,
            halves: tuple[float, float] = (0.0, 0.0)) -> StageScores:
    """Repeat scores around ``mean`` (repeat noise ``noise``), each half shifted by its image effect."""
    draws = mean + noise * rng.standard_normal(repeats)
    return StageScores(tuple(draws[0::2] + halves[0]), tuple(draws[1::2] + halves[1]))


def test_well_separated_models_stop_at_the_first_stage():
    rng = np.random.default_rng(0)
    scores = {f"m{i}": _scores(-1.0 - 0.5 * i, rng) for i in range(10)}
    decision = decide(scores, top_k=3, images=0.125, quantile=quantile(0.95, 10, 2))
    assert decision.stopped == tuple(sorted(f"m{i}" for i in range(3, 10)))
    assert decision.threshold == pytest.approx(decision.bounds["m2"].low)
    assert all(decision.bounds[name].high < decision.threshold for name in decision.stopped)


def test_near_ties_go_to_the_end_and_only_clear_losers_stop():
    """A three-stage race: four models tied at the top within noise, for k = 2, survive every stage; the rest stop
    at the first."""
    rng = np.random.default_rng(1)
    means = {"a": -1.000, "b": -1.001, "c": -1.002, "d": -1.003, **{f"far{i}": -2.0 - 0.1 * i for i in range(8)}}
    racing = set(means)
    q = quantile(0.95, len(means), 3)
    stopped_at = {}
    for stage, (images, noise) in enumerate([(0.125, 0.02), (0.375, 0.01), (0.75, 0.005)], start=1):
        decision = decide({name: _scores(means[name], rng, noise=noise) for name in racing}, top_k=2,
                          images=images, quantile=q)
        stopped_at.update(dict.fromkeys(decision.stopped, stage))
        racing -= set(decision.stopped)
    assert racing == {"a", "b", "c", "d"}
    assert stopped_at == dict.fromkeys((f"far{i}" for i in range(8)), 1)


def test_halves_that_disagree_widen_the_bounds_by_the_image_sampling_they_show():
    """The same stage means and repeat noise, once with halves that agree and once with halves that disagree by
    model (the images moved the scores): only the first may stop the runner-up."""
    rng = np.random.default_rng(2)
    means = {f"m{i}": -1.0 - 0.05 * i for i in range(12)}
    agree = {name: _scores(mean, rng, noise=0.002) for name, mean in means.items()}
    effects = rng.normal(0, 0.05, size=(12, 2))
    disagree = {name: StageScores(tuple(np.add(score.a, effects[i, 0])), tuple(np.add(score.b, effects[i, 1])))
                for i, (name, score) in enumerate(agree.items())}
    q = quantile(0.95, 12, 2)
    assert image_allowance(list(agree.values()), 0.125) < 0.002
    tau = image_allowance(list(disagree.values()), 0.125)
    assert 0.02 < tau < 0.08  # the effects' sd, 0.05, scaled: sd(mean of halves) = 0.05/sqrt(2), times sqrt(1 - f)
    assert len(decide(agree, top_k=1, images=0.125, quantile=q).stopped) > len(
        decide(disagree, top_k=1, images=0.125, quantile=q).stopped)
    assert image_allowance(list(disagree.values()), 1.0) == 0.0  # a stage that read every image: nothing to miss


def test_the_rule_never_stops_a_true_top_k_model_more_often_than_its_confidence_allows():
    """Simulated races with a known truth: full-budget scores, per-model image effects on each half and repeat
    noise; the rule, at confidence 0.9, stops a true top-5 model in well under 10% of 200 races."""
    rng = np.random.default_rng(3)
    truth = np.sort(rng.normal(-1.0, 0.15, 60))[::-1]
    top = {f"m{i}" for i in range(5)}
    q = quantile(0.9, 60, 1)
    wrong = stops = 0
    for _ in range(200):
        effects = rng.normal(0, 0.03, size=(60, 2))
        scores = {f"m{i}": _scores(truth[i] + 0.2, rng, noise=0.02, halves=tuple(effects[i])) for i in range(60)}
        decision = decide(scores, top_k=5, images=0.125, quantile=q)
        wrong += bool(top & set(decision.stopped))
        stops += len(decision.stopped)
    assert wrong / 200 <= 0.05
    assert stops / 200 > 20  # and it stops most of the field


def test_models_without_bounds_never_stop_and_few_models_decide_nothing():
    rng = np.random.default_rng(4)
    scores = {f"m{i}": _scores(-1.0 - i, rng) for i in range(4)}
    scores["one_repeat"] = StageScores((-9.0,), ())
    decision = decide(scores, top_k=2, images=0.1, quantile=3.0)
    assert "one_repeat" not in decision.stopped and "one_repeat" not in decision.bounds
    assert decision.stopped == ("m2", "m3") and len(decision.notes) == 1
    assert decide(dict(list(scores.items())[:2]), top_k=2, images=0.1, quantile=3.0).stopped == ()
    assert math.isnan(decide({}, top_k=2, images=0.1, quantile=3.0).threshold)


def test_identical_repeats_take_the_median_repeat_variance_not_zero():
    """A stage whose pool is no larger than N draws the same pixels every repeat: its spread says nothing, and the
    bound uses the stage's median repeat variance instead."""
    rng = np.random.default_rng(5)
    scores = {f"m{i}": _scores(-1.0 - 0.01 * i, rng, noise=0.02) for i in range(6)}
    scores["same"] = StageScores((-1.5,) * 3, (-1.5,) * 3)
    decision = decide(scores, top_k=2, images=0.5, quantile=3.0)
    same = decision.bounds["same"]
    assert same.high - same.mean == pytest.approx(decision.bounds["m0"].high - decision.bounds["m0"].mean, rel=0.6)
    assert same.high > same.mean


def test_the_quantile_is_a_union_bound_over_models_and_stages():
    assert quantile(0.95, 1, 1) == pytest.approx(1.95996, abs=1e-4)  # two one-sided bounds at 2.5% each
    assert quantile(0.95, 100, 2) > quantile(0.95, 10, 2) > quantile(0.95, 10, 1)


def test_a_stage_reads_a_seeded_sample_of_the_shards_that_the_next_stage_extends():
    stage, later = Stage(images=0.125, pixels=0.25, repeats=6), Stage(images=0.5)
    assert [stage.count(n) for n in (1, 2, 8, 16, 17, 64)] == [1, 2, 2, 2, 3, 8]
    order = shard_order("alpha", 16, 0)
    assert sorted(order) == list(range(16)) and order != tuple(range(16))  # a shuffle, not the first shards
    assert order == shard_order("alpha", 16, 0) != shard_order("beta", 16, 0) != shard_order("alpha", 16, 1)
    assert stage.shards("alpha", 16, 0) == order[:2] and later.shards("alpha", 16, 0) == order[:8]
    assert order_of("gamma", "m1", "gamma") == order_of("gamma", "m2", "gamma")  # one target sample for all
    assert order_of("alpha", "m1", "gamma") != order_of("alpha", "m2", "gamma")  # a source's: its model's own
    assert stage.settings(OTCESettings(n_pixels=2000, repeats=10)) == OTCESettings(n_pixels=500, repeats=6)
    plan = StorePlan(request=None, shards=tuple(range(16)))  # the shards' files do not matter here
    assert plan.only((9, 3)).extract == (3, 9) and plan.only((9, 3)).todo == (3, 9)
    assert plan.only(order).extract is None and plan.only(order).todo == tuple(range(16))  # whole: complete
    assert plan.todo == tuple(range(16))


@pytest.mark.parametrize("racing, problem", [
    ({"stages": [{"images": 0.5}, {"images": 0.25}]}, "racing.stages: each stage must read more images"),
    ({"stages": [{"images": 0.1, "repeats": 5}]}, "racing.stages[0].repeats: must be even"),
    ({"stages": [{"images": 1.0}]}, "racing.stages[0].images: expected a number > 0 and < 1"),
    ({"stages": [{"repeats": 4}]}, "racing.stages[0].images: missing required field"),
    ({"confidence": 1.0}, "racing.confidence: expected a number >= 0.5 and < 1"),
])
def test_racing_settings_are_checked_with_the_config(tmp_path, racing, problem):
    source = {"name": "a", "format": "folder", "root": str(tmp_path), "label_map": {0: 0}}
    raw = {"store": "s", "output": "o", "target": source, "racing": racing,
           "models": [{"name": "m", "format": "builtin", "architecture": "unet", "source": source}]}
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_config(raw, base_dir=str(tmp_path))
    with pytest.raises(ValueError):
        RacingSettings(**racing)


def test_targets_and_target_are_exclusive_and_each_target_writes_its_own_folder(tmp_path):
    spec = {"format": "folder", "root": str(tmp_path), "label_map": {0: 0}}
    models = [{"name": "m", "format": "builtin", "architecture": "unet", "source": {**spec, "name": "src"}}]
    both = {"store": "s", "output": "o", "target": {**spec, "name": "t"}, "targets": [{**spec, "name": "t"}],
            "models": models}
    with pytest.raises(ConfigError, match="give exactly one of target"):
        parse_config(both, base_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="a target named 'matrix.csv'"):
        parse_config({**both, "target": None, "targets": [{**spec, "name": "matrix.csv"}]}, base_dir=str(tmp_path))
    config = parse_config({**both, "target": None, "targets": [{**spec, "name": "t"}, {**spec, "name": "u"}]},
                          base_dir=str(tmp_path))
    views = config.per_target()
    assert list(views) == ["t", "u"] and views["u"].output == str(tmp_path / "o" / "u")
    assert views["u"].target["name"] == "u" and views["u"].per_target() == {"u": views["u"]}
    with pytest.raises(ValueError, match="calibrate works on one target"):
        config.one_target("calibrate")
    single = parse_config({**both, "targets": None}, base_dir=str(tmp_path))
    assert single.per_target() == {"t": single}  # one target: its output as it is


def test_recall_counts_a_model_tied_with_the_kth_of_the_full_run():
    full = pd.DataFrame({"model": ["a", "b", "c", "d", "e"], "rank": [1, 2, 3, 4, 5], "group": [1, 1, 2, 2, 3],
                         "status": ["ok"] * 5})
    race = pd.DataFrame({"model": ["a", "d", "e"], "rank": [1, 2, 3], "status": ["ok"] * 3})
    assert recall(full, race, 3) == (2 / 3, 1 / 3)  # d shares the group of c, the full run's 3rd; e does not
    assert recall(full, race, 2) == (0.5, 0.5)  # b, the 2nd, is in group 1 with a: d is no tie of it
