"""Markdown tables of a validation run (``evaluations.csv``, ``timings.jsonl``, ``alternatives.csv`` under the work
folder), for docs/validation.md."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from otce_ray.validation.alternatives import summarise
from otce_ray.validation.harness import INTER, INTRA, TIMINGS


def _cell(row: pd.Series, name: str) -> str:
    if pd.isna(row[name]):
        return "n/a"
    return f"{row[name]:+.2f} [{row[name + '_low']:+.2f}, {row[name + '_high']:+.2f}]"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def correlation_tables(evaluations: pd.DataFrame, experiment: str) -> str:
    """Per metric (rows) and target (columns): Pearson, then Kendall, with intervals; plus the mean over targets."""
    rows = evaluations[evaluations.experiment == experiment]
    targets = list(dict.fromkeys(rows.target))
    out = []
    for statistic in ("pearson", "kendall"):
        table = {"metric": [], **{t: [] for t in targets}, "mean": []}
        for metric, group in rows.groupby("metric", sort=False):
            by_target = group.set_index("target")
            table["metric"].append(metric)
            for target in targets:
                table[target].append(_cell(by_target.loc[target], statistic))
            table["mean"].append(f"{by_target[statistic].mean():+.3f}")
        frame = pd.DataFrame(table)
        order = frame["mean"].astype(float).sort_values(ascending=False).index
        out.append(f"**{statistic.capitalize()}** (95% bootstrap interval; mean over targets)\n\n"
                   + _markdown(frame.loc[order]))
    return "\n\n".join(out)


def timing_table(timings: dict) -> str:
    """Seconds per (experiment, target) step."""
    frame = pd.DataFrame(timings["targets"])[["experiment", "target", "models", "score_seconds",
                                               "finetune_seconds", "evaluate_seconds"]]
    return _markdown(frame)


def alternatives_table(alternatives: pd.DataFrame) -> str:
    """Mean Pearson and Kendall of OTCE over the targets per setting."""
    summary = summarise(alternatives)
    per_target = alternatives.pivot_table(index="setting", columns="target", values="pearson", sort=False)
    frame = pd.DataFrame({
        "setting": summary.setting,
        "mean Pearson": summary.pearson.map("{:+.3f}".format),
        "mean Kendall": summary.kendall.map("{:+.3f}".format),
        "Pearson per target": [", ".join(f"{t} {v:+.2f}" for t, v in per_target.loc[s].items())
                               for s in summary.setting],
    })
    return _markdown(frame)


def validation_markdown(work: Path) -> str:
    """Every table of the write-up from the files of one run."""
    work = Path(work)
    evaluations = pd.read_csv(work / "evaluations.csv")
    timings = json.loads((work / TIMINGS).read_text().splitlines()[0])  # the first call did the work
    parts = [f"### Intra-dataset\n\n{correlation_tables(evaluations, INTRA)}",
             f"### Inter-dataset\n\n{correlation_tables(evaluations, INTER)}",
             f"### Timings (s)\n\nbenchmark {timings['benchmark_seconds']}, training {timings['train_seconds']}\n\n"
             + timing_table(timings)]
    for experiment in (INTRA, INTER):
        path = work / ("alternatives.csv" if experiment == INTRA else f"alternatives_{experiment}.csv")
        if path.exists():
            parts.append(f"### Alternatives ({experiment})\n\n" + alternatives_table(pd.read_csv(path)))
    return "\n\n".join(parts) + "\n"
