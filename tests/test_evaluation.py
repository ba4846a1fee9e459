"""Evaluation: measures against hand computations and scipy, bootstrap intervals, the join, report files, CLI."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from otce_ray import fs
from otce_ray.cli import main
from otce_ray.evaluation import (
    COLUMNS,
    bootstrap,
    degenerate_reason,
    evaluate,
    join_ground_truth,
    kendall,
    pearson,
    read_table,
    spearman,
    top1_relative,
    weighted_kendall,
    write_report,
)
from otce_ray.evaluation.report import scatter_name

CORRELATIONS = (pearson, spearman, kendall, weighted_kendall)


def test_measures_match_a_hand_computation():
    x, y = [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]
    # centred x = (-1, 0, 1), y = (-1, 1, 0): r = 1 / sqrt(2 * 2); the ranks equal the values.
    assert pearson(x, y) == pytest.approx(0.5)
    assert spearman(x, y) == pytest.approx(0.5)
    # pairs (1,2) and (1,3) concordant, (2,3) discordant.
    assert kendall(x, y) == pytest.approx(1 / 3)
    # Ranked by x, weights 1/(r+1) are (1/3, 1/2, 1): (5/6 + 4/3 - 3/2) / (5/6 + 4/3 + 3/2) = 2/11; by y the
    # weights are (1/3, 1, 1/2) and give (4/3 + 5/6 - 3/2) / (4/3 + 5/6 + 3/2) = 2/11 too.
    assert weighted_kendall(x, y) == pytest.approx(2 / 11)


def test_top1_relative_definitions():
    scores = [1.0, 2.0, 3.0]
    assert top1_relative(scores, [0.5, 0.8, 0.6]) == pytest.approx(0.6 / 0.8)
    # log-likelihood: the ratio of exp(ll), i.e. exp(ll_picked - ll_best).
    assert top1_relative(scores, [-1.0, -0.5, -0.7], log_scale=True) == pytest.approx(math.exp(-0.2))
    # tied top scores: the mean of the tied models' performance (a random pick among them, in expectation).
    assert top1_relative([3.0, 3.0, 1.0], [0.4, 0.8, 0.6]) == pytest.approx(0.6 / 0.8)
    # a ratio of negative numbers means nothing: NaN unless the measure is declared a log measure.
    assert math.isnan(top1_relative(scores, [-1.0, -0.5, -0.7]))


@pytest.mark.parametrize("seed", range(6))
def test_correlations_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 5 + 4 * seed
    x = rng.integers(0, 4, n) + (rng.random(n) if seed % 2 else 0.0)  # even seeds: many ties in the metric
    y = rng.integers(0, 5, n).astype(float)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)
    assert weighted_kendall(x, y) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)


def test_two_dimensional_input_is_one_measure_per_row():
    rng = np.random.default_rng(3)
    x, y = rng.random((4, 9)), rng.random((4, 9))
    x[2] = 1.0  # a constant row is NaN, the others are unaffected
    for measure in (*CORRELATIONS, top1_relative):
        rows = measure(x, y)
        assert rows.shape == (4,)
        assert math.isnan(rows[2])
        for i in (0, 1, 3):
            assert rows[i] == pytest.approx(measure(x[i], y[i]))


def test_a_perfect_metric_scores_one_and_a_reversed_one_minus_one():
    performance = np.array([-0.9, -0.2, -0.5, -1.4, -0.35, -0.7])
    perfect = 3.0 * performance + 1.0
    for measure in CORRELATIONS:
        assert measure(perfect, performance) == pytest.approx(1.0)
        assert measure(-perfect, performance) == pytest.approx(-1.0)
    assert spearman(np.exp(performance), performance) == pytest.approx(1.0)  # monotone is enough for ranks
    assert top1_relative(perfect, performance, log_scale=True) == pytest.approx(1.0)
    assert top1_relative(-perfect, performance, log_scale=True) == pytest.approx(math.exp(-1.4 + 0.2))
    assert bootstrap(kendall, perfect, performance) == bootstrap(kendall, perfect, performance)
    estimate = bootstrap(kendall, perfect, performance)
    assert (estimate.value, estimate.low, estimate.high) == pytest.approx((1.0, 1.0, 1.0))


def _noisy(n: int = 15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    performance = rng.random(n)
    return performance + rng.normal(0.0, 0.25, n), performance


def test_bootstrap_intervals_contain_the_estimate_and_are_reproducible():
    scores, performance = _noisy()
    for measure in (*CORRELATIONS, top1_relative):
        estimate = bootstrap(measure, scores, performance, seed=7)
        assert estimate.value == pytest.approx(measure(scores, performance))
        assert estimate.low <= estimate.value <= estimate.high
        assert estimate.low < estimate.high
        assert bootstrap(measure, scores, performance, seed=7) == estimate
    wider = bootstrap(pearson, scores, performance, seed=7, confidence=0.99)
    narrow = bootstrap(pearson, scores, performance, seed=7)
    assert wider.low < narrow.low and wider.high > narrow.high
    assert bootstrap(pearson, scores, performance, seed=8) != narrow


@pytest.mark.parametrize("scores, performance, reason", [
    ([1.0, 2.0], [0.1, 0.2], "fewer than 3 models (2)"),
    ([], [], "fewer than 3 models (0)"),
    ([2.0, 2.0, 2.0, 2.0], [0.1, 0.2, 0.3, 0.4], "the metric is constant across models"),
    ([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], "the ground truth is constant across models"),
    ([1.0, float("nan"), 3.0], [0.1, 0.2, 0.3], "non-finite values"),
])
def test_degenerate_inputs_give_nan_with_a_reason(scores, performance, reason):
    assert degenerate_reason(scores, performance) == reason
    for measure in (*CORRELATIONS, top1_relative):
        assert math.isnan(measure(scores, performance))
        estimate = bootstrap(measure, scores, performance)
        assert all(math.isnan(v) for v in (estimate.value, estimate.low, estimate.high))


def test_mismatched_lengths_are_a_usage_error():
    with pytest.raises(ValueError, match="one shape"):
        pearson([1.0, 2.0, 3.0], [1.0, 2.0])


def _tables(n: int = 8) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A leaderboard (OTCE close to the truth, LEEP reversed, a failed model) and its ground truth."""
    rng = np.random.default_rng(1)
    models = [f"model_{i}" for i in range(n)]
    log_likelihood = -rng.uniform(0.3, 1.5, n)
    board = pd.DataFrame({
        "rank": range(1, n + 2), "model": [*models, "broken"], "architecture": "unet", "source": "alpha",
        "otce": [*(log_likelihood + rng.normal(0.0, 0.05, n)), np.nan],
        "otce_std": 0.01, "leep": [*(-log_likelihood), np.nan], "solver": "sinkhorn",
        "status": ["ok"] * n + ["failed"], "error": [""] * n + ["no such file"],
    })
    truth = pd.DataFrame({"model": models, "miou": rng.uniform(0.2, 0.6, n),
                          "pixel_accuracy": rng.uniform(0.5, 0.9, n), "log_likelihood": log_likelihood,
                          "seconds": 12.0})
    return board, truth


def test_evaluate_one_row_per_metric_on_the_ok_models():
    board, truth = _tables()
    evaluation = evaluate(board, truth, resamples=200)
    assert tuple(evaluation.columns) == COLUMNS
    assert list(evaluation["metric"]) == ["otce", "leep"]  # otce_std is numeric but not a metric
    assert list(evaluation["n_models"]) == [8, 8]
    otce, leep = evaluation.iloc[0], evaluation.iloc[1]
    assert otce["pearson"] > 0.9 and otce["pearson_low"] <= otce["pearson"] <= otce["pearson_high"]
    assert leep["kendall"] == pytest.approx(-1.0) and leep["weighted_kendall"] == pytest.approx(-1.0)
    best, worst = truth["log_likelihood"].max(), truth["log_likelihood"].min()
    assert leep["top1_relative"] == pytest.approx(math.exp(worst - best))
    assert (evaluation["note"] == "").all()
    # seeded, and a metric's interval does not depend on the other metrics evaluated with it.
    alone = evaluate(board, truth, metrics=["leep"], resamples=200)
    pd.testing.assert_frame_equal(alone, evaluation.iloc[[1]].reset_index(drop=True))
    on_miou = evaluate(board, truth, target_measure="miou", metrics=["otce"], resamples=200)
    assert on_miou.loc[0, "measure"] == "miou"
    assert on_miou.loc[0, "pearson"] == pytest.approx(pearson(board["otce"][:8], truth["miou"]))


def test_evaluate_notes_what_is_undefined_instead_of_failing():
    board, truth = _tables(4)
    board.loc[0, "otce"] = np.nan  # one baseline value missing: 3 models left
    board["leep"] = [1.0, 1.0, 1.0, 1.0, np.nan]
    truth["shifted"] = truth["log_likelihood"]  # negative, and not declared a log measure
    evaluation = evaluate(board, truth, resamples=50).set_index("metric")
    assert evaluation.loc["otce", "n_models"] == 3
    assert evaluation.loc["otce", "note"] == "1 model(s) without a value left out"
    assert not math.isnan(evaluation.loc["otce", "pearson"])
    assert evaluation.loc["leep", "note"] == "the metric is constant across models"
    assert evaluation.loc["leep", ["pearson", "kendall", "top1_relative"]].isna().all()
    shifted = evaluate(board, truth, target_measure="shifted", metrics=["otce"], resamples=50)
    assert "non-negative" in shifted.loc[0, "note"]
    assert math.isnan(shifted.loc[0, "top1_relative"]) and not math.isnan(shifted.loc[0, "kendall"])


@pytest.mark.parametrize("change, message", [
    (lambda board, truth: (board, truth[truth["model"] != "model_3"]), r"no row for model\(s\) \['model_3'\]"),
    (lambda board, truth: (board, truth.drop(columns="log_likelihood")), r"ground truth lacks column\(s\) \['log_l"),
    (lambda board, truth: (board.drop(columns="status"), truth), r"leaderboard lacks column\(s\) \['status'\]"),
    (lambda board, truth: (board.drop(columns=["otce", "leep"]), truth), "no numeric metric column"),
    (lambda board, truth: (board, pd.concat([truth, truth.iloc[:1]])), r"ground truth has more .*\['model_0'\]"),
    (lambda board, truth: (board, truth.astype({"log_likelihood": str})), "is not numeric"),
])
def test_join_errors_name_the_problem(change, message):
    board, truth = change(*_tables())
    with pytest.raises(ValueError, match=message):
        evaluate(board, truth)


def test_explicit_metrics_must_be_numeric_columns():
    board, truth = _tables()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['logme'\]"):
        join_ground_truth(board, truth, metrics=["otce", "logme"])
    with pytest.raises(ValueError, match=r"\['solver'\] are not numeric"):
        join_ground_truth(board, truth, metrics=["solver"])
    merged = join_ground_truth(board, truth, metrics=["leep"])
    assert list(merged.columns) == ["model", "leep", "log_likelihood"]
    assert "broken" not in set(merged["model"])  # failed models take no part, even without ground truth


def _assert_report(out: str, metrics: list[str]) -> str:
    """Check the written files; returns the HTML."""
    written = read_table(fs.join(out, "evaluation.csv"))
    assert list(written["metric"]) == metrics
    for metric in metrics:
        with Image.open(io.BytesIO(fs.read_bytes(fs.join(out, scatter_name(metric))))) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 100
    page = fs.read_bytes(fs.join(out, "evaluation.html")).decode()
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(links) == len(metrics) and all(link.startswith("data:image/png;base64,") for link in links)
    assert "http://" not in page and "https://" not in page
    return page


def test_write_report_files(tmp_path):
    board, truth = _tables()
    evaluation = evaluate(board, truth, resamples=100)
    uris = write_report(str(tmp_path), evaluation, join_ground_truth(board, truth))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["evaluation.csv", "evaluation.html", "scatter_otce.png", "scatter_leep.png"])
    assert len(uris) == 4
    page = _assert_report(str(tmp_path), ["otce", "leep"])
    assert "weighted Kendall" in page and "<td>otce</td>" in page
    assert scatter_name("a/b c") == "scatter_a_b_c.png"


def test_cli_end_to_end_on_csv_and_parquet(tmp_path, capsys):
    board, truth = _tables()
    board.to_parquet(tmp_path / "leaderboard.parquet", index=False)
    truth.to_csv(tmp_path / "ground_truth.csv", index=False)
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--leaderboard", str(tmp_path / "leaderboard.parquet"),
                 "--ground-truth", str(tmp_path / "ground_truth.csv"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| otce | 8 |" in printed and "| leep | 8 | -" in printed and "log_likelihood" in printed
    _assert_report(str(out), ["otce", "leep"])

    assert main(["evaluate", "--leaderboard", str(tmp_path / "leaderboard.parquet"), "--ground-truth",
                 str(tmp_path / "ground_truth.csv"), "--out", str(out), "--measure", "miou"]) == 0
    assert read_table(str(out / "evaluation.csv"))["measure"].tolist() == ["miou", "miou"]

    truth.iloc[1:].to_csv(tmp_path / "partial.csv", index=False)
    assert main(["evaluate", "--leaderboard", str(tmp_path / "leaderboard.parquet"),
                 "--ground-truth", str(tmp_path / "partial.csv"), "--out", str(out)]) == 2
    assert "no row for model(s) ['model_0']" in capsys.readouterr().err


def test_cli_reads_and_writes_s3(s3_bucket, capsys):
    board, truth = _tables()
    prefix = f"s3://{s3_bucket}/run"
    fs.write_bytes_atomic(f"{prefix}/leaderboard.csv", board.to_csv(index=False).encode())
    fs.write_bytes_atomic(f"{prefix}/ground_truth.csv", truth.to_csv(index=False).encode())
    assert main(["evaluate", "--leaderboard", f"{prefix}/leaderboard.csv", "--ground-truth",
                 f"{prefix}/ground_truth.csv", "--out", f"{prefix}/evaluation", "--metrics", "otce"]) == 0
    _assert_report(f"{prefix}/evaluation", ["otce"])
    assert f"evaluation written to {prefix}/evaluation" in capsys.readouterr().out


def test_read_table_rejects_other_formats(tmp_path):
    (tmp_path / "board.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        read_table(str(tmp_path / "board.json"))


# Across targets: Fisher-z averaging, ground-truth reliability, the block bootstrap and paired differences.
from otce_ray.evaluation.across_targets import (  # noqa: E402
    Block, block_draws, fisher_z_mean, paired_difference, replicate_reliability, resampled_mean_correlation,
    weighted_pearson,
)


def test_fisher_z_mean_averages_on_the_z_scale_and_skips_nan():
    assert fisher_z_mean([0.5, 0.9]) == pytest.approx(math.tanh((math.atanh(0.5) + math.atanh(0.9)) / 2))
    assert fisher_z_mean([0.5, 0.9]) > (0.5 + 0.9) / 2  # a plain mean is pulled towards 0
    assert fisher_z_mean([0.3, float("nan")]) == pytest.approx(0.3)
    assert math.isnan(fisher_z_mean([float("nan")]))
    assert fisher_z_mean([1.0, 1.0]) == pytest.approx(1.0)


def test_reliability_of_exact_replicates_is_one_and_of_pure_noise_about_zero():
    truth = np.linspace(-0.4, -0.2, 12)
    exact = replicate_reliability(np.stack([truth] * 3))
    assert exact.icc == pytest.approx(1.0) and exact.ceiling == pytest.approx(1.0) and exact.replicates == 3
    noise = replicate_reliability(np.random.default_rng(0).normal(size=(3, 200)))
    assert abs(noise.icc) < 0.2 and abs(noise.pairwise_pearson) < 0.15 and noise.ceiling < 0.45


def test_reliability_matches_the_variance_components():
    # Model effects with variance 1, seed noise with variance 0.25: ICC of the mean of 4 = 1 / (1 + 0.25 / 4).
    rng = np.random.default_rng(1)
    values = rng.normal(size=4000) + rng.normal(scale=0.5, size=(4, 4000))
    result = replicate_reliability(values)
    assert result.icc == pytest.approx(1 / (1 + 0.25 / 4), abs=0.01)
    assert result.pairwise_pearson == pytest.approx(1 / 1.25, abs=0.02)
    assert result.ceiling == pytest.approx(math.sqrt(result.icc))
    with pytest.raises(ValueError, match=">= 2 replicates"):
        replicate_reliability(values[:1])


def test_weighted_pearson_is_the_pearson_of_the_resample_it_describes():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=6), rng.normal(size=6)
    counts = np.array([[2, 0, 1, 1, 0, 2], [1, 1, 1, 1, 1, 1], [6, 0, 0, 0, 0, 0], [3, 3, 0, 0, 0, 0]])
    r = weighted_pearson(x, y, counts)
    repeated = np.repeat(np.arange(6), counts[0])
    assert r[0] == pytest.approx(pearson(x[repeated], y[repeated]))
    assert r[1] == pytest.approx(pearson(x, y))
    assert np.isnan(r[2]) and np.isnan(r[3])  # fewer than 3 distinct models


def test_block_bootstrap_shares_each_draw_across_a_blocks_targets_and_pairs_metrics():
    rng = np.random.default_rng(3)
    models = tuple(f"m{i}" for i in range(8))
    blocks = [Block(models, {"t1": np.arange(0, 7), "t2": np.arange(1, 8)})]
    truth = {(0, "t1"): rng.normal(size=7), (0, "t2"): rng.normal(size=7)}
    good = {key: value + 0.3 * rng.normal(size=7) for key, value in truth.items()}
    poor = {key: rng.normal(size=7) for key in truth}
    draws = block_draws(blocks, 500, seed=0)
    assert draws[0].shape == (500, 8) and (draws[0].sum(axis=1) == 8).all()
    assert (draws[0] == block_draws(blocks, 500, seed=0)[0]).all()
    a = resampled_mean_correlation(blocks, good, truth, draws)
    b = resampled_mean_correlation(blocks, poor, truth, draws)
    point = lambda x: fisher_z_mean([pearson(x[k], truth[k]) for k in truth])  # noqa: E731
    test = paired_difference(a, b, point(good), point(poor))
    assert test.difference == pytest.approx(point(good) - point(poor)) and test.low < test.difference < test.high
    assert test.low > 0 and test.p_value < 0.05
    same = paired_difference(a, a, point(good), point(good))
    assert same.difference == 0 and same.p_value == 1.0
