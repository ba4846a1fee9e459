"""The consensus ordering: mean normalised rank over the metrics a model has, defined once for the leaderboard and
the validation."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from otce_ray.leaderboard import consensus as consensus_module
from otce_ray.leaderboard.consensus import CONSENSUS_METRICS, consensus


def test_the_docstring_example_runs():
    failures, tried = doctest.testmod(consensus_module)
    assert tried >= 2 and failures == 0


def test_a_model_every_metric_ranks_first_scores_one_and_scales_do_not_matter():
    table = pd.DataFrame({"otce": [-0.5, -1.0, -2.0], "hscore_shrinkage": [300.0, 20.0, 1.0],
                          "logme": [1.2, 1.1, 0.3], "nleep": [-0.1, -0.2, -0.9]}, index=["a", "b", "c"])
    assert consensus(table).tolist() == [1.0, 0.5, 0.0]
    scaled = table.assign(hscore_shrinkage=table.hscore_shrinkage * 1e6)
    pd.testing.assert_series_equal(consensus(scaled), consensus(table))


def test_missing_values_and_metrics_are_skipped_ties_share_their_rank():
    table = pd.DataFrame({"otce": [-1.0, -1.0, -2.0], "logme": [np.nan, np.nan, np.nan], "other": [9, 9, 9]})
    assert consensus(table).tolist() == [0.75, 0.75, 0.0]  # logme has no value anywhere; "other" is no member
    assert consensus(table[["other"]]).isna().all()
    assert set(CONSENSUS_METRICS) == {"otce", "hscore_shrinkage", "logme", "nleep"}


@pytest.mark.parametrize("values", [[np.inf, -1.0], [np.nan, -1.0]])
def test_non_finite_scores_do_not_rank(values):
    ranked = consensus(pd.DataFrame({"otce": values}))
    assert np.isnan(ranked.iloc[0]) and ranked.iloc[1] == 0.5  # alone among finite values: the middle
