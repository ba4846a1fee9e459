"""The leaderboard as a DataFrame: one row per model, best first, stopped (racing) and failed models at the bottom.

Score: OTCE = -H(Yt|Ys), higher is better. Statistically indistinguishable models share a ``group``: walking down
the ranking, a model joins the current group when its 95% interval overlaps the interval of the group's first
(best) model, and otherwise starts the next group. Comparing with the group's leader, not with the neighbour
above, keeps one long chain of small overlaps from merging the whole board into a single group. Overlap of two
95% intervals is a conservative test: models in different groups differ clearly; models in one group may or may
not. A model without an interval (its repeats drew the same pixels, so they agree exactly) has no group and never
starts one: nothing says whether it differs from its neighbours.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import pandas as pd

from otce_ray.leaderboard.columns import board_columns
from otce_ray.leaderboard.consensus import consensus
from otce_ray.leaderboard.decisions import DecisionSettings, top_probabilities
from otce_ray.leaderboard.results import SCORED, ModelResult
from otce_ray.scoring.summary import summarize_repeats

WARNING_SEPARATOR = "; "  # a model's warnings in one cell of the ``warnings`` column


def _row(result: ModelResult) -> dict:
    row = {
        "model": result.model, "architecture": result.architecture, "source": result.source,
        "n_source": result.n_source, "n_target": result.n_target, "estimator": result.estimator,
        "max_marginal_error": result.max_marginal_error, "extract_seconds": result.extract_seconds,
        "score_seconds": result.score_seconds, "status": result.status, "error": result.error,
        "repeats_dropped": result.repeats_dropped, "params": result.params,
        "warnings": WARNING_SEPARATOR.join(result.warnings) or None,
    }
    row.update(result.metrics)
    if result.racing:
        row.update(race_stage=result.racing["stage"], race_bound=result.racing["bound"])
    if result.status in SCORED:
        summary = summarize_repeats(result.scores)
        row.update(otce=summary.mean, otce_std=summary.std, otce_sem=summary.sem, otce_ci_low=summary.ci_low,
                   otce_ci_high=summary.ci_high, repeats=summary.repeats)
        if result.identical_repeats:
            row.update(otce_ci_low=math.nan, otce_ci_high=math.nan)
    return row


def indistinguishable_groups(ci_low: list[float], ci_high: list[float]) -> list[int | None]:
    """Group numbers (from 1) for rows already sorted best first; see the module docstring for the rule. A row
    without an interval (NaN) gets None."""
    groups: list[int | None] = []
    leader_low, current = None, 0
    for low, high in zip(ci_low, ci_high):
        if math.isnan(low) or math.isnan(high):
            groups.append(None)
            continue
        if leader_low is None or high < leader_low:
            current += 1
            leader_low = low
        groups.append(current)
    return groups


def build_leaderboard(results: Iterable[ModelResult], priors: Mapping[str, float | None] | None = None,
                      decisions: DecisionSettings | None = None) -> pd.DataFrame:
    """Rank scored models best first (ties by name), add indistinguishable groups; then the models a race stopped,
    by their stage score (never ranked: a stage score is no full-budget score), and failed models last by name.

    Baseline metrics recorded with the results become float columns after OTCE's own; each model's warnings (why a
    baseline is NaN, an unconverged repeat, ...) are one ``warnings`` cell, joined by ``WARNING_SEPARATOR``. Scored
    models also get ``p_best``/``p_top_k`` (``otce_ray.leaderboard.decisions.top_probabilities`` under
    ``decisions``) and their ``consensus``; ``priors`` (model -> the number its spec gives, if any) fill ``prior``.
    The columns are ``otce_ray.leaderboard.columns``'.
    """
    results_list = list(results)
    decisions = decisions or DecisionSettings()
    rows = [{**_row(r), "prior": (priors or {}).get(r.model)} for r in results_list]
    names = [r["model"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"one result per model, got duplicates of {sorted({n for n in names if names.count(n) > 1})}")
    scored = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (-r["otce"], r["model"]))
    stopped = sorted((r for r in rows if r["status"] == "stopped"), key=lambda r: (-r["otce"], r["model"]))
    failed = sorted((r for r in rows if r["status"] == "failed"), key=lambda r: r["model"])
    groups = indistinguishable_groups([r["otce_ci_low"] for r in scored], [r["otce_ci_high"] for r in scored])
    chances = top_probabilities({r.model: r.scores for r in results_list if r.status == "ok"}, decisions.top_k,
                                resamples=decisions.resamples, seed=decisions.seed)
    for rank, (row, group) in enumerate(zip(scored, groups), start=1):
        row.update(rank=rank, group=group, **chances.loc[row["model"]].to_dict())
    columns = board_columns(dict.fromkeys(name for result in results_list for name in result.metrics))
    frame = pd.DataFrame(scored + stopped + failed, columns=[column.name for column in columns])
    frame = frame.astype({column.name: column.dtype for column in columns})
    frame["consensus"] = consensus(frame.iloc[:len(scored)]).reindex(frame.index)
    return frame
