"""Validation v3 as one resumable run on a local Ray, and its report from the committed tables.

``python -m otce_ray.validation run --work DIR --seeds 5 6 7 8 9 --tables OUT`` runs every step of each seed
(:mod:`otce_ray.validation.harness`: data, sources, leaderboards with baselines, ground-truth replicates), re-scores
the pre-registered OTCE settings from the stores (:mod:`otce_ray.validation.grid`), then writes the per-cell tables
(:mod:`otce_ray.validation.tables`) and the report. Everything is kept under the work folder and reused, so a
killed run resumes where it stopped; step timings go to ``{work}/timings.jsonl``. Seeds the tables folder already
holds are kept, not run again: committed tables resume on a new machine without the work folder.

``python -m otce_ray.validation report --tables DIR`` recomputes ``report.md`` from ``cells.csv`` and
``meta.json`` alone: what the committed tables say, anyone can check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from otce_ray.validation import protocol
from otce_ray.validation.grid import SCORES, rescore
from otce_ray.validation.harness import pairs, run_seed, seed_dir
from otce_ray.validation.plan import SETTINGS, Plan
from otce_ray.validation.report import write_report
from otce_ray.validation.tables import code_version, machine, tabled_seeds, write_tables

PREREGISTRATION = "docs/validation/preregistration.md"


def preregistration_commit() -> str | None:
    """The commit that first added the pre-registration (None when it is not committed)."""
    root = Path(__file__).resolve().parents[2]
    try:
        found = subprocess.run(["git", "-C", str(root), "log", "--diff-filter=A", "--format=%H", "--",
                                PREREGISTRATION], capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return found[-1] if found else None


def run_study(work: Path, seeds: Sequence[int], tables: Path, workers: int = 2,
              log: Callable[[str], Any] = print) -> Path:
    """Run (or resume) every seed ``tables`` lacks into ``work``, then write the tables and the report there."""
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    plan = Plan(workers=workers)
    meta = {"code": code_version(), "preregistration": preregistration_commit(), "machine": machine(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    log(f"code {meta['code']}; pre-registration {meta['preregistration']}")
    kept = [seed for seed in seeds if seed in tabled_seeds(tables)]
    if kept:
        log(f"seeds {kept}: already in {tables}, kept as they are")
    seeds = [seed for seed in seeds if seed not in kept]
    meta["seeds"] = seeds

    def step(name: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = action()
        seconds = round(time.perf_counter() - started, 1)
        with open(work / "timings.jsonl", "a") as file:
            file.write(json.dumps({"step": name, "seconds": seconds, "at": time.strftime("%Y-%m-%d %H:%M")}) + "\n")
        log(f"[{name}] {seconds} s")
        return result

    for seed in seeds:
        step(f"seed {seed}: data, sources, stores, ground truth", lambda: run_seed(plan, seed, work, log))
        step(f"seed {seed}: OTCE settings",
             lambda: rescore(pairs(plan, seed, work), SETTINGS, seed_dir(work, seed) / SCORES, workers, log))
    if seeds:
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        write_tables(plan, list(seeds), work, Path(tables), meta)
    return step("report", lambda: write_report(Path(tables)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume) the seeds, then write the tables and the report")
    run.add_argument("--work", type=Path, default=Path(os.environ.get("OTCE_VALIDATION_WORK", "/tmp/otce-validation")))
    run.add_argument("--seeds", type=int, nargs="+", default=list(protocol.FRESH_SEEDS))
    run.add_argument("--tables", type=Path, required=True, help="folder for cells.csv, meta.json and report.md")
    run.add_argument("--workers", type=int, default=2, help="processes for training and re-scoring")
    report = commands.add_parser("report", help="recompute report.md from committed tables alone")
    report.add_argument("--tables", type=Path, required=True)
    report.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.command == "run":
        path = run_study(args.work, args.seeds, args.tables, args.workers, lambda m: print(m, flush=True))
    else:
        path = write_report(args.tables, args.out)
    print(f"report: {path}", flush=True)
    return 0
