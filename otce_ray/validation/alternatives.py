"""Other OTCE settings on the same runs: re-score the pixel stores the validation left, no re-extraction.

Each setting (relative eps, cost scale, N, pixels per image) scores every (target, source model) pair of an
experiment with ``otce_score`` on the stored pixels and is correlated with that target's fine-tuning ground truth.
Fewer pixels per image than were stored are emulated by keeping a seeded subset of each image's stored pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from otce_ray.evaluation import kendall, pearson
from otce_ray.scoring.estimator import otce_score
from otce_ray.store import read_pixels
from otce_ray.store.reader import Pixels
from otce_ray.validation.harness import INTRA, Plan


@dataclass(frozen=True)
class Setting:
    """One OTCE setting: eps relative to ``cost_scale`` ("none": eps on the raw cost, as in the paper)."""

    epsilon: float
    cost_scale: str = "median"
    n_pixels: int = 2000
    pixels_per_image: int | None = None  # None: every stored pixel

    @property
    def label(self) -> str:
        ppi = "" if self.pixels_per_image is None else f", {self.pixels_per_image}/image"
        return f"eps {self.epsilon:g} x {self.cost_scale}, N {self.n_pixels}{ppi}"


def default_settings(stored_per_image: int) -> list[Setting]:
    """The grid of the write-up: eps x cost scale at N 2000, N at the default eps, and fewer pixels per image."""
    grid = [Setting(eps, scale) for scale in ("median", "max") for eps in (0.01, 0.05, 0.1, 0.5)]
    grid.append(Setting(0.1, "none"))
    grid += [Setting(0.05, "median", n) for n in (1000, 5000)]
    grid += [Setting(0.05, "median", 2000, ppi) for ppi in (stored_per_image // 4, stored_per_image // 2)]
    return grid


def per_image(pixels: Pixels, keep: int | None, seed: int = 0) -> np.ndarray:
    """Row indices keeping at most ``keep`` seeded pixels of each image (all rows when ``keep`` is None)."""
    rows = np.arange(len(pixels))
    if keep is None:
        return rows
    rng = np.random.default_rng(seed)
    kept = []
    for image in np.unique(pixels.image_ids):
        mine = rows[pixels.image_ids == image]
        kept.append(rng.choice(mine, size=min(keep, len(mine)), replace=False) if len(mine) > keep else mine)
    return np.sort(np.concatenate(kept))


def _score(source: Pixels, target: Pixels, setting: Setting, repeats: int) -> float:
    rs, rt = per_image(source, setting.pixels_per_image), per_image(target, setting.pixels_per_image)
    result = otce_score(source.features[rs], source.labels[rs], target.features[rt], target.labels[rt],
                        n_pixels=setting.n_pixels, repeats=repeats, epsilon=setting.epsilon,
                        cost_scale_kind=setting.cost_scale, device="cpu")
    return result.score


def rescore(plan: Plan, work: Path, settings: Iterable[Setting], experiment: str = INTRA) -> pd.DataFrame:
    """Per (setting, target): Pearson and Kendall of OTCE under the setting against the log-likelihood ground truth.

    Columns: setting, epsilon, cost_scale, n_pixels, pixels_per_image, target, pearson, kendall.
    """
    settings = list(settings)
    store = str(Path(work) / "store")
    rows = []
    for target in plan.targets:
        truth = pd.read_csv(Path(work) / experiment / target / "ground_truth.csv").set_index("model")
        sources = plan.sources_for(experiment, target)
        pairs = [(read_pixels(store, s.city, s.name, with_logits=False),
                  read_pixels(store, target, s.name, with_logits=False)) for s in sources]
        performance = truth.loc[[s.name for s in sources], "log_likelihood"].to_numpy(float)
        for setting in settings:
            scores = np.array([_score(src, tgt, setting, plan.repeats) for src, tgt in pairs])
            rows.append({"setting": setting.label, "epsilon": setting.epsilon, "cost_scale": setting.cost_scale,
                         "n_pixels": setting.n_pixels, "pixels_per_image": setting.pixels_per_image,
                         "target": target, "pearson": float(pearson(scores, performance)),
                         "kendall": float(kendall(scores, performance))})
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean Pearson and Kendall over targets per setting, in the grid's order."""
    keys = ["setting", "epsilon", "cost_scale", "n_pixels", "pixels_per_image"]
    return (table.groupby(keys, sort=False, dropna=False)[["pearson", "kendall"]].mean().reset_index())
