"""Join a leaderboard with fine-tuning ground truth and measure, per metric, how well it predicts transfer.

Only models with ``status == ok`` take part: a failed model has no score to judge. Every metric is read as
"higher predicts better transfer" (OTCE and all baselines are oriented that way).
"""

from __future__ import annotations

import functools
import io
from typing import Sequence

import numpy as np
import pandas as pd

from otce_ray import fs
from otce_ray.scoring.baselines import BASELINES
from otce_ray.evaluation.measures import (
    RESAMPLES,
    Measure,
    bootstrap,
    degenerate_reason,
    kendall,
    pearson,
    spearman,
    top1_reason,
    top1_relative,
    weighted_kendall,
)

# Leaderboard columns that hold a transferability score: OTCE and every baseline of the registry.
METRICS = ("otce", *BASELINES)
# Ground-truth measures on a log scale: top1_relative compares them as exp(value) (see measures.top1_relative).
LOG_MEASURES = frozenset({"log_likelihood"})
STATISTICS = ("pearson", "spearman", "kendall", "weighted_kendall", "top1_relative")
COLUMNS = ("metric", "measure", "n_models",
           *(f"{name}{suffix}" for name in STATISTICS for suffix in ("", "_low", "_high")), "note")


def read_table(uri: str) -> pd.DataFrame:
    """A CSV or Parquet file (by extension), local or s3://; model names stay the strings they are (a model named
    ``NA``, ``null`` or ``None`` is that model, not a missing value)."""
    raw = fs.read_bytes(uri)
    suffix = str(uri).lower().rsplit(".", 1)[-1]
    if suffix == "parquet":
        return pd.read_parquet(io.BytesIO(raw))
    if suffix != "csv":
        raise ValueError(f"{uri}: expected a .csv or .parquet file")
    table = pd.read_csv(io.BytesIO(raw), dtype={"model": "string"})
    if "model" in table.columns:
        table["model"] = pd.read_csv(io.BytesIO(raw), usecols=["model"], dtype="string", keep_default_na=False)
    return table


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def _require_unique(models: pd.Series, what: str) -> None:
    duplicated = sorted(set(models[models.duplicated()]))
    if duplicated:
        raise ValueError(f"{what} has more than one row for model(s) {duplicated}")


def metric_columns(leaderboard: pd.DataFrame, metrics: Sequence[str] | None = None) -> list[str]:
    """The metrics to evaluate: ``metrics`` (each must be a numeric column), or every known one present."""
    if metrics is None:
        found = [m for m in METRICS if m in leaderboard.columns and pd.api.types.is_numeric_dtype(leaderboard[m])]
        if not found:
            raise ValueError(f"leaderboard has no numeric metric column; looked for {list(METRICS)}")
        return found
    _require(leaderboard, metrics, "leaderboard")
    not_numeric = [m for m in metrics if not pd.api.types.is_numeric_dtype(leaderboard[m])]
    if not_numeric:
        raise ValueError(f"metric column(s) {not_numeric} are not numeric")
    return list(metrics)


def join_ground_truth(leaderboard: pd.DataFrame, ground_truth: pd.DataFrame, *,
                      target_measure: str = "log_likelihood", metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per ok model, leaderboard order: ``model``, the metric columns, then ``target_measure``.

    Every ok model needs a ground-truth row (an error names those without); ground-truth rows for models that are
    not on the leaderboard, or failed there, are ignored.
    """
    _require(leaderboard, ["model", "status"], "leaderboard")
    _require(ground_truth, ["model", target_measure], "ground truth")
    if not pd.api.types.is_numeric_dtype(ground_truth[target_measure]):
        raise ValueError(f"ground-truth column {target_measure!r} is not numeric")
    columns = metric_columns(leaderboard, metrics)
    scored = leaderboard.loc[leaderboard["status"] == "ok", ["model", *columns]].astype({"model": "string"})
    truth = ground_truth[["model", target_measure]].astype({"model": "string"})
    _require_unique(scored["model"], "leaderboard")
    _require_unique(truth["model"], "ground truth")
    missing = sorted(set(scored["model"]) - set(truth["model"]))
    if missing:
        raise ValueError(f"ground truth has no row for model(s) {missing}")
    return scored.merge(truth, on="model", how="left").reset_index(drop=True)


def _statistics(log_scale: bool) -> dict[str, Measure]:
    top1 = functools.partial(top1_relative, log_scale=log_scale)
    return dict(zip(STATISTICS, (pearson, spearman, kendall, weighted_kendall, top1)))


def _metric_row(metric: str, merged: pd.DataFrame, measure: str, *, seed: int, resamples: int) -> dict:
    x = merged[metric].to_numpy(dtype=float, na_value=np.nan)
    y = merged[measure].to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    log_scale = measure in LOG_MEASURES
    notes = [f"{int((~finite).sum())} model(s) without a value left out"] if not finite.all() else []
    reason = degenerate_reason(x, y) or top1_reason(y, log_scale=log_scale)
    notes += [reason] if reason else []
    row: dict = {"metric": metric, "measure": measure, "n_models": len(x)}
    for name, statistic in _statistics(log_scale).items():
        estimate = bootstrap(statistic, x, y, resamples=resamples, seed=seed)
        row.update({name: estimate.value, f"{name}_low": estimate.low, f"{name}_high": estimate.high})
    return {**row, "note": "; ".join(notes)}


def evaluate(leaderboard: pd.DataFrame, ground_truth: pd.DataFrame, *, target_measure: str = "log_likelihood",
             metrics: Sequence[str] | None = None, seed: int = 0, resamples: int = RESAMPLES) -> pd.DataFrame:
    """One row per metric (``COLUMNS``): each statistic with its bootstrap interval, and a note on what is undefined.

    Each metric is bootstrapped with the same seed, so its interval does not depend on which other metrics are
    evaluated alongside it.
    """
    merged = join_ground_truth(leaderboard, ground_truth, target_measure=target_measure, metrics=metrics)
    rows = [_metric_row(metric, merged, target_measure, seed=seed, resamples=resamples)
            for metric in merged.columns[1:-1]]
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype({"n_models": "int64"})
