"""From a run's files to the paper's analyses: one wide table of scores and ground truth per (seed, experiment,
target, model), then correlations per target, within families, per inter source city, averaged over targets on
Fisher's z scale with block-bootstrap intervals, noise ceilings, and paired tests of OTCE against each baseline.

The ground truth is the mean over fine-tuning seeds of each measure: ``log_likelihood`` (the paper's Definition 1),
``miou`` and ``pixel_accuracy``. Every metric is read as "higher predicts better transfer".
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from otce_ray.datasets.synth import DOMAINS
from otce_ray.evaluation import bootstrap, kendall, pearson
from otce_ray.scoring.baselines import BASELINES
from otce_ray.validation.grid import SCORES, read_scores
from otce_ray.validation.harness import read_truth, seed_dir, target_dir
from otce_ray.validation.plan import EXPERIMENTS, INTER, Plan
from otce_ray.evaluation.across_targets import (
    Block,
    Interval,
    PairedDifference,
    block_draws,
    fisher_z_mean,
    paired_difference,
    percentile_interval,
    replicate_reliability,
    resampled_mean_correlation,
)

MEASURES = ("log_likelihood", "miou", "pixel_accuracy")
FAMILY = "family indicator"  # 1 when the source city's family is the target's: the reference line
INDEX = ["seed", "experiment", "target", "model"]
RESAMPLES = 2000


def seed_table(plan: Plan, seed: int, work: Path) -> pd.DataFrame:
    """One row per (experiment, target, model) of one seed: source city and family, the family indicator, every
    baseline, every OTCE setting scored so far (one column per setting label), the ground truth's mean over
    fine-tuning seeds per measure and its per-seed log-likelihood (``log_likelihood@{seed}``)."""
    frames = []
    for experiment in EXPERIMENTS:
        for target in plan.targets_of(experiment):
            sources = plan.sources_for(experiment, target)
            board = pd.read_csv(target_dir(work, seed, experiment, target) / "leaderboard.csv",
                                dtype={"model": "string"}).set_index("model")
            truth = read_truth(plan, seed, work, experiment, target)
            truth.loc[truth.status != "ok", list(MEASURES)] = np.nan
            means = truth.groupby("model")[list(MEASURES)].mean()
            replicates = truth.pivot(index="model", columns="finetune_seed", values="log_likelihood")
            replicates.columns = [f"log_likelihood@{s}" for s in replicates.columns]
            frame = pd.DataFrame({
                "seed": seed, "experiment": experiment, "target": target.name, "model": [s.name for s in sources],
                "source_city": [s.city for s in sources], "source_family": [DOMAINS[s.city].family for s in sources],
                "target_family": target.family,
            })
            frame[FAMILY] = (frame.source_family == target.family).astype(float)
            ok = board["status"].reindex(frame.model).eq("ok").to_numpy()
            for metric in BASELINES:
                values = board[metric].reindex(frame.model).to_numpy(float) if metric in board else np.nan
                frame[metric] = np.where(ok, values, np.nan)
            frame = frame.join(means, on="model").join(replicates, on="model")
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True).astype({"model": "string", "target": "string"})
    scores = read_scores(seed_dir(work, seed) / SCORES)
    if len(scores):
        wide = scores.pivot_table(index=["target", "model"], columns="setting", values="score", dropna=False)
        table = table.join(wide, on=["target", "model"])
    return table


def replicate_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("log_likelihood@")]


def reliability_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, experiment, target): replicate reliability of the log-likelihood over fine-tuning seeds."""
    rows = []
    for (seed, experiment, target), group in table.groupby(INDEX[:3], sort=False):
        values = group[replicate_columns(table)].dropna().to_numpy().T
        result = replicate_reliability(values)
        rows.append({"seed": seed, "experiment": experiment, "target": target, "models": values.shape[1],
                     "replicates": result.replicates, "pairwise_pearson": result.pairwise_pearson,
                     "icc": result.icc, "ceiling": result.ceiling,
                     "spread": float(np.ptp(values.mean(axis=0))),
                     "seed_sd": float(values.std(axis=0, ddof=1).mean())})
    return pd.DataFrame(rows)


def correlations(table: pd.DataFrame, metrics: Sequence[str], measure: str = "log_likelihood",
                 resamples: int = 1000) -> pd.DataFrame:
    """Per (seed, experiment, target, metric): Pearson and Kendall with their bootstrap intervals over models."""
    rows = []
    for (seed, experiment, target), group in table.groupby(INDEX[:3], sort=False):
        for metric in metrics:
            if metric not in group:
                continue
            x, y = _finite(group[metric], group[measure])
            row = {"seed": seed, "experiment": experiment, "target": target, "metric": metric, "measure": measure,
                   "models": len(x)}
            for name, statistic in (("pearson", pearson), ("kendall", kendall)):
                estimate = bootstrap(statistic, x, y, resamples=resamples)
                row.update({name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high})
            rows.append(row)
    return pd.DataFrame(rows)


def within_family(table: pd.DataFrame, metrics: Sequence[str], measure: str = "log_likelihood") -> pd.DataFrame:
    """Per (seed, experiment, target, metric): Pearson within the real-like and within the game-like sources, and
    their Fisher-z mean: what a metric knows beyond the family split."""
    rows = []
    for (seed, experiment, target), group in table.groupby(INDEX[:3], sort=False):
        for metric in metrics:
            if metric not in group or metric == FAMILY:
                continue
            within = {family: pearson(*_finite(part[metric], part[measure]))
                      for family, part in group.groupby("source_family")}
            rows.append({"seed": seed, "experiment": experiment, "target": target, "metric": metric,
                         **{f"r_{family}": value for family, value in within.items()},
                         "within": fisher_z_mean(list(within.values()))})
    return pd.DataFrame(rows)


def inter_by_source(table: pd.DataFrame, metrics: Sequence[str], measure: str = "log_likelihood") -> pd.DataFrame:
    """The paper's Figs. 4-5: per (seed, target, source city, metric), Pearson over that city's architectures."""
    inter = table[table.experiment == INTER]
    rows = []
    for (seed, target, city), group in inter.groupby(["seed", "target", "source_city"], sort=False):
        for metric in metrics:
            if metric in group and metric != FAMILY:
                x, y = _finite(group[metric], group[measure])
                rows.append({"seed": seed, "target": target, "source_city": city, "metric": metric,
                             "models": len(x), "pearson": pearson(x, y), "kendall": kendall(x, y)})
    return pd.DataFrame(rows)


def _mean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when there is none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _finite(x: pd.Series, y: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    x, y = x.to_numpy(float), y.to_numpy(float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _blocks(table: pd.DataFrame, metrics: Sequence[str], measure: str, group: str | None = None):
    """Blocks (one per seed) for the block bootstrap, over the rows where every metric and the measure are finite;
    ``group`` splits each target further (say, by source city: the inter experiment per source dataset)."""
    blocks, x, y = [], {m: {} for m in metrics}, {}
    keep = table[list(metrics) + [measure]].notna().all(axis=1)
    for b, (_, rows) in enumerate(table[keep].groupby("seed", sort=True)):
        models = tuple(dict.fromkeys(rows.model))
        position = {model: i for i, model in enumerate(models)}
        keys = ["target"] if group is None else ["target", group]
        targets = {}
        for key, part in rows.groupby(keys, sort=False):
            name = key if isinstance(key, str) else "/".join(map(str, key))
            targets[name] = np.array([position[m] for m in part.model])
            y[(b, name)] = part[measure].to_numpy(float)
            for metric in metrics:
                x[metric][(b, name)] = part[metric].to_numpy(float)
        blocks.append(Block(models, targets))
    return blocks, x, y


def mean_correlations(table: pd.DataFrame, metrics: Sequence[str], measure: str = "log_likelihood",
                      baseline_of: str | None = None, group: str | None = None,
                      resamples: int = RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per metric: the Fisher-z mean Pearson over every (seed, target) of ``table``, its 95% block-bootstrap
    interval, the mean Kendall, and with ``baseline_of`` (a metric) the paired difference of ``baseline_of`` minus
    each metric on the same resamples (positive: ``baseline_of`` predicts better). Rows where any listed metric is
    missing are left out of every metric, so all of them are judged on the same (model, target) rows."""
    listed = list(dict.fromkeys([*metrics, *([baseline_of] if baseline_of else [])]))
    blocks, x, y = _blocks(table, listed, measure, group)
    if not blocks:
        return pd.DataFrame()
    draws = block_draws(blocks, resamples, seed)
    resampled = {m: resampled_mean_correlation(blocks, x[m], y, draws) for m in listed}
    point = {m: fisher_z_mean([pearson(x[m][k], y[k]) for k in y]) for m in listed}
    rows = []
    for metric in metrics:
        interval: Interval = percentile_interval(point[metric], resampled[metric])
        row = {"metric": metric, "pearson": interval.value, "low": interval.low, "high": interval.high,
               "kendall": _mean([kendall(x[metric][k], y[k]) for k in y]), "cells": len(y)}
        if baseline_of and metric != baseline_of:
            test: PairedDifference = paired_difference(resampled[baseline_of], resampled[metric],
                                                       point[baseline_of], point[metric])
            row.update({"difference": test.difference, "difference_low": test.low, "difference_high": test.high,
                        "p_value": test.p_value})
        rows.append(row)
    return pd.DataFrame(rows)


def mean_ceiling(reliability: pd.DataFrame, experiment: str, seeds: Iterable[int]) -> float:
    """The Fisher-z mean noise ceiling over an experiment's targets and seeds."""
    rows = reliability[(reliability.experiment == experiment) & reliability.seed.isin(list(seeds))]
    return fisher_z_mean(rows.ceiling.to_numpy())
