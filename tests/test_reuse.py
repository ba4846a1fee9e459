"""Reuse you can trust: a recorded result is reused exactly when nothing that determines it changed.

Each change below is made to a zoo whose three results are all recorded, and the plan must rescore exactly the models
it affects: data (a rewritten mask, added images), code (a Python entrypoint's module, a checkpoint's content), and
the engine (a default, its version). One scenario also runs end to end on Ray.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from otce_ray.config import parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.leaderboard import ModelResult, record_result
from otce_ray.models import build_module
from otce_ray.pipeline import plan as plan_module
from otce_ray.scoring import settings as settings_module
from otce_ray.pipeline import run
from otce_ray.pipeline.plan import make_plan
from test_plan import LAPTOP

MODULE = '''import torch


def build(channels: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, channels, 3, padding=1)
'''


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """Three models on two sources and a target: a built-in with a checkpoint, a Python entrypoint, a built-in."""
    root = tmp_path / "data"
    cities = write_benchmark(str(root), cities=3, images_per_city=3, size=(32, 64), seed=0)
    code = tmp_path / "code"
    code.mkdir()
    (code / "reuse_zoo.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(code))
    checkpoint = tmp_path / "unet.pt"
    torch.save(build_module({"name": "w", "format": "builtin", "architecture": "unet"}).state_dict(), checkpoint)

    def dataset(city):
        return {"name": city, "format": "cityscapes", "root": str(root), "split": "train", "cities": [city]}

    raw = {"store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": dataset(cities[2]),
           "models": [
               {"name": "tuned", "format": "builtin", "architecture": "unet", "checkpoint": str(checkpoint),
                "source": dataset(cities[0])},
               {"name": "custom", "format": "python", "entrypoint": "reuse_zoo:build", "source": dataset(cities[1])},
               {"name": "plain", "format": "builtin", "architecture": "fcn8s", "source": dataset(cities[1])},
           ],
           "otce": {"n_pixels": 100, "repeats": 2}, "baselines": {"metrics": []}}
    return raw, root, cities, tmp_path


def _record_all(raw, tmp_path) -> None:
    """Record an ok result for every model under the fingerprint the plan gives it now."""
    config = parse_config(raw, base_dir=str(tmp_path))
    for model in make_plan(config, LAPTOP, reuse=False).models:
        record_result(config.output, ModelResult(model=model.name, source=model.spec["source"]["name"],
                                                 scores=(-0.5, -0.4), fingerprint=model.fingerprint))


def _actions(raw, tmp_path) -> dict[str, str]:
    return {model.name: model.action for model in make_plan(parse_config(raw, base_dir=str(tmp_path)), LAPTOP).models}


def _mask(root, city: str, index: int = 0):
    return sorted((root / "gtFine" / "train" / city).iterdir())[index]


def test_nothing_changed_reuses_every_result(zoo):
    raw, _, _, tmp_path = zoo
    _record_all(raw, tmp_path)
    assert _actions(raw, tmp_path) == {"tuned": "reuse", "custom": "reuse", "plain": "reuse"}


def test_data_changes_rescore_exactly_the_models_that_read_them(zoo):
    raw, root, cities, tmp_path = zoo
    _record_all(raw, tmp_path)
    mask = _mask(root, cities[1])
    labels = np.array(Image.open(mask))
    labels[:4] = 7  # a relabelled strip: same size, new content
    Image.fromarray(labels).save(mask)
    assert _actions(raw, tmp_path) == {"tuned": "reuse", "custom": "run", "plain": "run"}  # both read beta

    _record_all(raw, tmp_path)
    for suffix, folder in (("_leftImg8bit.png", "leftImg8bit"), ("_gtFine_labelIds.png", "gtFine")):
        source = sorted((root / folder / "train" / cities[2]).iterdir())[0]
        shutil.copy(source, str(source).replace(source.name.split(suffix)[0], f"{cities[2]}_000099_000019"))
    assert set(_actions(raw, tmp_path).values()) == {"run"}  # a new target image: every model reads the target


def test_code_changes_rescore_the_model_whose_code_changed(zoo):
    raw, _, _, tmp_path = zoo
    _record_all(raw, tmp_path)
    (tmp_path / "code" / "reuse_zoo.py").write_text(MODULE.replace("manual_seed(0)", "manual_seed(1)"))
    assert _actions(raw, tmp_path) == {"tuned": "reuse", "custom": "run", "plain": "reuse"}


def test_a_checkpoint_is_known_by_its_content_not_its_stamp(zoo):
    raw, _, _, tmp_path = zoo
    _record_all(raw, tmp_path)
    checkpoint = tmp_path / "unet.pt"
    stat = os.stat(checkpoint)
    os.utime(checkpoint, ns=(stat.st_atime_ns + 10**9, stat.st_mtime_ns + 10**9))  # touched, same bytes
    assert _actions(raw, tmp_path)["tuned"] == "reuse"
    torch.save(build_module({"name": "w", "format": "builtin", "architecture": "unet", "init_seed": 5}).state_dict(),
               checkpoint)
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # retrained at the same path, old stamp back
    assert _actions(raw, tmp_path) == {"tuned": "run", "custom": "reuse", "plain": "reuse"}


def test_engine_defaults_and_version_are_part_of_the_key(zoo, monkeypatch):
    raw, _, _, tmp_path = zoo
    _record_all(raw, tmp_path)
    explicit = {**raw, "otce": {**raw["otce"], "epsilon": settings_module.DEFAULT_EPSILON}}
    assert set(_actions(explicit, tmp_path).values()) == {"reuse"}  # null and the default it resolves to agree
    default = settings_module.DEFAULT_EPSILON
    monkeypatch.setattr(settings_module, "DEFAULT_EPSILON", default / 2)
    assert set(_actions(raw, tmp_path).values()) == {"run"}  # a new default rescores what used it...
    assert set(_actions(explicit, tmp_path).values()) == {"reuse"}  # ...and only that
    monkeypatch.setattr(settings_module, "DEFAULT_EPSILON", default)
    monkeypatch.setattr(settings_module, "ENGINE_VERSION", settings_module.ENGINE_VERSION + 1)
    assert set(_actions(raw, tmp_path).values()) == {"run"}  # a solver fix rescores everything
    monkeypatch.setattr(plan_module, "EXTRACTION_VERSION", plan_module.EXTRACTION_VERSION + 1)
    assert set(_actions(raw, tmp_path).values()) == {"run"}


def test_rewritten_and_added_target_files_are_rescored_end_to_end(ray_local, zoo):
    raw, root, cities, tmp_path = zoo
    raw = {**raw, "models": [raw["models"][0], raw["models"][2]]}  # workers cannot import the test's module
    config = parse_config(raw, base_dir=str(tmp_path))
    first = run(config, progress=False)
    assert (first["status"] == "ok").all()
    mask = _mask(root, cities[2], 1)
    labels = np.array(Image.open(mask))
    Image.fromarray(np.where(labels == labels[0, 0], 7, labels).astype(labels.dtype)).save(mask)
    second = run(config, progress=False)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["timings"]["models_reused"] == 0 and record["timings"]["models_run"] == 2
    assert (second["status"] == "ok").all()
    target_stores = os.listdir(tmp_path / "store" / cities[2] / "tuned")
    assert len(target_stores) == 2  # the old data's store stays, the new data got a store of its own
    run(config, progress=False)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["timings"]["models_reused"] == 2
