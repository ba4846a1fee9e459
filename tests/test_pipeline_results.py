"""From repeat records to a model's result: repeats that missed the OT tolerance never enter the score silently, and
the per-class breakdown and label map explain the score."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from otce_ray.config import parse_config
from otce_ray.datasets import class_names
from otce_ray.extraction import ExtractionSummary
from otce_ray.leaderboard import ModelResult, breakdown, build_leaderboard, per_class_table
from otce_ray.pipeline.plan import Resources
from otce_ray.pipeline.scoring import ScoredModel, ScoringJobs
from otce_ray.scoring.estimator import otce_score
from otce_ray.scoring.repeat import RepeatRecord

RECORD = RepeatRecord(repeat=0, score=-0.5, conditional_entropy=0.5, transport_cost=1.0, iterations=40,
                      marginal_error=2e-4, converged=True, epsilon=0.1, cost_scale=2.0, n_source=100, n_target=100,
                      seconds=0.1, tolerance=1e-3, source_classes=(0, 1), target_classes=(0, 1),
                      joint=((0.4, 0.1), (0.1, 0.4)))


def _finish(tmp_path, records: list[RepeatRecord]):
    source = {"name": "alpha", "format": "folder", "root": str(tmp_path), "label_map": {0: 0}}
    config = parse_config({"store": str(tmp_path / "s"), "output": str(tmp_path / "o"), "target": {**source, "name": "t"},
                           "models": [{"name": "m", "format": "builtin", "architecture": "unet", "source": source}],
                           "otce": {"repeats": len(records), "n_pixels": 100}, "baselines": {"metrics": []}},
                          base_dir=str(tmp_path))
    jobs = ScoringJobs(config, Resources(0.0, 1.0, 0.0, "cpu"), cluster=None, on_result=lambda *_: None)
    model = ScoredModel(config.models[0], "fp", "t", config.output,
                        stores={"alpha": ExtractionSummary("m", "alpha", "ok")})
    model.records = {r.repeat: r for r in records}
    jobs.finish(model)
    [(_, result)] = jobs._records
    return result


def test_a_repeat_that_missed_the_tolerance_is_dropped_and_the_row_says_so(tmp_path):
    missed = dataclasses.replace(RECORD, repeat=1, score=-0.1, marginal_error=3.6e-2, converged=False,
                                 remedy="float64 on CPU")
    result = _finish(tmp_path, [RECORD, missed, dataclasses.replace(RECORD, repeat=2, score=-0.7)])
    assert result.status == "ok" and result.scores == (-0.5, -0.7) and result.repeats_dropped == 1
    assert result.max_marginal_error == 2e-4  # of the repeats the score is made of
    assert result.warnings == ("repeat 1: sinkhorn missed its tolerance even after float64 on CPU (marginal error "
                               "3.6e-02 > 1e-03): dropped from the score",)
    row = build_leaderboard([result]).iloc[0]
    assert (row["repeats"], row["repeats_dropped"]) == (2, 1) and "dropped from the score" in row["warnings"]


def test_a_model_with_fewer_than_two_good_repeats_fails_instead_of_scoring(tmp_path):
    missed = [dataclasses.replace(RECORD, repeat=index, converged=False, marginal_error=1e-2) for index in (1, 2)]
    result = _finish(tmp_path, [RECORD, *missed])
    assert result.status == "failed" and result.scores == ()
    assert result.error == ("model 'm': only 1 of 3 repeats met the OT tolerance (at least 2 are needed for a score "
                            "and its interval); see its warnings")
    assert len(result.warnings) == 2


def test_per_class_contributions_add_up_to_minus_otce_and_the_label_map_is_conditional():
    rng = np.random.default_rng(0)
    labels_s, labels_t = rng.integers(0, 4, 600), rng.integers(0, 3, 500)
    features_s = rng.normal(size=(600, 8)) + labels_s[:, None]
    features_t = rng.normal(size=(500, 8)) + np.array([0, 1, 3])[labels_t][:, None]
    labels_t[labels_t == 2] = 7  # target class ids need not be contiguous
    result = otce_score(features_s, labels_s, features_t, labels_t, n_pixels=300, repeats=4, device="cpu")
    records = result.repeats
    per_class, label_map = breakdown(records)
    assert set(per_class) == {"0", "1", "7"} and label_map["target_classes"] == [0, 1, 7]
    assert sum(entry["contribution"] for entry in per_class.values()) == pytest.approx(-result.score, abs=1e-9)
    assert sum(entry["share"] for entry in per_class.values()) == pytest.approx(1.0)
    rows = np.array(label_map["p_target_given_source"])
    assert rows.shape == (4, 3) and np.allclose(rows.sum(axis=1), 1.0)
    ok = ModelResult(model="m", source="s", scores=tuple(r.score for r in records), per_class=per_class,
                     label_map=label_map)
    table = per_class_table([ok], class_names("cityscapes"))
    assert list(table.columns) == ["model", "class_id", "class_name", "target_share", "contribution"]
    assert list(table["class_name"]) == ["road", "sidewalk", "traffic sign"]
    assert table["contribution"].sum() == pytest.approx(-np.mean(ok.scores), abs=1e-6)
