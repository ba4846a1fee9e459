"""The job end to end on a local Ray: leaderboard content, a failing model recorded, resume without recomputing."""

from __future__ import annotations

import importlib
import json
import math
import os

import pandas as pd
import pytest

from otce_ray.config import parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.leaderboard import load_results
from otce_ray.pipeline import run
from otce_ray.pipeline.preflight import OutputError
from otce_ray.scoring.baselines import BASELINES
from otce_ray.scoring.estimator import otce_score
from otce_ray.store import manifest_uri, read_pixels

run_module = importlib.import_module("otce_ray.pipeline.run")  # the package's ``run`` is the function
scoring_module = importlib.import_module("otce_ray.pipeline.scoring")


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cities = write_benchmark(str(root), cities=3, images_per_city=3, size=(48, 96), seed=0)
    return str(root), cities


def _dataset(root: str, city: str) -> dict:
    return {"name": city, "format": "cityscapes", "root": root, "split": "train", "cities": [city]}


def _config(tmp_path, benchmark, models: list[dict], n_pixels: int = 200, **sections):
    root, cities = benchmark
    raw = {
        "store": str(tmp_path / "store"),
        "output": str(tmp_path / "out"),
        "target": _dataset(root, cities[2]),
        "models": models,
        "otce": {"n_pixels": n_pixels, "repeats": 3, "seed": 0},
        "extraction": {"pixels_per_image": 80, "batch_size": 2},
        **sections,
    }
    return parse_config(raw, base_dir=str(tmp_path))


def _model(benchmark, name: str, arch: str, city_index: int, **extra) -> dict:
    root, cities = benchmark
    return {"name": name, "format": "builtin", "architecture": arch, "init_seed": 1,
            "source": _dataset(root, cities[city_index]), **extra}


def _record_stamps(output: str) -> dict[str, int]:
    folder = os.path.join(output, "results")
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in os.listdir(folder)}


def test_leaderboard_ranks_models_and_records_a_failing_one(ray_local, benchmark, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    config = _config(tmp_path, benchmark, [
        _model(benchmark, "unet_alpha", "unet", 0),
        _model(benchmark, "psp_beta", "pspnet", 1),
        _model(benchmark, "broken", "unet", 0, checkpoint=str(broken)),
    ])
    board = run(config, progress=False)

    assert list(board["model"])[-1] == "broken"
    ok = board[board["status"] == "ok"]
    assert set(ok["model"]) == {"unet_alpha", "psp_beta"}
    assert list(ok["rank"]) == [1, 2]
    assert ok["otce"].is_monotonic_decreasing
    assert (ok["otce"] <= 0).all()  # -H(Yt|Ys) is never positive
    assert ((ok["otce_ci_low"] <= ok["otce"]) & (ok["otce"] <= ok["otce_ci_high"])).all()
    assert (ok["repeats"] == 3).all() and (ok["n_source"] == 200).all() and (ok["n_target"] == 200).all()
    assert (ok["max_marginal_error"] <= 1e-3).all()
    assert dict(zip(ok["model"], ok["source"])) == {"unet_alpha": "alpha", "psp_beta": "beta"}
    assert ok[list(BASELINES)].notna().all().all()  # every baseline metric as a column, computed for ok models
    failed = board[board["model"] == "broken"].iloc[0]
    assert failed["status"] == "failed" and "broken.pt" in failed["error"] and "broken" in failed["error"]

    out = config.output
    for name in ("leaderboard.csv", "leaderboard.parquet", "leaderboard.md", "leaderboard.html", "run.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    written = pd.read_parquet(os.path.join(out, "leaderboard.parquet"))
    assert list(written["model"]) == list(board["model"])
    record = json.loads(open(os.path.join(out, "run.json")).read())
    assert record["config"]["otce"]["n_pixels"] == 200
    per_class = pd.read_csv(os.path.join(out, "per_class.csv"))  # why each model ranks where it does
    sums = per_class.groupby("model")["contribution"].sum()
    assert sums.to_dict() == pytest.approx((-ok.set_index("model")["otce"]).to_dict(), abs=1e-6)
    assert {"road", "sky"} <= set(per_class["class_name"])  # the benchmark's Cityscapes ids have names


def test_rerun_resumes_without_recomputing_finished_models(ray_local, benchmark, tmp_path):
    first = _config(tmp_path, benchmark, [_model(benchmark, "unet_alpha", "unet", 0)])
    run(first, progress=False)
    stamps = _record_stamps(first.output)
    store_files = sorted(os.path.join(d, f) for d, _, fs in os.walk(first.store) for f in fs)
    store_stamps = {path: os.stat(path).st_mtime_ns for path in store_files}

    # A second model joins (as after a crash, or a zoo that grew): only it is extracted and scored.
    grown = _config(tmp_path, benchmark, [_model(benchmark, "unet_alpha", "unet", 0),
                                          _model(benchmark, "fcn_beta", "fcn8s", 1)])
    board = run(grown, progress=False)
    assert set(board["model"]) == {"unet_alpha", "fcn_beta"} and (board["status"] == "ok").all()
    assert _record_stamps(grown.output)["unet_alpha.json"] == stamps["unet_alpha.json"]
    assert all(os.stat(path).st_mtime_ns == stamp for path, stamp in store_stamps.items())

    # A lost record (killed before the write) is recomputed from the stores, identically: scores are seeded.
    before = {r.model: r.scores for r in load_results(grown.output)}
    os.remove(os.path.join(grown.output, "results", "fcn_beta.json"))
    run(grown, progress=False)
    after = {r.model: r.scores for r in load_results(grown.output)}
    assert after == before


def test_changed_settings_invalidate_recorded_results(ray_local, benchmark, tmp_path):
    models = [_model(benchmark, "unet_alpha", "unet", 0)]
    run(_config(tmp_path, benchmark, models, n_pixels=200), progress=False)
    with pytest.raises(OutputError, match=r"holds the results of a run with other settings \(otce differ"):
        run(_config(tmp_path, benchmark, models, n_pixels=150), progress=False)  # refused before any work
    board = run(_config(tmp_path, benchmark, models, n_pixels=150), progress=False, overwrite=True)
    assert list(board["n_source"]) == [150] and board["estimator"][0].endswith("N 150, K 3")


def test_a_checkpoint_retrained_at_the_same_path_is_scored_again(ray_local, benchmark, tmp_path):
    import torch

    from otce_ray.models import build_module

    checkpoint = tmp_path / "unet.pt"

    def save_weights(seed: int) -> None:
        spec = {"name": "w", "format": "builtin", "architecture": "unet", "init_seed": seed}
        torch.save(build_module(spec).state_dict(), checkpoint)

    models = [_model(benchmark, "unet_alpha", "unet", 0, checkpoint=str(checkpoint))]
    save_weights(1)
    first = run(_config(tmp_path, benchmark, models), progress=False)
    save_weights(2)
    os.utime(checkpoint, ns=(1, 1))  # a different stamp even on filesystems with coarse mtimes
    second = run(_config(tmp_path, benchmark, models), progress=False)
    assert first["otce"].iloc[0] != second["otce"].iloc[0]


def test_a_model_whose_files_cannot_be_reached_fails_alone(ray_local, benchmark, tmp_path, monkeypatch):
    models = [_model(benchmark, "unet_alpha", "unet", 0),
              _model(benchmark, "remote", "unet", 0, checkpoint="s3://no-such-bucket-otce/w.pt")]
    config = _config(tmp_path, benchmark, models)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    board = run(config, progress=False)
    statuses = dict(zip(board["model"], board["status"]))
    assert statuses == {"unet_alpha": "ok", "remote": "failed"}
    assert "remote" in board.set_index("model").loc["remote", "error"]


def _count_loads(monkeypatch) -> dict[str, list[str]]:
    """Spy on the driver's loader tasks: model -> the datasets whose store a loader task was started for."""
    loads: dict[str, list[str]] = {}
    original = scoring_module.ScoringJobs._load_pixels

    class Counted:
        def __init__(self, task):
            self.task = task

        def remote(self, store, dataset, model, *args, **kwargs):
            loads.setdefault(model, []).append(dataset)
            return self.task.remote(store, dataset, model, *args, **kwargs)

    def counted(jobs, model):
        if not isinstance(jobs._load, Counted):
            jobs._load = Counted(jobs._load)
        return original(jobs, model)

    monkeypatch.setattr(scoring_module.ScoringJobs, "_load_pixels", counted)
    return loads


def _library_scores(config, model: str, source: str) -> list[float]:
    """The model's repeat scores as the library call gives them on every row of its two stores."""
    xs = read_pixels(config.store, source, model, with_logits=False)
    xt = read_pixels(config.store, config.target["name"], model, with_logits=False)
    return [record.score for record in otce_score(xs.features, xs.labels, xt.features, xt.labels, config.otce,
                                                  device="cpu").repeats]


def test_each_store_is_read_once_per_model_and_scores_as_before(ray_local, benchmark, tmp_path, monkeypatch):
    _, cities = benchmark
    loads = _count_loads(monkeypatch)
    config = _config(tmp_path, benchmark, [_model(benchmark, "unet_alpha", "unet", 0),
                                           _model(benchmark, "unet_gamma", "unet", 2)],  # trained on the target
                     baselines={"metrics": ["hscore", "leep"], "n_pixels": 150})
    board = run(config, progress=False)
    assert (board["status"] == "ok").all()
    # one loader task per store, for all three repeats and the baselines; a model trained on the target has one
    assert loads == {"unet_alpha": [cities[0], cities[2]], "unet_gamma": [cities[2]]}
    for result in load_results(config.output):
        assert list(result.scores) == pytest.approx(_library_scores(config, result.model, result.source), rel=1e-5)
        assert result.warnings == ()  # converged, every metric computed


def test_a_baseline_that_cannot_be_computed_says_why(ray_local, benchmark, tmp_path):
    import torch

    features_only = tmp_path / "features_only.pt"  # no logits: LEEP and NCE cannot be computed
    torch.jit.script(torch.nn.Conv2d(3, 8, 3, padding=1)).save(str(features_only))
    root, cities = benchmark
    config = _config(tmp_path, benchmark, [{"name": "conv", "format": "torchscript", "path": str(features_only),
                                            "source": _dataset(root, cities[0])}],
                     baselines={"metrics": ["leep", "nce", "hscore"], "n_pixels": 150})
    board = run(config, progress=False)
    row = board.iloc[0]
    assert row["status"] == "ok" and math.isnan(row["leep"]) and math.isnan(row["nce"])
    assert math.isfinite(row["hscore"])
    reason = "cannot be computed, NaN (ValueError: logits: the source model's logits were not stored"
    [result] = load_results(config.output)
    assert [note.split(":")[0] for note in result.warnings] == ["baseline leep", "baseline nce"]
    assert all(reason in note for note in result.warnings)
    assert reason in row["warnings"]
    out = config.output
    assert json.loads(open(os.path.join(out, "run.json")).read())["warnings"] == {"conv": list(result.warnings)}
    notes = open(os.path.join(out, "leaderboard.md")).read().split("## Notes", 1)[1]
    assert "- conv: baseline leep: " + reason in notes
    assert reason in pd.read_csv(os.path.join(out, "leaderboard.csv"))["warnings"].iloc[0]


def test_a_store_lost_before_scoring_fails_its_model_alone(ray_local, benchmark, tmp_path, monkeypatch):
    _, cities = benchmark
    config = _config(tmp_path, benchmark, [_model(benchmark, "unet_alpha", "unet", 0),
                                           _model(benchmark, "fcn_beta", "fcn8s", 1)])
    run(config, progress=False)
    first = {r.model: r.scores for r in load_results(config.output)}
    for name in first:
        os.remove(os.path.join(config.output, "results", f"{name}.json"))
    original = scoring_module.ScoringJobs._load_pixels

    def lose_store(jobs, model):  # gone after the plan found it complete, just before its loader reads it
        if model.name == "fcn_beta":
            os.remove(manifest_uri(config.store, cities[1], "fcn_beta", model.stores[cities[1]].key))
        return original(jobs, model)

    monkeypatch.setattr(scoring_module.ScoringJobs, "_load_pixels", lose_store)
    board = run(config, progress=False).set_index("model")
    assert board.loc["unet_alpha", "status"] == "ok"
    assert [r.scores for r in load_results(config.output) if r.model == "unet_alpha"] == [first["unet_alpha"]]
    error = board.loc["fcn_beta", "error"]
    assert board.loc["fcn_beta", "status"] == "failed"
    assert "model 'fcn_beta'" in error
    assert "model 'fcn_beta': reading its pixels failed: StoreError" in error
    assert f"no complete pixel store for model 'fcn_beta' on dataset '{cities[1]}'" in error
    assert os.path.join(config.store, cities[1], "fcn_beta") in error


def test_a_model_whose_checkpoint_cannot_be_fetched_fails_naming_it(ray_local, benchmark, tmp_path, s3_bucket):
    import boto3
    import torch

    from otce_ray.models import build_module

    local = tmp_path / "unet.pt"
    torch.save(build_module({"name": "w", "format": "builtin", "architecture": "unet"}).state_dict(), local)
    boto3.client("s3").upload_file(str(local), s3_bucket, "zoo/unet.pt")
    missing = f"s3://{s3_bucket}/zoo/unet-v2.pt"
    config = _config(tmp_path, benchmark, [_model(benchmark, "on_s3", "unet", 0, checkpoint=f"s3://{s3_bucket}/zoo/unet.pt"),
                                           _model(benchmark, "not_there", "unet", 0, checkpoint=missing)])
    board = run(config, progress=False).set_index("model")
    assert board.loc["on_s3", "status"] == "ok"
    assert board.loc["not_there", "status"] == "failed"
    assert board.loc["not_there", "error"] == f"model 'not_there': checkpoint not found: {missing}"
