"""The job end to end on a local Ray: leaderboard content, a failing model recorded, resume without recomputing."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from otce_ray.config import parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.leaderboard import load_results
from otce_ray.pipeline import run
from otce_ray.scoring.baselines import BASELINES


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cities = write_benchmark(str(root), cities=3, images_per_city=3, size=(48, 96), seed=0)
    return str(root), cities


def _dataset(root: str, city: str) -> dict:
    return {"name": city, "format": "cityscapes", "root": root, "split": "train", "cities": [city]}


def _config(tmp_path, benchmark, models: list[dict], n_pixels: int = 200):
    root, cities = benchmark
    raw = {
        "store": str(tmp_path / "store"),
        "output": str(tmp_path / "out"),
        "target": _dataset(root, cities[2]),
        "models": models,
        "otce": {"n_pixels": n_pixels, "repeats": 3, "seed": 0},
        "extraction": {"pixels_per_image": 80, "batch_size": 2},
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
    assert (ok["repeats"] == 3).all() and (ok["n_pixels"] == 200).all()
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
    board = run(_config(tmp_path, benchmark, models, n_pixels=150), progress=False)
    assert list(board["n_pixels"]) == [150]


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
