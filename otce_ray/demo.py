"""``otce-ray demo``: the embedded default, with nothing to download or configure.

It writes the procedural benchmark the shipped zoo was trained on (or reuses one already under ``DIR/benchmark``
with the same settings), scores every zoo model against the zoo's target city on a local Ray, and prints the
leaderboard. The zoo holds each architecture trained on a source near the target (same family and condition), one
of the same family only, and two of the other family, so the ranking can be read against known domain distances:
same-family sources should come first. OTCE settings are sized to finish in under 3 minutes on a 2-core laptop.

The target is scored on the 20 images the shipped ground truth fine-tuned on, never on the images it was evaluated
on (the leakage-free protocol, :mod:`otce_ray.zoo.truth`), so the closing correlation table is a fair test.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd

from otce_ray.config import parse_config
from otce_ray.datasets.synth import DOMAINS
from otce_ray.evaluation import evaluate_to
from otce_ray.evaluation.across_targets import replicate_reliability
from otce_ray.zoo import GROUND_TRUTH
from otce_ray.zoo.run_config import demo_config
from otce_ray.zoo.truth import stale_models


def run_demo(out_dir: str) -> int:
    """Run the demo into ``out_dir`` and print the leaderboard; 0 when every model was scored."""
    import ray

    from otce_ray.pipeline import run

    started = time.perf_counter()
    config = parse_config(demo_config(out_dir), base_dir=os.path.abspath(out_dir))
    target = DOMAINS[config.target["name"]]
    print(f"scoring {len(config.models)} zoo models against target city {target.name} ({target.family}, "
          f"{target.condition}): OTCE over {config.otce.n_pixels} pixels x {config.otce.repeats} repeats")
    owns_ray = not ray.is_initialized()
    if owns_ray:  # local even when RAY_ADDRESS names a cluster: the demo's files are on this machine
        ray.init(address="local", log_to_driver=False)
    try:
        board = run(config, progress=True)
    finally:
        if owns_ray:
            ray.shutdown()
    print(demo_table(board, target.name))
    evaluation_dir = os.path.join(os.path.abspath(out_dir), "evaluation")
    truth = pd.read_csv(GROUND_TRUTH)
    stale = stale_models(truth)
    if stale:
        print(f"\nThe shipped ground truth was measured on other weights than {', '.join(stale)}: rerun "
              "`python jobs/zoo_ground_truth.py` (no correlation table until then).")
    else:
        evaluation = evaluate_to(evaluation_dir, board, truth)
        print(f"\nDo the scores predict transfer? Correlation with the shipped fine-tuning ground truth "
              f"(log-likelihood on {target.name} images the scores never saw, mean over {int(truth.seeds.iloc[0])} "
              "fine-tuning seeds), 95% bootstrap intervals:")
        print(evaluation_summary(evaluation))
        print(noise_ceiling_line(truth))
    print(f"\nleaderboard (csv, parquet, md, html) and run.json: {config.output}")
    if not stale:
        print(f"evaluation (csv, scatter plots, html): {evaluation_dir}")
    print(f"pixel stores: {config.store}\nbenchmark: {config.target['root']}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0 if (board["status"] == "ok").all() else 1


def evaluation_summary(evaluation: pd.DataFrame) -> str:
    """One line per metric, best Pearson first: Pearson and Kendall with intervals, relative top-1."""
    def interval(row: Any, name: str) -> str:
        return f"{row[name]:+.2f} [{row[name + '_low']:+.2f}, {row[name + '_high']:+.2f}]"

    rows = evaluation.sort_values("pearson", ascending=False, na_position="last")
    return pd.DataFrame({
        "metric": rows["metric"],
        "Pearson": [interval(row, "pearson") for _, row in rows.iterrows()],
        "Kendall": [interval(row, "kendall") for _, row in rows.iterrows()],
        "top-1 relative": [f"{value:.3f}" for value in rows["top1_relative"]],
    }).to_string(index=False)


def noise_ceiling_line(truth: pd.DataFrame) -> str:
    """How repeatable the ground truth is over its fine-tuning seeds, and the highest Pearson it allows."""
    replicates = truth[[c for c in truth.columns if c.startswith("log_likelihood@")]].dropna().to_numpy().T
    reliability = replicate_reliability(replicates)
    return (f"noise ceiling: the fine-tuning seeds agree with each other at Pearson {reliability.pairwise_pearson:.3f}"
            f"; no score can correlate above {reliability.ceiling:.3f} with their mean")


def demo_table(board: pd.DataFrame, target: str) -> str:
    """The leaderboard's key columns, each source placed against the target: near (same family and condition),
    same family, same condition, or far."""
    target_domain = DOMAINS[target]

    def source(city: str) -> str:
        domain = DOMAINS[city]
        return f"{city} ({domain.family}, {domain.condition})"

    def relation(city: str) -> str:
        same = (DOMAINS[city].family == target_domain.family, DOMAINS[city].condition == target_domain.condition)
        return {(True, True): "near", (True, False): "same family", (False, True): "same condition"}.get(same, "far")

    def score(row: Any) -> str:
        if row.status != "ok":
            return ""
        return f"{row.otce:.4f} [{row.otce_ci_low:.4f}, {row.otce_ci_high:.4f}]"

    table = pd.DataFrame({
        "rank": board["rank"].astype("string").fillna(""),
        "group": board["group"].astype("string").fillna(""),
        "model": board["model"],
        "architecture": board["architecture"].fillna(""),
        "source": board["source"].map(source),
        "vs target": board["source"].map(relation),
        "OTCE [95% interval]": [score(row) for row in board.itertuples(index=False)],
        "status": [row.status if row.status == "ok" else f"{row.status}: {row.error}"
                   for row in board.itertuples(index=False)],
    })
    return table.to_string(index=False)
