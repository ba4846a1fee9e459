"""The shipped demo zoo and the demo's run config: valid entries, weights-only checkpoints that fit their nets, a
zoo that spans architectures and both families around a target that is no model's source."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import torch

from otce_ray.cli import build_parser
from otce_ray.config import parse_config
from otce_ray.datasets.synth import DOMAINS, FAMILIES
from otce_ray.datasets import open_dataset
from otce_ray.demo import demo_table, noise_ceiling_line
from otce_ray.finetune import split_target
from otce_ray.leaderboard import ModelResult, build_leaderboard
from otce_ray.models import build_architecture
from otce_ray.zoo import GROUND_TRUTH, ZOO_DIR, city_spec, read_zoo, zoo_models
from otce_ray.zoo.run_config import SELECTION_SEED, TRAIN_IMAGES, demo_config, ensure_benchmark
from otce_ray.zoo.truth import FINETUNE_SEEDS, SETTINGS, stale_models

ZOO = read_zoo()
SOURCES = {entry["source"]["cities"][0] for entry in ZOO["models"]}


def test_zoo_entries_are_run_config_models_with_absolute_paths(tmp_path):
    benchmark = tmp_path / "benchmark"
    benchmark.mkdir()
    raw = {"store": "store", "output": "out", "target": city_spec(ZOO["target"], str(benchmark)),
           "models": zoo_models(str(benchmark))}
    config = parse_config(raw, base_dir="/nonexistent")  # nothing left relative: the base folder is never used
    assert [model["name"] for model in config.models] == [entry["name"] for entry in ZOO["models"]]
    assert all(os.path.isfile(model["checkpoint"]) for model in config.models)
    assert {model["source"]["root"] for model in config.models} == {str(benchmark)}


def test_every_checkpoint_is_a_weights_only_state_dict_of_its_architecture():
    for entry in ZOO["models"]:
        state = torch.load(ZOO_DIR / entry["checkpoint"], map_location="cpu", weights_only=True)
        net = build_architecture(entry["architecture"], entry.get("num_classes", 19), **entry.get("kwargs", {}))
        net.load_state_dict(state, strict=True)
    weights = sum(path.stat().st_size for path in (ZOO_DIR / "weights").glob("*.pt"))
    assert weights < 5_000_000
    assert sorted(path.name for path in (ZOO_DIR / "weights").glob("*.pt")) == sorted(
        os.path.basename(entry["checkpoint"]) for entry in ZOO["models"])


def test_zoo_spans_architectures_and_sources_near_and_far_from_a_target_that_is_no_source():
    target = DOMAINS[ZOO["target"]]
    assert len(ZOO["models"]) >= 12
    assert len({entry["architecture"] for entry in ZOO["models"]}) >= 3
    assert {DOMAINS[city].family for city in SOURCES} == set(FAMILIES)
    assert target.name not in SOURCES
    near = [c for c in SOURCES if (DOMAINS[c].family, DOMAINS[c].condition) == (target.family, target.condition)]
    far = [c for c in SOURCES if DOMAINS[c].family != target.family]
    assert near and far
    assert set(ZOO["accuracy"]) == {entry["name"] for entry in ZOO["models"]}
    assert all(scores["source_pixel_accuracy"] > 0.8 for scores in ZOO["accuracy"].values())  # trained, not random


def test_demo_config_writes_the_zoo_benchmark_and_parses(tmp_path):
    raw = demo_config(str(tmp_path), n_pixels=500, repeats=3, pixels_per_image=50)
    config = parse_config(raw, base_dir=str(tmp_path))
    manifest = json.loads((tmp_path / "benchmark" / "benchmark.json").read_text())
    assert manifest["seed"] == ZOO["benchmark"]["seed"] and manifest["size"] == ZOO["benchmark"]["size"]
    assert manifest["images_per_city"] == ZOO["benchmark"]["images_per_city"]
    assert set(SOURCES) | {ZOO["target"]} <= set(manifest["cities"])
    assert config.target["cities"] == [ZOO["target"]] and config.target["root"] == str(tmp_path / "benchmark")
    assert (config.store, config.output) == (str(tmp_path / "store"), str(tmp_path / "leaderboard"))
    assert len(config.models) == len(ZOO["models"])
    assert (config.otce.n_pixels, config.otce.repeats, config.extraction.pixels_per_image) == (500, 3, 50)
    # Leakage-free: the demo scores exactly the images the shipped ground truth fine-tuned on, and none it tested on.
    assert (config.target["max_images"], config.target["seed"]) == (TRAIN_IMAGES, SELECTION_SEED)
    split = split_target(config.target, eval_images=SETTINGS.eval_images)
    scored = open_dataset(config.target).image_ids
    assert [item.image_id for item in split.train] == scored and len(split.test) == 20
    assert not set(scored) & {item.image_id for item in split.test}


def test_shipped_ground_truth_was_measured_on_the_shipped_weights_with_replicate_seeds():
    truth = pd.read_csv(GROUND_TRUTH)
    assert stale_models(truth) == []
    assert list(truth.model) == [entry["name"] for entry in ZOO["models"]]
    assert (truth.status == "ok").all() and (truth.seeds == len(FINETUNE_SEEDS)).all()
    replicates = truth[[f"log_likelihood@{seed}" for seed in FINETUNE_SEEDS]]
    np.testing.assert_allclose(truth.log_likelihood, replicates.mean(axis=1))
    assert "no score can correlate above" in noise_ceiling_line(truth)


def test_a_retrained_checkpoint_makes_the_ground_truth_stale(tmp_path):
    shutil.copytree(ZOO_DIR, tmp_path / "zoo", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    truth = pd.read_csv(GROUND_TRUTH)
    assert stale_models(truth, tmp_path / "zoo") == []
    entry = ZOO["models"][0]
    with open(tmp_path / "zoo" / entry["checkpoint"], "ab") as file:
        file.write(b"retrained")
    assert stale_models(truth, tmp_path / "zoo") == [entry["name"]]
    assert stale_models(truth.iloc[1:]) == [entry["name"]]  # a model without a row


SMALL = {"cities": 2, "images_per_city": 2, "size": [32, 64], "seed": 0}


def test_a_matching_benchmark_is_reused_and_another_one_replaced_with_what_was_derived_from_it(tmp_path):
    root, store = tmp_path / "benchmark", tmp_path / "store"
    ensure_benchmark(str(root), SMALL, derived=[str(store)])
    image = root / "leftImg8bit" / "train" / "alpha" / "alpha_000000_000000_leftImg8bit.png"
    stamp = image.stat().st_mtime_ns
    store.mkdir()
    ensure_benchmark(str(root), SMALL, derived=[str(store)])
    assert image.stat().st_mtime_ns == stamp and store.exists()

    ensure_benchmark(str(root), {**SMALL, "images_per_city": 1}, derived=[str(store)])
    assert not store.exists()
    assert sorted(p.name for p in (root / "leftImg8bit" / "train" / "alpha").iterdir()) == [image.name]


def test_demo_table_places_sources_against_the_target_and_shows_failures():
    board = build_leaderboard([
        ModelResult("unet_alpha", "alpha", architecture="unet", scores=(-1.0, -1.2)),
        ModelResult("unet_zeta", "zeta", status="failed", architecture="unet", error="checkpoint not found"),
    ])
    lines = demo_table(board, "gamma").splitlines()
    assert "unet_alpha" in lines[1] and "near" in lines[1] and "[" in lines[1]
    assert "unet_zeta" in lines[2] and "far" in lines[2] and "failed: checkpoint not found" in lines[2]


def test_demo_command_defaults_to_a_local_folder():
    assert build_parser().parse_args(["demo"]).out == "otce-demo"
