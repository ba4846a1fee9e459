"""The leaderboard as a DataFrame: one row per model, best first, failed models at the bottom.

Score: OTCE = -H(Yt|Ys), higher is better. Statistically indistinguishable models share a ``group``: walking down
the ranking, a model joins the current group when its 95% interval overlaps the interval of the group's first
(best) model, and otherwise starts the next group. Comparing with the group's leader, not with the neighbour
above, keeps one long chain of small overlaps from merging the whole board into a single group. Overlap of two
95% intervals is a conservative test: models in different groups differ clearly; models in one group may or may
not.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from otce_ray.leaderboard.results import ModelResult
from otce_ray.leaderboard.stats import summarize_repeats

COLUMNS = (
    "rank", "group", "model", "architecture", "source", "otce", "otce_std", "otce_sem", "otce_ci_low",
    "otce_ci_high", "n_pixels", "repeats", "repeats_dropped", "solver", "epsilon", "max_marginal_error",
    "extract_seconds",
    "score_seconds", "status", "error", "warnings",
)
WARNING_SEPARATOR = "; "  # a model's warnings in one cell of the ``warnings`` column
# Nullable dtypes, so failed rows hold <NA> and every run writes the same Parquet schema.
_DTYPES = {
    **dict.fromkeys(("rank", "group", "n_pixels", "repeats", "repeats_dropped"), "Int64"),
    **dict.fromkeys(("otce", "otce_std", "otce_sem", "otce_ci_low", "otce_ci_high", "epsilon", "max_marginal_error",
                     "extract_seconds", "score_seconds"), "float64"),
    **dict.fromkeys(("model", "architecture", "source", "solver", "status", "error", "warnings"), "string"),
}


def _row(result: ModelResult) -> dict:
    row = {
        "model": result.model, "architecture": result.architecture, "source": result.source,
        "n_pixels": result.n_pixels, "solver": result.solver, "epsilon": result.epsilon,
        "max_marginal_error": result.max_marginal_error, "extract_seconds": result.extract_seconds,
        "score_seconds": result.score_seconds, "status": result.status, "error": result.error,
        "repeats_dropped": result.repeats_dropped,
        "warnings": WARNING_SEPARATOR.join(result.warnings) or None,
    }
    row.update(result.metrics)
    if result.status == "ok":
        summary = summarize_repeats(result.scores)
        row.update(otce=summary.mean, otce_std=summary.std, otce_sem=summary.sem, otce_ci_low=summary.ci_low,
                   otce_ci_high=summary.ci_high, repeats=summary.repeats)
    return row


def indistinguishable_groups(ci_low: list[float], ci_high: list[float]) -> list[int]:
    """Group numbers (from 1) for rows already sorted best first; see the module docstring for the rule."""
    groups: list[int] = []
    leader_low = None
    for low, high in zip(ci_low, ci_high):
        if leader_low is None or high < leader_low:
            groups.append(groups[-1] + 1 if groups else 1)
            leader_low = low
        else:
            groups.append(groups[-1])
    return groups


def build_leaderboard(results: Iterable[ModelResult]) -> pd.DataFrame:
    """Rank scored models best first (ties by name), add indistinguishable groups, failed models last by name.

    Baseline metrics recorded with the results become float columns after OTCE's interval; each model's warnings
    (why a baseline is NaN, an unconverged repeat, ...) are one ``warnings`` cell, joined by ``WARNING_SEPARATOR``.
    """
    results_list = list(results)
    rows = [_row(r) for r in results_list]
    names = [r["model"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"one result per model, got duplicates of {sorted({n for n in names if names.count(n) > 1})}")
    scored = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (-r["otce"], r["model"]))
    failed = sorted((r for r in rows if r["status"] != "ok"), key=lambda r: r["model"])
    groups = indistinguishable_groups([r["otce_ci_low"] for r in scored], [r["otce_ci_high"] for r in scored])
    for rank, (row, group) in enumerate(zip(scored, groups), start=1):
        row.update(rank=rank, group=group)
    metrics = list(dict.fromkeys(name for result in results_list for name in result.metrics))
    split = COLUMNS.index("otce_ci_high") + 1
    columns = [*COLUMNS[:split], *metrics, *COLUMNS[split:]]
    return pd.DataFrame(scored + failed, columns=columns).astype({**_DTYPES, **dict.fromkeys(metrics, "float64")})


def metric_columns(board: pd.DataFrame) -> list[str]:
    """The baseline metric columns of a leaderboard: every column beyond the fixed ones, in board order."""
    return [column for column in board.columns if column not in COLUMNS]
