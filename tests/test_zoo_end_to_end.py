"""A 12-model zoo in native formats (4 Hugging Face, 4 torchvision, 4 smp; tiny random-initialised configs saved as
each ecosystem saves them) scored end to end through the CLI from a `zoo scan` manifest."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from otce_ray.cli import main
from otce_ray.datasets.synth import write_benchmark
from zoo_cases import build_mixed_zoo, require


def test_a_mixed_native_zoo_is_scored_from_its_scan_manifest(ray_local, tmp_path, capsys):
    require("transformers", "torchvision", "segmentation_models_pytorch")
    data = tmp_path / "data"
    alpha, beta = write_benchmark(str(data), cities=2, images_per_city=2, size=(64, 128), seed=0)
    zoo = build_mixed_zoo(tmp_path / "zoo")
    source = f"{{name: {alpha}, format: cityscapes, root: {data}, split: train, cities: [{alpha}]}}"
    assert main(["zoo", "scan", str(zoo), "--out", str(tmp_path / "models.yaml"), "--source", source]) == 0
    assert f"12 models recognised under {zoo} (4 huggingface, 4 smp, 4 torchvision)" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "store": "store", "output": "out", "models_file": "models.yaml",
        "target": {"name": beta, "format": "cityscapes", "root": str(data), "split": "train", "cities": [beta]},
        "otce": {"n_pixels": 100, "repeats": 2}, "extraction": {"pixels_per_image": 60, "batch_size": 2},
        "baselines": {"metrics": []},
    }))

    assert main(["score", "--config", str(config), "--quiet"]) == 0

    out = tmp_path / "out"
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 12 and (board["status"] == "ok").all(), board[["model", "error"]].to_string()
    assert sorted(board["architecture"].unique()) == sorted([
        "BeitForSemanticSegmentation", "DeepLabV3Plus", "FPN", "Linknet", "SegformerForSemanticSegmentation",
        "Unet", "UperNetForSemanticSegmentation", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"])
    per_class = pd.read_csv(out / "per_class.csv")
    sums = per_class.groupby("model")["contribution"].sum()
    for row in board.itertuples():
        assert sums[row.model] == pytest.approx(-row.otce, abs=1e-6)
    page = (out / "leaderboard.html").read_text()
    assert page.count('<button class="model" type="button">') >= 12
    records = {json.loads(p.read_text())["model"] for p in (out / "results").iterdir()}
    assert records == set(board["model"])
