"""Regenerate the demo zoo's fine-tuning ground truth, ``otce_ray/zoo/ground_truth.csv``, from its current weights.

    python jobs/zoo_ground_truth.py [--out otce_ray/zoo/ground_truth.csv] [--work DIR]

Every zoo model is fine-tuned on the 20 target images the demo scores (and only those), once per fine-tuning seed,
and evaluated on the target's other 20 images (``otce_ray.zoo.truth``). ``jobs/train_zoo.py`` runs this after
training, so new weights never meet stale ground truth; the demo refuses a file measured on other weights.
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

from otce_ray.zoo import GROUND_TRUTH  # noqa: E402
from otce_ray.zoo.truth import regenerate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=GROUND_TRUTH)
    parser.add_argument("--work", default=None, help="keep the benchmark and per-seed tables here (default: temp)")
    args = parser.parse_args()
    started = time.perf_counter()
    table = regenerate(args.out, args.work)
    print(table[["model", "log_likelihood", "log_likelihood_sd", "miou", "pixel_accuracy", "status"]].to_string(
        index=False))
    seconds = time.perf_counter() - started
    print(f"{len(table)} models x {int(table.seeds.iloc[0])} fine-tuning seeds in {seconds:.0f} s; "
          f"written to {args.out}")
    return 0 if (table.status == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
