"""Damage stays local and shared stores stay correct: skipped files are reported, a part with an unreadable footer is
written again, a damaged result record is scored again, and two runs at once on one store (local or S3, other or the
same settings) each get what they would get alone."""

from __future__ import annotations

import json
import os
import threading

import pandas as pd
import pytest
from test_extraction_nets import write_folder_dataset

from otce_ray.config import parse_config
from otce_ray.datasets import open_dataset
from otce_ray.extraction import ExtractionRequest, run_shard
from otce_ray.models import ModelSpec
from otce_ray.pipeline import run
from otce_ray.store import part_uri


def _config(tmp_path, datasets, store, output, models: int = 2, **extraction):
    models = [{"name": f"m{index}", "format": "builtin", "architecture": arch, "init_seed": index,
               "source": datasets[0]} for index, arch in enumerate(("unet", "fcn8s")[:models])]
    raw = {"store": str(store), "output": str(output), "target": datasets[1], "models": models,
           "otce": {"n_pixels": 150, "repeats": 2}, "baselines": {"metrics": ["hscore"], "n_pixels": 100},
           "extraction": {"pixels_per_image": 60, "batch_size": 2, **extraction}}
    return parse_config(raw, base_dir=str(tmp_path))


@pytest.fixture
def datasets(tmp_path):
    return [write_folder_dataset(str(tmp_path / "src"), count=6, size=(32, 48), seed=1),
            write_folder_dataset(str(tmp_path / "tgt"), count=5, size=(32, 48), seed=2)]


def test_skipped_files_are_listed_in_run_json_and_counted_on_the_row(ray_local, tmp_path, datasets):
    target = {**datasets[1], "on_error": "skip"}
    (tmp_path / "tgt" / "images" / "img003.png").write_bytes(b"not a png")
    board = run(_config(tmp_path, [datasets[0], target], tmp_path / "store", tmp_path / "out"), progress=False)
    assert (board["status"] == "ok").all()
    for warnings in board["warnings"]:
        assert "dataset tgt: 1 file(s) skipped (on_error: skip), listed in run.json" in warnings
    skipped = json.loads((tmp_path / "out" / "run.json").read_text())["skipped_files"]
    assert list(skipped) == ["tgt"] and len(skipped["tgt"]) == 1
    assert skipped["tgt"][0].startswith(str(tmp_path / "tgt" / "images" / "img003.png") + ": ")


def test_a_part_whose_footer_cannot_be_read_is_written_again(tmp_path, datasets):
    spec = ModelSpec.from_dict({"name": "u", "format": "builtin", "architecture": "unet"})
    request = ExtractionRequest(model=spec, dataset="src", dataset_fingerprint="fp", store=str(tmp_path / "store"),
                                pixels_per_image=20, seed=0, num_shards=2)
    view = open_dataset(datasets[0]).shard(0, 2)
    first = run_shard(request, 0, view, 2)
    uri = part_uri(request.store, "src", "u", request.key, 0)
    data = open(uri, "rb").read()
    open(uri, "wb").write(data[:-20])  # the footer is gone
    again = run_shard(request, 0, view, 2)
    assert (first.status, again.status) == ("written", "written") and again.rows == first.rows
    assert open(uri, "rb").read() == data


@pytest.mark.parametrize("where, pixels", [("local", (60, 40)), ("s3", (60, 40)), ("s3", (60, 60))],
                         ids=["local, other settings", "s3, other settings", "s3, same settings"])
def test_two_runs_at_once_on_one_store_each_get_their_solo_result(ray_local, tmp_path, datasets, where, pixels,
                                                                  request):
    store = tmp_path / "shared" if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/shared"
    configs = [_config(tmp_path, datasets, store, tmp_path / f"out{index}", models=1, pixels_per_image=count)
               for index, count in enumerate(pixels)]
    boards: dict[int, pd.DataFrame] = {}
    threads = [threading.Thread(target=lambda i=i, c=c: boards.__setitem__(i, run(c, progress=False)))
               for i, c in enumerate(configs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, config in enumerate(configs):
        alone = run(_config(tmp_path, datasets, tmp_path / f"alone{index}", tmp_path / f"alone-out{index}", models=1,
                            pixels_per_image=config.extraction.pixels_per_image), progress=False)
        columns = ["model", "otce", "hscore", "status"]
        pd.testing.assert_frame_equal(boards[index][columns], alone[columns])
    if where == "local":  # each setting's stores in a folder of their own, side by side
        assert len(os.listdir(tmp_path / "shared" / "src" / "m0")) == 2


def test_a_damaged_result_record_is_reported_and_its_model_scored_again(ray_local, tmp_path, datasets, caplog):
    config = _config(tmp_path, datasets, tmp_path / "store", tmp_path / "out")
    first = run(config, progress=False)
    record = tmp_path / "out" / "results" / "m1.json"
    record.write_text(record.read_text()[:40])  # cut short, as by a crash mid-write on a filesystem without rename
    again = run(config, progress=False)
    pd.testing.assert_frame_equal(again[["model", "otce", "status"]], first[["model", "otce", "status"]])
    plan = json.loads((tmp_path / "out" / "run.json").read_text())["plan"]
    assert plan["models_reused"] == 1 and plan["models_to_run"] == 1
    assert len(plan["damaged_records"]) == 1 and plan["damaged_records"][0].startswith(f"{record}: not a valid")
    assert "m1.json: not a valid result record" in caplog.text and "its model is scored again" in caplog.text
    assert json.loads(record.read_text())["model"] == "m1"  # written whole again
