"""p_best / p_top_k against cases with a known answer, the agreement flags and reference lines on hand-made boards,
and the decision summary in every output."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from otce_ray.leaderboard import ModelResult, build_leaderboard
from otce_ray.leaderboard.decisions import (
    RECOMMENDATION, RECOMMENDED, DecisionSettings, agreement, rank_correlations, summarise, top_probabilities,
)
from otce_ray.leaderboard.render import leaderboard_html, leaderboard_markdown


def test_far_apart_disjoint_repeats_give_one_and_zero():
    scores = {"best": [-1.0, -1.1, -0.9, -1.05], "second": [-3.0, -3.2, -2.9, -3.1], "third": [-6.0, -6.5, -5.8, -6.1]}
    p = top_probabilities(scores, k=2, resamples=2000, seed=3)
    assert p["p_best"].to_dict() == {"best": 1.0, "second": 0.0, "third": 0.0}
    assert p["p_top_k"].to_dict() == {"best": 1.0, "second": 1.0, "third": 0.0}


def test_identical_models_share_their_probability_exactly():
    repeats = [-1.0, -1.3, -0.8, -1.1, -0.9]
    p = top_probabilities({"a": repeats, "b": list(repeats), "far": [-9.0, -9.1, -8.9, -9.2, -9.0]}, k=2)
    assert p.loc["a", "p_best"] == p.loc["b", "p_best"] == 0.5  # they tie in every resample
    assert p.loc["a", "p_top_k"] == p.loc["b", "p_top_k"] == 1.0 and p.loc["far", "p_top_k"] == 0.0


def test_overlapping_models_split_and_the_probabilities_add_up():
    rng = np.random.default_rng(0)
    scores = {f"m{i}": rng.normal(-1 - 0.05 * i, 0.1, size=6) for i in range(6)}
    p = top_probabilities(scores, k=3, resamples=3000, seed=1)
    assert p["p_best"].sum() == pytest.approx(1.0) and p["p_top_k"].sum() == pytest.approx(3.0)
    assert 0 < p.loc["m0", "p_best"] < 1 and p["p_best"].idxmax() == max(scores, key=lambda m: np.mean(scores[m]))
    shuffled = dict(reversed(list(scores.items())))
    pd.testing.assert_frame_equal(top_probabilities(shuffled, k=3, resamples=3000, seed=1), p)  # order-free


def test_point_masses_tie_and_k_is_capped_at_the_models():
    p = top_probabilities({"a": [-1.0, -1.0], "b": [-1.0, -1.0, -1.0], "c": [-2.0, -2.0]}, k=10)
    assert p["p_best"].to_dict() == {"a": 0.5, "b": 0.5, "c": 0.0}  # a tie on one value, split evenly
    assert (p["p_top_k"] == 1.0).all()  # k = 10 capped at the 3 models
    assert top_probabilities({}, k=5).empty


def _board(**extra) -> pd.DataFrame:
    results = [
        ModelResult("a", "s", scores=(-1.0, -1.1, -0.9), metrics={"logme": 0.1, "nleep": -0.9}, params=100),
        ModelResult("b", "s", scores=(-2.0, -2.1, -1.9), metrics={"logme": 0.9, "nleep": -0.1}, params=900),
        ModelResult("c", "s", scores=(-3.0, -3.1, -2.9), metrics={"logme": 0.5, "nleep": -0.5}, params=500),
        ModelResult("d", "s", scores=(-4.0, -4.0), metrics={"logme": 0.2, "nleep": -0.8}, params=200,
                    identical_repeats=True),
        ModelResult("x", "s", status="failed", error="no such file"),
    ]
    return build_leaderboard(results, priors={"a": 0.8, "b": 0.7, "c": 0.3, "d": 0.1}, **extra)


def test_the_board_has_every_decision_column():
    board = _board(decisions=DecisionSettings(top_k=2, resamples=500))
    rows = board.set_index("model")
    assert list(rows["p_best"][:4]) == [1.0, 0.0, 0.0, 0.0] and list(rows["p_top_k"][:4]) == [1.0, 1.0, 0.0, 0.0]
    assert list(rows["params"][:4]) == [100, 900, 500, 200] and list(rows["prior"][:4]) == [0.8, 0.7, 0.3, 0.1]
    # consensus: mean normalised rank over otce, logme, nleep (otce_ray.leaderboard.consensus)
    assert rows.loc["b", "consensus"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    failed = rows.loc["x"]
    assert pd.isna(failed["p_best"]) and pd.isna(failed["p_top_k"]) and pd.isna(failed["consensus"])
    assert pd.isna(failed["params"]) and pd.isna(failed["prior"])


def test_flags_when_otce_best_is_outside_another_top_k():
    board = _board()
    rows, flags = agreement(board, 2)
    by = {row["metric"]: row for row in rows}
    assert set(by) == {"otce", "logme", "nleep", "consensus"} and by["otce"]["top_k_overlap"] == 1.0
    assert by["logme"]["top_k_overlap"] == 0.5 and not by["logme"]["otce_top1_in_top_k"] and by["logme"]["top1"] == "b"
    assert flags[0] == "OTCE's best model a is not in logme's top 2 (its best: b)" and len(flags) == 3
    assert agreement(board, 4)[1] == []  # every top 4 holds a


def test_reference_lines_are_rank_correlations_over_the_scored_models():
    lines = {(line["metric"], line["reference"]): line for line in rank_correlations(_board(), ["otce", "logme"])}
    assert lines[("otce", "prior")]["kendall"] == pytest.approx(1.0) and lines[("otce", "prior")]["n_models"] == 4
    assert lines[("logme", "params")]["kendall"] == pytest.approx(1.0)  # logme says "bigger is better" here
    assert lines[("otce", "params")]["kendall"] == pytest.approx(0.0)  # a > b > c > d against b > c > d > a
    assert lines[("otce", "params")]["spearman"] == pytest.approx(-0.2)
    constant = rank_correlations(_board().assign(prior=0.5), ["otce"], ["prior"])[0]
    assert math.isnan(constant["kendall"]) and "constant" in constant["note"]


def test_the_summary_in_run_json_markdown_and_the_page():
    board = _board()
    summary = summarise(board, DecisionSettings(top_k=3))
    record = json.loads(json.dumps(summary.to_dict(), allow_nan=False))  # strict JSON: NaN written as null
    assert record["recommended"] == RECOMMENDED and record["top_k"] == 3 and record["point_masses"] == ["d"]
    assert record["chances"][0] == {"model": "a", "p_best": 1.0, "p_top_k": 1.0} and len(record["chances"]) == 4
    assert record["consensus_of"] == ["otce", "logme", "nleep"]
    assert "Repeat noise only" in record["method"] and len(record["flags"]) == 2  # logme, nleep; not consensus

    markdown = leaderboard_markdown(board, decisions=summarise(board, DecisionSettings(top_k=2)))
    table, decisions = markdown.split("## Decisions")
    header = next(line for line in table.splitlines() if line.startswith("| rank"))
    assert "P(best)" in header and "consensus" in header and "params" not in header  # params, prior: files, page
    assert RECOMMENDATION in decisions and "- OTCE's best model a is not in logme's top 2" in decisions
    assert "| otce | 1.00 | yes | a | 0.00 | 1.00 |" in decisions  # Kendall vs params, vs prior

    page = leaderboard_html(board, decisions=summarise(board, DecisionSettings(top_k=2)), calibration=True)
    headers = page.split('<table id="board"')[1].split("</thead>")[0]
    assert headers.index("95% interval") < headers.index("P(best)") < headers.index("P(top k)")
    assert "params" in headers and "prior" in headers and "consensus" in headers
    assert page.index('<section id="decisions">') < page.index('<table id="board"')
    assert '<ul class="flags"><li>OTCE&#x27;s best model a is not in logme&#x27;s top' in page
    assert '<a href="calibration.html">' in page and '<a href="calibration.html">' not in leaderboard_html(board)
