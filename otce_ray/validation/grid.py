"""The pre-registered OTCE estimators, re-scored from the pixel stores of a validation run (no re-extraction).

Every (benchmark seed, target, model, setting) score is one row of ``{work}/seed{seed}/scores.csv``, appended as it
is computed and never computed again, with the seconds per repeat it took. A score goes through ``otce_score`` on
every row of the model's two stores, the same repeat unit a leaderboard run uses (tests/test_estimator_parity.py).
Workers are processes with one torch thread each (two-thread solves on a busy 2-core machine were ~15x slower than
one thread).
"""

from __future__ import annotations

import functools
import multiprocessing
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from otce_ray.scoring.settings import OTCESettings

SCORES = "scores.csv"
KEY = ["seed", "target", "model", "setting"]
COLUMNS = [*KEY[:2], "experiment", *KEY[2:], "label", "score", "score_std", "dropped", "max_marginal_error",
           "iterations", "seconds_per_repeat", "source_pixels", "target_pixels", "error"]


@dataclass(frozen=True)
class Pair:
    """One (source model, target) of one seed's run, and where its pixels are."""

    seed: int
    experiment: str
    target: str
    model: str
    source_dataset: str
    store: str


@functools.lru_cache(maxsize=8)
def _pixels(store: str, dataset: str, model: str) -> Any:
    from otce_ray.store import read_pixels

    return read_pixels(store, dataset, model, with_logits=False)


def score_pair(pair: Pair, setting: OTCESettings, name: str = "") -> dict[str, Any]:
    """OTCE of one pair under one setting (``name``: its key in the tables), with what it cost and how well its plans
    converged. A solver that gives up (exact OT beyond its iteration cap) is a row with a NaN score and its
    ``error``."""
    import torch

    from otce_ray.scoring.estimator import otce_score

    torch.set_num_threads(1)
    source, target = _pixels(pair.store, pair.source_dataset, pair.model), _pixels(pair.store, pair.target, pair.model)
    row = {"seed": pair.seed, "experiment": pair.experiment, "target": pair.target, "model": pair.model,
           "setting": name or setting.label, "label": setting.label}
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():  # an unconverged repeat is counted in `dropped`, not printed
            warnings.simplefilter("ignore", RuntimeWarning)
            result = otce_score(source.features, source.labels, target.features, target.labels, setting,
                                device="cpu")
    except ValueError as error:
        return {**row, "score": np.nan, "dropped": setting.repeats, "error": str(error),
                "seconds_per_repeat": (time.perf_counter() - started) / setting.repeats}
    records = result.repeats
    return {**row, "score": result.score, "score_std": result.std, "dropped": result.dropped,
            "max_marginal_error": max(r.marginal_error for r in records),
            "iterations": float(np.mean([r.iterations for r in records])),
            "seconds_per_repeat": (time.perf_counter() - started) / len(records),
            "source_pixels": result.source_pixels_available, "target_pixels": result.target_pixels_available,
            "error": ""}


def _score_task(task: tuple[Pair, OTCESettings, str]) -> dict[str, Any]:
    return score_pair(*task)


def read_scores(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"model": "string", "target": "string"}) if Path(path).exists() else pd.DataFrame()


def rescore(pairs: Iterable[Pair], settings: Mapping[str, OTCESettings], out: Path, workers: int = 2,
            log: Any = None) -> pd.DataFrame:
    """Score every (pair, named setting) missing from ``out`` (a CSV, appended row by row); return every row of
    ``out``. Tasks are ordered pair by pair so that each worker's small pixel cache is reused across settings."""
    done = read_scores(out)
    finished = set(done[KEY].itertuples(index=False, name=None)) if len(done) else set()
    tasks = [(pair, setting, name) for pair in pairs for name, setting in settings.items()
             if (pair.seed, pair.target, pair.model, name) not in finished]
    if tasks:
        started, count = time.perf_counter(), 0
        with multiprocessing.get_context("spawn").Pool(max(1, min(workers, len(tasks)))) as pool:
            for row in pool.imap(_score_task, tasks):
                pd.DataFrame([row], columns=COLUMNS).to_csv(out, mode="a", header=not Path(out).exists(), index=False)
                count += 1
                if log is not None and count % 50 == 0:
                    log(f"  {count}/{len(tasks)} scores in {time.perf_counter() - started:.0f} s")
    return read_scores(out)
