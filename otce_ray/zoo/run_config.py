"""The demo's run: the shipped zoo scored on the procedural benchmark, as one run config.

The demo (``otce_ray.demo``) runs it and the zoo's ground truth (``otce_ray.zoo.truth``) fine-tunes on exactly the
target images it scores (:func:`scored_target`), so both read it from here.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from otce_ray.datasets.synth import CITY_NAMES, write_benchmark
from otce_ray.datasets.synth.writer import MANIFEST
from otce_ray.finetune import training_target
from otce_ray.scoring.settings import OTCESettings
from otce_ray.zoo import ZOO_DIR, city_spec, read_zoo, zoo_models

TRAIN_IMAGES = 20
SELECTION_SEED = 0  # picks the 20 target images, for scoring and fine-tuning alike
VALIDATED = OTCESettings()  # the demo scores with the engine's validated N and K


def scored_target(benchmark_root: str, folder: str | os.PathLike = ZOO_DIR) -> dict[str, Any]:
    """The zoo target as the demo scores it: only the images fine-tuning trains on."""
    target = {**city_spec(read_zoo(folder)["target"], os.path.abspath(benchmark_root)), "seed": SELECTION_SEED}
    return training_target(target, TRAIN_IMAGES)


def demo_config(out_dir: str, *, n_pixels: int = VALIDATED.n_pixels, repeats: int = VALIDATED.repeats,
                pixels_per_image: int = 200) -> dict:
    """The demo's run config as data (every path absolute), after making sure its benchmark is on disk.

    Folders under ``out_dir``: ``benchmark`` (images), ``store`` (pixel stores), ``leaderboard`` (results).
    """
    out_dir = os.path.abspath(out_dir)
    zoo = read_zoo()
    benchmark = ensure_benchmark(os.path.join(out_dir, "benchmark"), zoo["benchmark"],
                                 derived=[os.path.join(out_dir, "store"), os.path.join(out_dir, "leaderboard")])
    return {
        "store": os.path.join(out_dir, "store"),
        "output": os.path.join(out_dir, "leaderboard"),
        "target": scored_target(benchmark),
        "models": zoo_models(benchmark),
        "otce": {"n_pixels": n_pixels, "repeats": repeats, "seed": 0},
        "extraction": {"pixels_per_image": pixels_per_image},  # num_gpus unset: one GPU per task when there is one
        "baselines": {"n_pixels": n_pixels},
    }


def ensure_benchmark(root: str, settings: dict[str, Any], derived: list[str]) -> str:
    """Write the benchmark of ``settings`` (write_benchmark's arguments) at ``root`` unless it is already there.

    An existing benchmark is reused only when its ``benchmark.json`` records the same settings. One written with
    other settings is deleted first (stale frames would otherwise be read with the new ones), and so are the
    ``derived`` folders: stores and results keyed by dataset spec cannot tell that the images changed.
    """
    expected = {"seed": settings["seed"], "size": list(settings["size"]),
                "images_per_city": settings["images_per_city"], "cities": list(CITY_NAMES[:settings["cities"]])}
    manifest_path = os.path.join(root, MANIFEST)
    if os.path.isfile(manifest_path):
        with open(manifest_path) as file:
            manifest = json.load(file)
        found = {key: manifest.get(key) for key in ("seed", "size", "images_per_city")}
        if {**found, "cities": list(manifest.get("cities", {}))} == expected:
            return root
        for folder in [root, *derived]:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"writing the benchmark ({settings['cities']} cities x {settings['images_per_city']} images) to {root}")
    write_benchmark(root, settings["cities"], settings["images_per_city"], tuple(settings["size"]), settings["seed"])
    return root
