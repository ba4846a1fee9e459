"""The shipped demo zoo: small built-in nets, each trained by ``jobs/train_zoo.py`` on one city of the procedural
benchmark, with ``zoo.yaml`` saying how (benchmark and training settings, accuracies) and which city is the target.

The weights live inside the package (``zoo/weights/*.pt``), so the demo runs from an installed wheel. ``zoo.yaml``
keeps its paths relative (checkpoints to this folder, the benchmark root to wherever the benchmark is written);
:func:`zoo_models` makes them absolute, because a run config resolves relative paths against its own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

ZOO_DIR = Path(__file__).resolve().parent
ZOO_FILE = "zoo.yaml"
# Fine-tuning ground truth of every zoo model on the target (``otce-ray finetune``), for the demo's evaluation.
GROUND_TRUTH = ZOO_DIR / "ground_truth.csv"


def city_spec(city: str, root: str) -> dict[str, Any]:
    """The dataset spec of one benchmark city (its name is the city's, so stores are keyed by city)."""
    return {"name": city, "format": "cityscapes", "root": root, "split": "train", "cities": [city]}


def read_zoo(folder: str | os.PathLike = ZOO_DIR) -> dict[str, Any]:
    """``zoo.yaml`` as written: ``benchmark`` (write_benchmark arguments), ``target``, ``training``, ``models``."""
    return yaml.safe_load((Path(folder) / ZOO_FILE).read_text())


def zoo_models(benchmark_root: str, folder: str | os.PathLike = ZOO_DIR) -> list[dict[str, Any]]:
    """The zoo's run-config model entries with absolute checkpoints and source datasets under ``benchmark_root``."""
    return [
        {**entry, "checkpoint": str(Path(folder).resolve() / entry["checkpoint"]),
         "source": {**entry["source"], "root": os.path.abspath(benchmark_root)}}
        for entry in read_zoo(folder)["models"]
    ]
