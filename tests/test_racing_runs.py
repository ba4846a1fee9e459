"""Racing and many targets end to end on a local Ray: stores a race grew are reused by a full run, shard for shard,
and its finalists' records are the full run's; two targets share each source store; resume per (model, target)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from otce_ray.bench.racing import zoo
from otce_ray.config import parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.leaderboard import load_results
from otce_ray.pipeline import run
from otce_ray.pipeline.plan import make_plan
from otce_ray.scoring.racing import Stage, order_of
from otce_ray.store.layout import part_name
from otce_ray.zoo import city_spec, zoo_models
from test_plan import LAPTOP

SHARDS = 8


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_benchmark(str(root), cities=6, images_per_city=16, size=(32, 64), seed=0)
    return str(root)


def _zoo(root: str, names: list[str]) -> list[dict]:
    """Shipped models (trained on the benchmark's cities)."""
    return [entry for entry in zoo_models(root) if entry["name"] in names]


def _raw(root: str, tmp_path, output: str, models: list[dict], **sections) -> dict:
    return {"store": str(tmp_path / "store"), "output": str(tmp_path / output), "target": city_spec("gamma", root),
            "models": models, "otce": {"n_pixels": 120, "repeats": 4}, "baselines": {"metrics": []},
            "extraction": {"pixels_per_image": 40, "batch_size": 4, "num_shards": SHARDS}, **sections}


def _parts(store) -> dict[str, int]:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, names in os.walk(store)
            for f in names if f.endswith(".parquet")}


def test_a_full_run_reuses_the_stores_a_race_grew_and_scores_its_finalists_identically(ray_local, benchmark,
                                                                                        tmp_path):
    names = {"unet_epsilon_n0", "fcn8s_epsilon_n0", "pspnet_alpha_n0", "segnet_beta_n8", "unet_zeta_n8",
             "fcn8s_beta_n8"}  # three trained models and three far below them (their weights drowned in noise)
    models = [entry for entry in zoo(str(tmp_path / "zoo"), benchmark, 0, (0, 8)) if entry["name"] in names]
    racing = {"top_k": 2, "stages": [{"images": 0.5, "pixels": 0.5, "repeats": 4}]}
    race_config = parse_config(_raw(benchmark, tmp_path, "race", models, racing=racing), base_dir=str(tmp_path))
    race = run(race_config, progress=False)
    stopped = list(race.loc[race["status"] == "stopped", "model"])
    finished = list(race.loc[race["status"] == "ok", "model"])
    assert stopped and len(finished) >= 2 and len(stopped) + len(finished) == 6
    assert (race.loc[race["status"] == "stopped", "race_stage"] == 1).all()
    assert race["rank"].notna().sum() == len(finished)  # a stopped model is never ranked
    assert race.index[race["status"] == "stopped"].min() > race.index[race["status"] == "ok"].max()
    row = race[race["model"] == stopped[0]].iloc[0]
    assert "stopped by racing at stage 1 of 2" in row["warnings"] and row["race_bound"] < row["otce"] + 1
    record = json.loads((tmp_path / "race" / "run.json").read_text())["racing"]
    assert record["stages"][0]["racers"] == 6 and set(record["stages"][0]["stopped"]) == set(stopped)
    assert set(record["final"]) == set(finished)
    for name in stopped:  # a stopped model's stores hold the stage's 4 shards, and are not marked complete
        for dataset in (next(m for m in models if m["name"] == name)["source"]["name"], "gamma"):
            [key] = os.listdir(tmp_path / "store" / dataset / name)
            shards = Stage(**racing["stages"][0]).shards(order_of(dataset, name, "gamma"), SHARDS, 0)
            assert sorted(os.listdir(tmp_path / "store" / dataset / name / key)) == sorted(map(part_name, shards))
    grown = _parts(tmp_path / "store")

    full_config = parse_config(_raw(benchmark, tmp_path, "full", models), base_dir=str(tmp_path))
    full = run(full_config, progress=False)
    assert (full["status"] == "ok").all()
    extraction = json.loads((tmp_path / "full" / "run.json").read_text())["extraction"]
    for name in finished:  # extracted whole by the race's final stage: nothing left to extract
        assert (extraction[name]["shards_written"], extraction[name]["shards_reused"]) == (0, 2 * SHARDS)
    for name in stopped:  # only the shards the stage did not read, on each side
        assert (extraction[name]["shards_written"], extraction[name]["shards_reused"]) == (SHARDS, SHARDS)
    assert {path: stamp for path, stamp in _parts(tmp_path / "store").items() if path in grown} == grown
    race_results = {r.model: r for r in load_results(race_config.output)}
    for result in load_results(full_config.output):
        if result.model in finished:  # the same record a run without racing writes, bar the timings
            assert result.scores == race_results[result.model].scores
            assert result.per_class == race_results[result.model].per_class
            assert result.fingerprint == race_results[result.model].fingerprint


def test_two_targets_extract_each_source_once_and_resume_per_model_and_target(ray_local, benchmark, tmp_path):
    models = _zoo(benchmark, ["fcn8s_alpha", "fcn8s_beta"])
    raw = _raw(benchmark, tmp_path, "out", models)
    raw.pop("target")
    raw["targets"] = [city_spec("gamma", benchmark), city_spec("delta", benchmark)]
    config = parse_config(raw, base_dir=str(tmp_path))
    board = run(config, progress=False)
    assert list(board.columns[:2]) == ["target", "rank"] and len(board) == 4 and (board["status"] == "ok").all()
    record = json.loads((tmp_path / "out" / "gamma" / "run.json").read_text())
    for name in ("fcn8s_alpha", "fcn8s_beta"):  # source, gamma and delta: each store written once
        assert (record["extraction"][name]["shards_written"], record["extraction"][name]["shards_reused"]) == (
            3 * SHARDS, 0)
    assert record["config"]["target"]["name"] == "gamma" and record["config"]["output"].endswith("gamma")
    for target in ("gamma", "delta"):
        assert {"leaderboard.csv", "leaderboard.html", "run.json", "results"} <= set(
            os.listdir(tmp_path / "out" / target))
    single = parse_config(_raw(benchmark, tmp_path, "single", models), base_dir=str(tmp_path))
    fingerprints = {model.name: model.fingerprint for model in make_plan(single, LAPTOP, reuse=False).models}
    assert {r.model: r.fingerprint for r in load_results(str(tmp_path / "out" / "gamma"))} == fingerprints

    matrix = pd.read_csv(tmp_path / "out" / "matrix.csv")
    assert list(matrix.columns) == ["model", "architecture", "source", "gamma", "delta"]
    for target in ("gamma", "delta"):
        scores = board[board["target"] == target].set_index("model")["otce"]
        assert matrix.set_index("model")[target].to_dict() == pytest.approx(scores.to_dict())
    page = (tmp_path / "out" / "matrix.html").read_text()
    best = [board[(board["target"] == target) & (board["rank"] == 1)]["model"].iloc[0] for target in ("gamma",
                                                                                                       "delta")]
    assert '<tr class="best"><td class="name">best model</td><td></td><td></td>' + "".join(
        f"<td>{name}</td>" for name in best) + "</tr>" in page

    os.remove(tmp_path / "out" / "delta" / "results" / "fcn8s_beta.json")  # lost for one target only
    run(config, progress=False)
    delta = json.loads((tmp_path / "out" / "delta" / "run.json").read_text())
    gamma = json.loads((tmp_path / "out" / "gamma" / "run.json").read_text())
    assert (delta["timings"]["models_run"], delta["timings"]["models_reused"]) == (1, 1)
    assert (gamma["timings"]["models_run"], gamma["timings"]["models_reused"]) == (0, 2)
    assert delta["extraction"]["fcn8s_beta"]["shards_written"] == 0
