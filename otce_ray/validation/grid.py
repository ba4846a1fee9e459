"""The OTCE estimator grid, re-scored from the pixel stores of a validation run (no re-extraction).

Faithful first: exact OT (``emd``, what the authors' code runs) and Sinkhorn at the paper's eps = 0.1 on the raw
squared-Euclidean cost, then Sinkhorn at eps relative to the median cost (0.05, the engine's default before this
grid; 0.01; 0.005), each on raw features and with each side standardised (``standardise``), at N = 2,000 and
10,000 pixels per side.

Every (benchmark seed, target, model, setting) score is one row of ``{work}/seed{seed}/scores.csv``, appended as it
is computed and never computed again, with the seconds per repeat it took. Workers are processes with one torch
thread each (two-thread solves on a busy 2-core machine were ~15x slower than one thread).
"""

from __future__ import annotations

import functools
import multiprocessing
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from otce_ray.scoring.settings import OTCESettings

SCORES = "scores.csv"
KEY = ["seed", "target", "model", "setting"]
COLUMNS = [*KEY[:2], "experiment", *KEY[2:], "solver", "epsilon", "cost_scale", "standardise", "n_pixels", "repeats",
           "score", "score_std", "dropped", "max_marginal_error", "iterations", "seconds_per_repeat",
           "source_pixels", "target_pixels", "error"]


def grid(n_pixels: int, repeats: int,
         solvers: Iterable[str] = ("emd", "raw", "0.05", "0.01", "0.005")) -> list[OTCESettings]:
    """The grid at one N, faithful first; ``solvers`` picks rows ("emd", "raw", or a relative eps)."""
    def solver_fields(solver: str) -> dict[str, Any]:
        named = {"emd": {"solver": "emd"}, "raw": {"epsilon": 0.1, "cost_scale": "none"}}
        return named[solver] if solver in named else {"epsilon": float(solver), "cost_scale": "median"}

    return [OTCESettings(n_pixels=n_pixels, repeats=repeats, standardise=standardise, **solver_fields(solver))
            for solver in solvers for standardise in (False, True)]


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


def score_pair(pair: Pair, setting: OTCESettings) -> dict[str, Any]:
    """OTCE of one pair under one setting, with what it cost and how well its plans converged. A solver that gives
    up (exact OT beyond its iteration cap) is a row with a NaN score and its ``error``."""
    import torch

    from otce_ray.scoring.estimator import otce_score

    torch.set_num_threads(1)
    source, target = _pixels(pair.store, pair.source_dataset, pair.model), _pixels(pair.store, pair.target, pair.model)
    row = {**setting.to_dict(), "seed": pair.seed, "experiment": pair.experiment, "target": pair.target,
           "model": pair.model, "setting": setting.label}  # ``seed``: the benchmark's (the sampling seed is 0)
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


def _score_task(task: tuple[Pair, OTCESettings]) -> dict[str, Any]:
    return score_pair(*task)


def read_scores(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"model": "string", "target": "string"}) if Path(path).exists() else pd.DataFrame()


def rescore(pairs: Iterable[Pair], settings: Iterable[OTCESettings], out: Path, workers: int = 2,
            log: Any = None) -> pd.DataFrame:
    """Score every (pair, setting) missing from ``out`` (a CSV, appended row by row); return every row of ``out``.

    Tasks are ordered pair by pair so that each worker's small pixel cache is reused across settings.
    """
    done = read_scores(out)
    finished = set(done[KEY].itertuples(index=False, name=None)) if len(done) else set()
    tasks = [(pair, setting) for pair in pairs for setting in settings
             if (pair.seed, pair.target, pair.model, setting.label) not in finished]
    if tasks:
        started, count = time.perf_counter(), 0
        with multiprocessing.get_context("spawn").Pool(max(1, min(workers, len(tasks)))) as pool:
            for row in pool.imap(_score_task, tasks):
                pd.DataFrame([row], columns=COLUMNS).to_csv(out, mode="a", header=not Path(out).exists(), index=False)
                count += 1
                if log is not None and count % 50 == 0:
                    log(f"  {count}/{len(tasks)} scores in {time.perf_counter() - started:.0f} s")
    return read_scores(out)
