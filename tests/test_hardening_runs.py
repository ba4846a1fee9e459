"""Issue 24's probes that need a run on a local Ray: the page `otce-ray score` writes has its drill-down, a model that
hangs is cancelled while the others finish, and a store found damaged is set aside and extracted again."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
import torch
import yaml
from test_extraction_nets import write_folder_dataset

from otce_ray.cli import main
from otce_ray.config import parse_config
from otce_ray.leaderboard import load_results
from otce_ray.pipeline import run
from otce_ray.scoring.settings import DEFAULT_EPSILON


@pytest.fixture
def datasets(tmp_path):
    return [write_folder_dataset(str(tmp_path / "src"), count=4, size=(32, 48), seed=1),
            write_folder_dataset(str(tmp_path / "tgt"), count=4, size=(32, 48), seed=2)]


def _raw(tmp_path, datasets, models: list[dict], **sections) -> dict:
    return {"store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": datasets[1],
            "models": models, "otce": {"n_pixels": 120, "repeats": 2}, "baselines": {"metrics": []},
            "extraction": {"pixels_per_image": 40, "batch_size": 2}, **sections}


def _builtin(name: str, arch: str, source: dict) -> dict:
    return {"name": name, "format": "builtin", "architecture": arch, "init_seed": 1, "source": source}


def test_the_page_otce_ray_score_writes_has_the_drill_down(ray_local, tmp_path, datasets):
    raw = _raw(tmp_path, datasets, [_builtin("unet_a", "unet", datasets[0]), _builtin("fcn_a", "fcn8s", datasets[0])])
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    assert main(["score", "--config", str(tmp_path / "run.yaml"), "--quiet"]) == 0
    page = (tmp_path / "out" / "leaderboard.html").read_text()
    details = json.loads(re.search(r'<script type="application/json" id="otce-details">(.*?)</script>', page,
                                   re.S).group(1))
    assert sorted(details) == ["fcn_a", "unet_a"] and all(details[name]["classes"] for name in details)
    assert "<h2>Best source per target class</h2>" in page
    assert f"Estimator: sinkhorn eps {DEFAULT_EPSILON:g} x median, z-scored, N 120, K 2." in page


class _Hang(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = 0
        while step >= 0:  # never returns
            step += 1
        return x


def test_a_hung_model_is_cancelled_and_the_others_finish(ray_local, tmp_path, datasets):
    torch.jit.script(_Hang()).save(str(tmp_path / "hang.pt"))
    hung = {"name": "hung", "format": "torchscript", "path": str(tmp_path / "hang.pt"), "source": datasets[0]}
    models = [hung, _builtin("unet_a", "unet", datasets[0]), _builtin("fcn_a", "fcn8s", datasets[0])]
    config = parse_config(_raw(tmp_path, datasets, models, cluster={"stuck_task_seconds": 25}),
                          base_dir=str(tmp_path))
    started = time.monotonic()
    board = run(config, progress=False).set_index("model")
    assert time.monotonic() - started < 240
    assert board.loc["hung", "status"] == "failed"
    assert "no result after 25 s (cluster.stuck_task_seconds): cancelled" in board.loc["hung", "error"]
    assert (board.loc[["unet_a", "fcn_a"], "status"] == "ok").all()
    stuck = json.loads((tmp_path / "out" / "run.json").read_text())["dispatch"]["stuck"]
    assert len(stuck) == 2 and all("extraction of model 'hung'" in entry for entry in stuck)  # its two stores


def test_a_store_found_damaged_is_set_aside_and_extracted_again(ray_local, tmp_path, datasets):
    config = parse_config(_raw(tmp_path, datasets, [_builtin("unet_a", "unet", datasets[0])]),
                          base_dir=str(tmp_path))
    run(config, progress=False)
    [first] = load_results(config.output)
    folder = tmp_path / "store" / "tgt" / "unet_a"
    [key] = os.listdir(folder)
    os.remove(folder / key / "part-00000.parquet")  # lost after its manifest was written
    os.remove(tmp_path / "out" / "results" / "unet_a.json")  # so the model is scored again
    board = run(config, progress=False)
    assert board.loc[0, "status"] == "ok"
    assert load_results(config.output)[0].scores == first.scores  # extracted again, identically
    damaged = json.loads((folder / key / "_damaged.json").read_text())
    assert "part-00000.parquet are missing" in damaged["reason"]
