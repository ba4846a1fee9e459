"""Run the validation of issue 6 on a local Ray: both experiments, then the alternative OTCE settings.

    python jobs/validate.py [--work /tmp/otce-validation] [--seed 0] [--skip-alternatives]

Everything is kept under ``--work`` (benchmark, weights, pixel stores, leaderboards, ground truths, evaluations),
so a rerun resumes. Writes ``evaluations.csv``, ``timings.jsonl`` and ``alternatives.csv`` there; the write-up is
docs/validation.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Run the otce_ray of this checkout, not whatever version is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from otce_ray.finetune import FineTuneSettings  # noqa: E402
from otce_ray.validation import (  # noqa: E402
    INTER, INTRA, Plan, default_settings, rescore, run_validation, summarise,
)
from otce_ray.validation.alternatives import probe_settings  # noqa: E402
from otce_ray.validation.harness import work_dir  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=work_dir())
    parser.add_argument("--seed", type=int, default=0, help="benchmark, training and fine-tuning seed")
    parser.add_argument("--skip-alternatives", action="store_true")
    args = parser.parse_args()
    plan = Plan(seed=args.seed, finetune=FineTuneSettings(eval_images=20, seed=args.seed))
    table, timings = run_validation(plan, args.work)
    otce = table[table["metric"] == "otce"]
    print(otce[["experiment", "target", "pearson", "kendall"]].to_string(index=False))
    print("OTCE mean Pearson over the intra targets:", round(otce[otce.experiment == INTRA].pearson.mean(), 3))
    if not args.skip_alternatives:
        started = time.perf_counter()
        inter = rescore(plan, args.work, probe_settings(), INTER, out=args.work / "alternatives_inter.csv",
                        workers=plan.workers)
        print(summarise(inter).to_string(index=False))
        alternatives = rescore(plan, args.work, default_settings(plan.pixels_per_image),
                               out=args.work / "alternatives.csv", workers=plan.workers)
        print(summarise(alternatives).to_string(index=False))
        print(f"alternatives re-scored in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
