"""The per-cell table of a validation run: everything the report is computed from, small enough to commit.

One row per (benchmark seed, experiment, target, source model): the model's design and reference lines (its
parameter count, its accuracy on its own city, its feature width and scale on the target), each ground-truth
replicate's log-likelihood, mIoU and pixel accuracy, every baseline metric, and every pre-registered OTCE setting's
score with the seconds per repeat it took. ``cells.csv`` in the tables folder holds them; ``meta.json`` beside it
says which code (git commit, clean tree) ran, on what machine, when, and after which pre-registration commit.
``python -m otce_ray.validation report`` recomputes the report from these files alone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from otce_ray.scoring.baselines import BASELINES
from otce_ray.validation.grid import SCORES, read_scores
from otce_ray.validation.harness import read_truth, seed_dir, target_dir
from otce_ray.validation.plan import EXPERIMENTS, SETTINGS, Plan

CELLS = "cells.csv"
META = "meta.json"
MEASURES = ("log_likelihood", "miou", "pixel_accuracy")
INDEX = ["seed", "experiment", "target", "model"]


def score_column(setting: str) -> str:
    return f"otce:{setting}"


def seconds_column(setting: str) -> str:
    return f"seconds:{setting}"


def seed_cells(plan: Plan, seed: int, work: Path) -> pd.DataFrame:
    """The rows of one seed (every experiment and target it ran)."""
    here = seed_dir(work, seed)
    scores = read_scores(here / SCORES)
    frames = []
    for experiment in EXPERIMENTS:
        for target in plan.targets_of(experiment, seed):
            sources = [s for s in plan.sources(experiment, seed) if s.city != target.city]
            board = pd.read_csv(target_dir(work, seed, experiment, target) / "leaderboard.csv",
                                dtype={"model": "string"}).set_index("model")
            truth = read_truth(plan, seed, work, experiment, target)
            truth.loc[truth.status != "ok", list(MEASURES)] = np.nan
            wide = truth.pivot(index="model", columns="replicate", values=list(MEASURES))
            wide.columns = [f"{measure}@{replicate}" for measure, replicate in wide.columns]
            frame = pd.DataFrame({
                "seed": seed, "experiment": experiment, "target": target.name, "shift": target.shift or "",
                "target_family": target.family, "model": [s.name for s in sources],
                "source_city": [s.city for s in sources], "source_family": [s.family for s in sources],
                "architecture": [s.architecture for s in sources],
                "width": [s.kwargs.get("width", 16) for s in sources],
                "feature_dim": [s.kwargs.get("feature_dim", 32) for s in sources],
                "steps": [s.steps for s in sources],
            })
            facts = pd.DataFrame([json.loads((here / "weights" / f"{s.name}.json").read_text()) for s in sources])
            frame = pd.concat([frame, facts[["params", "source_miou", "source_pixel_accuracy"]]], axis=1)
            frame["family_indicator"] = (frame.source_family == frame.target_family).astype(float)
            frame["feature_norm"] = [_feature_norm(here / "store", target.name, s.name) for s in sources]
            ok = board["status"].reindex(frame.model).eq("ok").to_numpy()
            frame["status"] = np.where(ok, "ok", "failed")
            for metric in BASELINES:
                values = board[metric].reindex(frame.model).to_numpy(float) if metric in board else np.nan
                frame[metric] = np.where(ok, values, np.nan)
            frame = frame.join(wide, on="model")
            frames.append(frame)
    cells = pd.concat(frames, ignore_index=True)
    if len(scores):
        for column, value in ((score_column, "score"), (seconds_column, "seconds_per_repeat")):
            table = scores.pivot_table(index=["experiment", "target", "model"], columns="setting", values=value,
                                       dropna=False)
            table.columns = [column(name) for name in table.columns]
            cells = cells.join(table, on=["experiment", "target", "model"])
        dropped = scores[scores.dropped > 0].groupby(["experiment", "target", "model"]).setting.apply(",".join)
        cells = cells.join(dropped.rename("dropped_in"), on=["experiment", "target", "model"])
    return cells


def _feature_norm(store: Path, dataset: str, model: str) -> float:
    """The mean L2 norm of the model's features on the target's pixels: its feature scale, for the diagnosis of
    what OTCE's errors go with (raw units, before any standardising)."""
    from otce_ray.store import read_pixels

    pixels = read_pixels(str(store), dataset, model, sample=2000, seed=0, with_logits=False)
    return float(np.linalg.norm(pixels.features, axis=1).mean())


def tabled_seeds(out: Path) -> list[int]:
    """The benchmark seeds a tables folder already holds (none when it holds no table)."""
    path = Path(out) / CELLS
    return sorted(int(seed) for seed in pd.read_csv(path, usecols=["seed"]).seed.unique()) if path.exists() else []


def write_tables(plan: Plan, seeds: list[int], work: Path, out: Path, meta: dict[str, Any]) -> Path:
    """Write ``cells.csv`` and ``meta.json`` into ``out``: the rows of ``seeds`` from ``work``, beside the rows of any
    other seed ``out`` already holds (kept as they are, their run's meta under ``earlier``); returns the cells' path.
    Committed tables thus resume on a new machine: only the seeds they lack run."""
    out.mkdir(parents=True, exist_ok=True)
    frames = [seed_cells(plan, seed, work) for seed in seeds]
    if tabled_seeds(out):
        kept = read_cells(out)
        frames.insert(0, kept[~kept.seed.isin(seeds)])
        if len(frames[0]):
            meta = {**meta, "earlier": json.loads((out / META).read_text())}
    cells = pd.concat(frames, ignore_index=True)
    ordered = [*[c for c in cells.columns if not c.startswith(("otce:", "seconds:"))],
               *[score_column(name) for name in SETTINGS if score_column(name) in cells],
               *[seconds_column(name) for name in SETTINGS if seconds_column(name) in cells]]
    cells[ordered].to_csv(out / CELLS, index=False, float_format="%.6g")
    (out / META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    return out / CELLS


def read_cells(tables: Path) -> pd.DataFrame:
    return pd.read_csv(Path(tables) / CELLS, dtype={"model": "string", "target": "string", "shift": "string"},
                       keep_default_na=True).fillna({"shift": ""})


def code_version() -> dict[str, Any]:
    """The git commit the package runs from and whether its tree is clean (a validation claim needs both)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    try:
        return {"commit": git("rev-parse", "HEAD").strip(), "clean": not git("status", "--porcelain").strip()}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "clean": False}


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
