"""The whole validation of docs/validation.md as one resumable run on a local Ray (``python -m otce_ray.validation``
or ``python jobs/validate.py``).

1. Selection seeds 0 and 1: each writes its own benchmark, trains its sources, extracts the leakage-free target's
   pixel stores with the baselines, and fine-tunes every (model, target) with 3 seeds; then the estimator grid is
   re-scored from the stores (N = 2,000 everywhere; on the first selection seed also N = 10,000 with the relative
   eps on the intra targets, and the paper's two estimators at N = 10,000 on one target as a cost probe).
2. The defaults are chosen on those two seeds by the rule in :mod:`otce_ray.validation.choice` and written to
   ``choice.json`` once; a rerun never chooses again.
3. Held-out seeds 2, 3 and 4 are run the same way and score only the settings ``choice.json`` names.
4. ``report.md`` (every table) is written under the work folder.

Everything is kept under the work folder and every step reuses what is there, so a killed run resumes where it
stopped. Step timings are appended to ``{work}/timings.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from otce_ray.validation.analysis import seed_table
from otce_ray.validation.choice import CHOICE, candidates, read_choice, write_choice
from otce_ray.scoring.settings import OTCESettings
from otce_ray.validation.grid import SCORES, grid, read_scores, rescore
from otce_ray.validation.harness import pairs, run_seed, seed_dir
from otce_ray.validation.plan import EXPERIMENTS, INTRA, Plan
from otce_ray.validation.report import write_report

SELECTION_SEEDS = (0, 1)
HELD_OUT_SEEDS = (2, 3, 4)
PROBE_TARGET = "gamma"  # where the paper's estimators are timed at N = 10,000
# N = 10,000 costs ~25 min of re-scoring per seed on a 2-core machine (20x N = 2,000); it is scored on the first
# selection seed only, which makes its settings ineligible as defaults and leaves them in the report as evidence.
LARGE_N_SEEDS = SELECTION_SEEDS[:1]


def selection_grid(seed: int) -> list[tuple[tuple[str, ...], list[OTCESettings], str | None]]:
    """(experiments, settings, only this target or None) re-scored on selection seed ``seed``."""
    blocks = [(EXPERIMENTS, grid(2000, 2), None)]
    if seed in LARGE_N_SEEDS:
        blocks += [
            ((INTRA,), grid(10_000, 1, ("0.05", "0.01", "0.005")), None),
            ((INTRA,), [s for s in grid(10_000, 1, ("emd", "raw")) if not s.standardise], PROBE_TARGET),
        ]
    return blocks


def run_study(work: Path, workers: int = 2, selection_only: bool = False,
              log: Callable[[str], Any] = print) -> Path | None:
    """Run (or resume) every step into ``work``; returns the report's path (None with ``selection_only``)."""
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plan = Plan(workers=workers)

    def step(name: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = action()
        seconds = round(time.perf_counter() - started, 1)
        with open(work / "timings.jsonl", "a") as file:
            file.write(json.dumps({"step": name, "seconds": seconds, "at": time.strftime("%Y-%m-%d %H:%M")}) + "\n")
        log(f"[{name}] {seconds} s")
        return result

    for seed in SELECTION_SEEDS:
        step(f"seed {seed}: data, sources, stores, ground truth", lambda: run_seed(plan, seed, work, log))
        for experiments, settings, only in selection_grid(seed):
            chosen_pairs = [p for p in pairs(plan, seed, work, experiments) if only in (None, p.target)]
            where = ", ".join(experiments) + (f" ({only})" if only else "")
            step(f"seed {seed}: grid at N {settings[0].n_pixels} on {where}",
                 lambda: rescore(chosen_pairs, settings, seed_dir(work, seed) / SCORES, workers, log))
    if not (work / CHOICE).exists():
        table = pd.concat([seed_table(plan, s, work) for s in SELECTION_SEEDS], ignore_index=True)
        scores = pd.concat([read_scores(seed_dir(work, s) / SCORES) for s in SELECTION_SEEDS], ignore_index=True)
        settings = list(dict.fromkeys(s for seed in SELECTION_SEEDS
                                      for _, block, only in selection_grid(seed) if only is None for s in block))
        record = write_choice(work / CHOICE, candidates(table, scores, settings), SELECTION_SEEDS)
        log(f"chosen on seeds {SELECTION_SEEDS}: {record['chosen']}")
    chosen, held_out = read_choice(work / CHOICE)
    log(f"chosen: {chosen.label}; held-out settings: {[s.label for s in held_out]}")
    if selection_only:
        return None
    for seed in HELD_OUT_SEEDS:
        step(f"seed {seed}: data, sources, stores, ground truth", lambda: run_seed(plan, seed, work, log))
        step(f"seed {seed}: held-out settings",
             lambda: rescore(pairs(plan, seed, work), held_out, seed_dir(work, seed) / SCORES, workers, log))
    return step("report", lambda: write_report(plan, work, SELECTION_SEEDS, HELD_OUT_SEEDS))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("OTCE_VALIDATION_WORK",
                                                                         "/tmp/otce-validation")))
    parser.add_argument("--workers", type=int, default=2, help="processes for training and re-scoring")
    parser.add_argument("--selection-only", action="store_true", help="stop once the defaults are chosen")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    report = run_study(args.work, args.workers, args.selection_only, lambda message: print(message, flush=True))
    if report is not None:
        print(f"report: {report}", flush=True)
    return 0
