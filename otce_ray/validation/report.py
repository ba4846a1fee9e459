"""Every table of the validation write-up, in Markdown, from the files of a run (``report.md`` under the work
folder; docs/validation.md quotes it).

Correlations are Pearson with the mean fine-tuned log-likelihood unless a table says otherwise; "mean" is the
Fisher-z mean over targets (and seeds), its interval the 95% block bootstrap of
:mod:`otce_ray.evaluation.across_targets`; the noise ceiling is printed beside each correlation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from otce_ray.evaluation import pearson
from otce_ray.evaluation.across_targets import fisher_z_mean
from otce_ray.scoring.baselines import BASELINES
from otce_ray.validation.analysis import (
    FAMILY,
    MEASURES,
    correlations,
    inter_by_source,
    mean_ceiling,
    mean_correlations,
    reliability_table,
    seed_table,
    within_family,
)
from otce_ray.validation.choice import CHOICE, read_choice
from otce_ray.validation.grid import SCORES, read_scores
from otce_ray.validation.harness import seed_dir
from otce_ray.validation.plan import CROSS, EXPERIMENTS, INTER, INTRA, Plan

REPORT = "report.md"


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _r(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.2f}"


def _interval(row: pd.Series, value: str = "pearson", low: str = "low", high: str = "high") -> str:
    return f"{_r(row[value])} [{_r(row[low])}, {_r(row[high])}]"


def summary(table: pd.DataFrame, metrics: Sequence[str], experiment: str, reference: str,
            reliability: pd.DataFrame, measure: str = "log_likelihood", group: str | None = None) -> str:
    """Mean Pearson per metric over the experiment's (seed, target) cells with its interval, mean Kendall, the noise
    ceiling, and the paired difference of ``reference`` minus the metric (p: two-sided bootstrap)."""
    rows = table[table.experiment == experiment]
    result = mean_correlations(rows, metrics, measure, baseline_of=reference, group=group)
    ceiling = mean_ceiling(reliability, experiment, rows.seed.unique()) if measure == "log_likelihood" else np.nan
    out = pd.DataFrame({
        "metric": result.metric,
        "mean Pearson [95%]": [_interval(row) for _, row in result.iterrows()],
        "noise ceiling": _r(ceiling),
        "mean Kendall": result.kendall.map(_r),
        f"{reference.split(',')[0]} minus metric [95%]": [
            "" if row.metric == reference else _interval(row, "difference", "difference_low", "difference_high")
            for _, row in result.iterrows()],
        "p": ["" if row.metric == reference else f"{row.p_value:.3f}" for _, row in result.iterrows()],
    })
    return markdown(out.iloc[np.argsort(-result.pearson.to_numpy(), kind="stable")])


def per_target(table: pd.DataFrame, metrics: Sequence[str], experiment: str, reliability: pd.DataFrame) -> str:
    """Pearson per (seed, target) with its bootstrap interval over models, and the target's noise ceiling."""
    rows = correlations(table[table.experiment == experiment], metrics)
    rows = rows.merge(reliability[["seed", "experiment", "target", "ceiling"]], on=["seed", "experiment", "target"])
    rows["cell"] = [f"{_r(r.pearson)} [{_r(r.pearson_low)}, {_r(r.pearson_high)}]" for r in rows.itertuples()]
    wide = rows.pivot_table(index="metric", columns=["seed", "target"], values="cell", aggfunc="first",
                            sort=False).reindex(metrics)
    ceilings = rows.drop_duplicates(["seed", "target"]).set_index(["seed", "target"]).ceiling
    wide.loc["noise ceiling"] = [_r(ceilings[key]) for key in wide.columns]
    wide.columns = [f"{target} (seed {seed})" for seed, target in wide.columns]
    return markdown(wide.reset_index())


def within_families(table: pd.DataFrame, metrics: Sequence[str], experiment: str) -> str:
    """Pooled mean Pearson beside the mean of the within-family correlations."""
    rows = table[table.experiment == experiment]
    pooled = correlations(rows, metrics, resamples=1).groupby("metric", sort=False).pearson.apply(fisher_z_mean)
    within = within_family(rows, metrics)
    families = [c for c in within.columns if c.startswith("r_")]
    means = within.groupby("metric", sort=False)[[*families, "within"]].agg(fisher_z_mean)
    out = pd.DataFrame({"metric": list(metrics), "pooled": [_r(pooled.get(m, np.nan)) for m in metrics]})
    for column in [*families, "within"]:
        label = "within families (mean)" if column == "within" else f"within {column[2:]} sources"
        out[label] = [_r(means[column].get(m, np.nan)) if m in means.index else "n/a" for m in metrics]
    return markdown(out)


def inter_per_source(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    """The paper's Figs. 4-5: Fisher-z mean Pearson over the architectures of each source city, over targets."""
    rows = inter_by_source(table, metrics)
    means = rows.groupby(["metric", "source_city"], sort=False).pearson.apply(fisher_z_mean).unstack()
    kendalls = rows.groupby(["metric", "source_city"], sort=False).kendall.mean().unstack()
    out = pd.DataFrame({"metric": [m for m in metrics if m in means.index]})
    for city in means.columns:
        out[f"from {city}: mean Pearson"] = [_r(means.loc[m, city]) for m in out.metric]
        out[f"from {city}: mean Kendall"] = [_r(kendalls.loc[m, city]) for m in out.metric]
    return markdown(out)


def measures_table(table: pd.DataFrame, metrics: Sequence[str], experiment: str) -> str:
    """Mean Pearson of each metric with each ground-truth measure."""
    rows = table[table.experiment == experiment]
    out = pd.DataFrame({"metric": list(metrics)})
    for measure in MEASURES:
        result = mean_correlations(rows, metrics, measure).set_index("metric")
        out[measure] = [_interval(result.loc[m]) for m in metrics]
    return markdown(out)


def reliability_markdown(reliability: pd.DataFrame) -> str:
    out = reliability.assign(**{column: reliability[column].map(lambda v: f"{v:.3f}")
                                for column in ("pairwise_pearson", "icc", "ceiling", "spread", "seed_sd")})
    return markdown(out.rename(columns={"pairwise_pearson": "seed-to-seed Pearson", "icc": "ICC(1,k)",
                                       "ceiling": "noise ceiling", "spread": "range of mean ll (nats)",
                                       "seed_sd": "mean sd over seeds (nats)"}))


def grid_table(table: pd.DataFrame, scores: pd.DataFrame, reliability: pd.DataFrame) -> str:
    """Every setting scored on the selection seeds: mean Pearson per experiment, cost and convergence."""
    out = []
    for setting, rows in scores.groupby("setting", sort=False):
        row = {"setting": setting, "seconds per repeat": f"{rows.seconds_per_repeat.mean():.2f}",
               "repeats dropped": f"{int(rows.dropped.sum())} of {int(rows.repeats.sum())}",
               "failed": int(rows.score.isna().sum())}
        for experiment in EXPERIMENTS:
            mine = rows[rows.experiment == experiment]
            cells = table[(table.experiment == experiment)]
            if len(mine) == 0:
                row[experiment] = "not run"
                continue
            covered = cells.merge(mine[["seed", "target"]].drop_duplicates(), on=["seed", "target"])
            result = mean_correlations(covered, [setting]).iloc[0]
            partial = "" if len(mine) == len(cells) else (
                f" (seeds {', '.join(map(str, sorted(mine.seed.unique())))}; {mine.target.nunique()} targets)")
            row[experiment] = _interval(result) + partial
        out.append(row)
    return markdown(pd.DataFrame(out))


def scatter_grid(table: pd.DataFrame, metrics: Sequence[str], experiment: str, path: Path) -> Path:
    """One panel per (seed, target) and metric: the metric against the mean log-likelihood, real-like sources in
    one colour and game-like in another, Pearson in the title."""
    from matplotlib.figure import Figure

    rows = table[table.experiment == experiment]
    cells = list(rows.groupby(["seed", "target"], sort=False))
    figure = Figure(figsize=(2.6 * len(cells), 2.4 * len(metrics)), dpi=90, layout="constrained")
    axes = figure.subplots(len(metrics), len(cells), squeeze=False)
    colours = {"real-like": "#1f4e9c", "game-like": "#c0392b"}
    for i, metric in enumerate(metrics):
        for j, ((seed, target), part) in enumerate(cells):
            ax = axes[i][j]
            for family, points in part.groupby("source_family"):
                ax.scatter(points[metric], points.log_likelihood, s=14, color=colours.get(family, "grey"),
                           label=family)
            ax.set_title(f"{target} (seed {seed}): r {_r(pearson(*_pair(part, metric)))}", fontsize=8)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel(f"{metric.split(',')[0]}\nll after fine-tuning", fontsize=7)
    axes[0][0].legend(fontsize=6)
    figure.savefig(path, format="png")
    return path


def _pair(part: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    keep = part[[metric, "log_likelihood"]].dropna()
    return keep[metric].to_numpy(float), keep.log_likelihood.to_numpy(float)


def timings_markdown(work: Path) -> str:
    path = Path(work) / "timings.jsonl"
    if not path.exists():
        return "(no timings recorded)"
    steps = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    first = steps.groupby("step", sort=False).seconds.max().reset_index()  # the call that did the work
    return markdown(first.assign(seconds=first.seconds.map(lambda s: f"{s:,.0f}"))) + (
        f"\n\nSum of the steps: {first.seconds.sum() / 3600:.2f} h.")


def write_report(plan: Plan, work: Path, selection: Sequence[int], held_out: Sequence[int]) -> Path:
    """Write ``report.md`` under ``work`` and return its path."""
    work = Path(work)
    chosen, held_out_settings = read_choice(work / CHOICE)
    record = json.loads((work / CHOICE).read_text())
    metrics = [s.label for s in held_out_settings] + list(BASELINES) + [FAMILY]
    parts = [f"# Validation report\n\nSelection seeds {list(selection)}, held-out seeds {list(held_out)}. "
             f"Chosen on the selection seeds: **{chosen.label}**.\n\n{record['rule']}"]
    picked = pd.DataFrame(record["candidates"])
    parts.append("## Candidates on the selection seeds (intra, mean Pearson)\n\n" + markdown(pd.DataFrame({
        "setting": picked.setting, "eligible": picked.eligible,
        "mean Pearson [95%]": [_interval(row) for _, row in picked.iterrows()],
        "seconds per repeat": picked.seconds_per_repeat.map(lambda s: f"{s:.2f}")})))
    for name, seeds in (("held-out", held_out), ("selection", selection)):
        present = [s for s in seeds if (seed_dir(work, s) / SCORES).exists()]
        if not present:
            continue
        table = pd.concat([seed_table(plan, s, work) for s in present], ignore_index=True)
        reliability = reliability_table(table)
        here = [m for m in metrics if m in table.columns]
        parts.append(f"## {name.capitalize()} seeds {present}")
        for experiment in EXPERIMENTS:
            parts.append(f"### {experiment}: mean over targets\n\n"
                         + summary(table, here, experiment, chosen.label, reliability))
        parts.append("### inter, per source city (the paper's Figs. 4-5)\n\n"
                     + inter_per_source(table, [m for m in here if m != FAMILY])
                     + "\n\n" + summary(table, [m for m in here if m != FAMILY], INTER, chosen.label, reliability,
                                        group="source_city"))
        for experiment in (INTRA, CROSS):
            parts.append(f"### {experiment}: pooled and within families\n\n"
                         + within_families(table, here, experiment))
        parts.append("### intra: every ground-truth measure\n\n" + measures_table(table, here, INTRA))
        for experiment in EXPERIMENTS:
            parts.append(f"### {experiment}: per target\n\n" + per_target(table, here, experiment, reliability))
        parts.append("### Ground-truth reliability\n\n" + reliability_markdown(reliability))
        figure = scatter_grid(table, [chosen.label, "nleep"], INTRA, work / f"intra_{name}.png")
        parts.append(f"![intra, {name} seeds: chosen OTCE and N-LEEP against the ground truth]({figure.name})")
        if name == "selection":
            scores = pd.concat([read_scores(seed_dir(work, s) / SCORES) for s in present], ignore_index=True)
            parts.append("### The estimator grid\n\n" + grid_table(table, scores, reliability))
    parts.append("## Timings (s)\n\n" + timings_markdown(work))
    path = work / REPORT
    path.write_text("\n\n".join(parts) + "\n")
    return path
