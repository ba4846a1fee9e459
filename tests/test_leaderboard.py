"""Leaderboard: interval maths, ranking and groups, the five output files (local and S3), result records."""

from __future__ import annotations

import io
import json
import math
import re

import pandas as pd
import pytest

from otce_ray import fs
from otce_ray.leaderboard import (
    ModelResult,
    build_leaderboard,
    indistinguishable_groups,
    load_results,
    record_result,
    write_leaderboard,
    write_run_json,
)
from otce_ray.leaderboard.columns import FIXED
from otce_ray.scoring.summary import summarize_repeats
from otce_ray.leaderboard.results import RESULT_VERSION, result_uri


def test_interval_matches_a_hand_computation():
    summary = summarize_repeats([1.0, 2.0, 3.0, 4.0])
    # mean 2.5; std = sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3) = sqrt(5/3); sem = std / 2; t(0.975, 3) = 3.182446305
    std = math.sqrt(5 / 3)
    half = 3.182446305284263 * std / 2
    assert summary.mean == pytest.approx(2.5)
    assert summary.std == pytest.approx(std)
    assert summary.sem == pytest.approx(std / 2)
    assert (summary.ci_low, summary.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    assert summary.repeats == 4

    two = summarize_repeats([-1.0, -2.0])  # t(0.975, 1) = 12.7062: two repeats give a wide interval
    assert two.ci_high - two.mean == pytest.approx(12.706204736 * 0.5)


@pytest.mark.parametrize("scores", [[1.0], [], [1.0, float("nan")]])
def test_interval_needs_two_finite_scores(scores):
    with pytest.raises(ValueError, match="at least 2|finite"):
        summarize_repeats(scores)


def _ok(model, scores, **fields):
    return ModelResult(model=model, source=fields.pop("source", "alpha"), scores=scores, **fields)


def test_ranking_best_first_with_failed_models_last():
    board = build_leaderboard([
        ModelResult(model="zz_broken", source="beta", status="failed", error="checkpoint does not match"),
        _ok("low", [-2.0, -2.1, -1.9]),
        _ok("tie_b", [-1.0, -1.0, -1.0]),
        _ok("tie_a", [-1.0, -1.0, -1.0], architecture="unet", n_source=500, estimator="emd, N 500, K 3",
            extract_seconds=3.5),
        ModelResult(model="aa_broken", source="beta", status="failed", error="no such file"),
    ])
    assert tuple(board.columns) == FIXED
    assert list(board["model"]) == ["tie_a", "tie_b", "low", "aa_broken", "zz_broken"]
    assert list(board["rank"].astype("object")) == [1, 2, 3, pd.NA, pd.NA]
    assert list(board["status"]) == ["ok", "ok", "ok", "failed", "failed"]
    assert list(board["error"][3:]) == ["no such file", "checkpoint does not match"]
    assert board["otce"].iloc[2] == pytest.approx(-2.0)
    assert board["repeats"].iloc[0] == 3
    assert board.loc[0, ["architecture", "n_source", "estimator", "extract_seconds"]].tolist() == [
        "unet", 500, "emd, N 500, K 3", 3.5]
    assert board["otce"].iloc[3:].isna().all()


def test_groups_compare_with_the_group_leader_not_the_neighbour():
    # B overlaps A, C overlaps B but not A: C starts group 2, D overlaps C.
    assert indistinguishable_groups([9.0, 8.0, 7.0, 6.5], [11.0, 10.0, 8.5, 7.5]) == [1, 1, 2, 2]
    assert indistinguishable_groups([], []) == []


def test_board_groups_follow_the_intervals():
    board = build_leaderboard([
        _ok("a", [-1.00, -1.02, -0.98]),  # interval about [-1.05, -0.95]
        _ok("b", [-1.03, -1.05, -1.01]),  # overlaps a
        _ok("c", [-1.50, -1.52, -1.48]),  # far below
        _ok("d", [-3.0, -3.0, -3.0]),
    ])
    assert list(board["group"].astype(int)) == [1, 1, 2, 3]


def test_results_need_their_evidence():
    with pytest.raises(ValueError, match="at least 2 finite repeat scores"):
        _ok("m", [-1.0])
    with pytest.raises(ValueError, match="a failed result needs its error"):
        ModelResult(model="m", source="alpha", status="failed")
    with pytest.raises(ValueError, match="status 'done'"):
        ModelResult(model="m", source="alpha", status="done", scores=[-1.0, -1.0])
    with pytest.raises(ValueError, match="it becomes a folder name"):
        _ok("../escape", [-1.0, -1.0])
    with pytest.raises(ValueError, match=r"duplicates of \['m'\]"):
        build_leaderboard([_ok("m", [-1.0, -1.0]), _ok("m", [-2.0, -2.0])])


def _sample_results() -> list[ModelResult]:
    return [
        _ok("unet_alpha", [-0.91, -0.95, -0.93], architecture="unet", n_source=1000, n_target=1000,
            estimator="sinkhorn eps 0.1 x median, N 1000, K 3", max_marginal_error=1e-4, extract_seconds=2.0,
            score_seconds=1.5, fingerprint="abc123"),
        _ok("fcn_beta", [-1.40, -1.30, -1.35], source="beta", architecture="fcn8s", n_source=1000),
        _ok("psp_gamma", [-0.92, -0.99, -0.96], source="gamma",
            warnings=["baseline logme: cannot be computed, NaN (ValueError: <degenerate> | y)",
                      "repeat 2: sinkhorn did not converge (marginal error 2.0e-03 > 1e-03)"]),
        ModelResult(model="broken", source="beta", status="failed", error="model 'broken': <no such file> | x"),
    ]


PSP_WARNINGS = ("baseline logme: cannot be computed, NaN (ValueError: <degenerate> | y); "
                "repeat 2: sinkhorn did not converge (marginal error 2.0e-03 > 1e-03)")


def test_records_round_trip_and_rebuild_the_board(tmp_path):
    output = str(tmp_path / "out")
    assert load_results(output) == []  # nothing recorded yet: a fresh run
    results = _sample_results()
    for result in results:
        record_result(output, result)
    record_result(output, results[2])  # a rerun replaces, never duplicates

    loaded = load_results(output)
    assert loaded == sorted(results, key=lambda r: r.model)
    pd.testing.assert_frame_equal(build_leaderboard(loaded), build_leaderboard(results))


def test_malformed_records_name_their_file(tmp_path):
    output = str(tmp_path)
    record_result(output, _sample_results()[0])
    bad = tmp_path / "results" / "zz.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        load_results(output)
    bad.write_text(json.dumps({"model": "zz", "source": "alpha", "scores": [-1, -1], "colour": "red",
                               "version": RESULT_VERSION}))
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r": unknown fields \['colour'\]"):
        load_results(output)
    with pytest.raises(ValueError, match="warnings must be a list of strings"):
        _ok("m", [-1.0, -1.0], warnings="one string")


def test_records_of_another_version_are_never_half_read(tmp_path):
    """A record written before versions (or by another layout) is refused whole, naming its file and version, so
    its model is rescored; a current record with a null warnings list (edited by hand) reads as none."""
    old = {"model": "unet_alpha", "source": "alpha", "status": "ok", "scores": [-0.9, -0.8], "n_pixels": 100,
           "fingerprint": "abc", "metrics": {"leep": -1.5}}
    (tmp_path / "results").mkdir()
    path = tmp_path / "results" / "unet_alpha.json"
    path.write_text(json.dumps(old))
    damaged: list[str] = []
    assert load_results(str(tmp_path), damaged) == []
    assert damaged == [f"{path}: not a valid result record: {path}: written as record version none (before "
                       f"versions), this otce-ray reads version {RESULT_VERSION}"]
    path.write_text(json.dumps(old | {"version": RESULT_VERSION + 1}))
    with pytest.raises(ValueError, match=f"written as record version {RESULT_VERSION + 1}"):
        load_results(str(tmp_path))
    current = json.loads(_ok("unet_alpha", [-0.9, -0.8]).to_json())
    path.write_text(json.dumps(current | {"warnings": None}))
    assert load_results(str(tmp_path))[0].warnings == ()


def _assert_files_readable(output: str, board: pd.DataFrame) -> None:
    parquet = pd.read_parquet(io.BytesIO(fs.read_bytes(fs.join(output, "leaderboard.parquet"))))
    pd.testing.assert_frame_equal(parquet, board)

    csv = pd.read_csv(io.BytesIO(fs.read_bytes(fs.join(output, "leaderboard.csv"))))
    assert list(csv.columns) == list(board.columns)
    assert list(csv["model"]) == list(board["model"])
    assert csv["otce_ci_low"].tolist()[:3] == pytest.approx(board["otce_ci_low"].tolist()[:3])

    markdown = fs.read_bytes(fs.join(output, "leaderboard.md")).decode()
    table = [line for line in markdown.split("## Decisions")[0].splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(board)  # header, rule, one line per model
    assert table[2].startswith("| 1 | 1 | unet_alpha | unet | alpha | -0.9300 | [")
    # pipes escaped so the table stays a table; <...> escaped so a renderer does not drop it as HTML
    assert "model 'broken': &lt;no such file&gt; \\| x" in table[-1]
    notes = markdown.split("## Notes\n\n", 1)[1].splitlines()
    assert notes == ["- psp_gamma: " + PSP_WARNINGS.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")]
    assert list(csv["warnings"].fillna("")) == list(board["warnings"].fillna(""))

    page = fs.read_bytes(fs.join(output, "leaderboard.html")).decode()
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http://", "https://", "src=", "<link", "<script src", "url("):
        assert external not in page  # self-contained (its script and data are inline)
    assert "<svg" in page and page.count("<circle") == 3  # one point per scored model
    assert ">G1</text>" in page and ">G2</text>" in page  # groups marked on the plot
    assert page.count('class="band-0 group-start"') + page.count('class="band-1 group-start"') == 2
    assert '<tr class="failed">' in page and "&lt;no such file&gt;" in page  # error shown, escaped
    assert "<h2>Notes</h2>" in page and "<li><b>psp_gamma</b>: baseline logme: cannot be computed, NaN " \
        "(ValueError: &lt;degenerate&gt; | y); repeat 2:" in page


def test_all_files_written_and_readable_back(tmp_path):
    output = str(tmp_path / "out")
    board = build_leaderboard(_sample_results())
    assert list(board["group"].astype("object")) == [1, 1, 2, pd.NA]
    assert board.set_index("model")["warnings"].fillna("").to_dict() == {
        "unet_alpha": "", "psp_gamma": PSP_WARNINGS, "fcn_beta": "", "broken": ""}

    written = write_leaderboard(output, board)

    assert sorted(p.rsplit("/", 1)[1] for p in written) == sorted(
        ["leaderboard.csv", "leaderboard.parquet", "leaderboard.md", "leaderboard.html"])
    _assert_files_readable(output, board)


def test_run_json_records_config_versions_and_timings(tmp_path):
    uri = write_run_json(str(tmp_path), {"output": str(tmp_path), "otce": {"repeats": 3}}, {"total_seconds": 12.5})
    record = json.loads(fs.read_bytes(uri))
    assert record["config"] == {"output": str(tmp_path), "otce": {"repeats": 3}}
    assert record["timings"] == {"total_seconds": 12.5}
    assert set(record["versions"]) == {"otce-ray", "python", "ray", "torch", "pot"}
    assert record["versions"]["ray"].startswith("2.60")
    assert record["written_at"].endswith("+00:00")
    assert record["warnings"] == {}
    uri = write_run_json(str(tmp_path), {}, {}, {"a": ["repeat 1: did not converge"], "b": []})
    assert json.loads(fs.read_bytes(uri))["warnings"] == {"a": ["repeat 1: did not converge"]}


def test_everything_goes_to_s3(s3_bucket):
    output = f"s3://{s3_bucket}/runs/first"
    results = _sample_results()
    for result in results:
        record_result(output, result)
    assert result_uri(output, "broken") == f"{output}/results/broken.json"

    board = build_leaderboard(load_results(output))
    write_leaderboard(output, board)
    write_run_json(output, {"output": output}, {"total_seconds": 1.0})

    pd.testing.assert_frame_equal(board, build_leaderboard(results))
    _assert_files_readable(output, board)
    assert json.loads(fs.read_bytes(f"{output}/run.json"))["config"] == {"output": output}
