"""The consensus of metrics: one ordering from several transferability scores, defined once.

No metric wins everywhere (Agostinelli et al., ECCV 2022), and on the project's own held-out validation (v2) cheaper
baselines ranked better than OTCE in two of three scenarios. A rank aggregation is the standard hedge: here the
mean normalised rank (Borda count) over OTCE and the three baselines that were strongest across all three v2
experiments (H-score with shrinkage, LogME, N-LEEP). Ranks, not values, so no metric's scale dominates. The
validation pre-registers this definition and tests it on fresh benchmark seeds (docs/validation/preregistration.md);
the leaderboard and the validation both call ``consensus`` from here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

CONSENSUS_METRICS = ("otce", "hscore_shrinkage", "logme", "nleep")


def consensus(scores: pd.DataFrame, metrics: Sequence[str] = CONSENSUS_METRICS) -> pd.Series:
    """Each row's (model's) mean normalised rank over ``metrics``: in [0, 1], 1 for the model every metric ranks
    first, higher is better like every metric.

    Per metric (a column of ``scores``; absent columns are skipped): the models with a finite value are ranked
    (ties share their average rank) and the ranks scaled to [0, 1] (worst 0, best 1; 0.5 when one model has a value);
    a model's consensus is the mean over the metrics it has a finite value for, NaN when it has none.

    >>> table = pd.DataFrame({"otce": [-1.0, -2.0, -3.0], "logme": [0.5, 0.9, 0.1]}, index=["a", "b", "c"])
    >>> consensus(table).round(2).tolist()
    [0.75, 0.75, 0.0]
    """
    present = [metric for metric in metrics if metric in scores.columns]
    normalised = []
    for metric in present:
        values = pd.to_numeric(scores[metric], errors="coerce").where(lambda column: np.isfinite(column))
        ranks = values.rank(method="average")
        count = values.notna().sum()
        normalised.append((ranks - 1) / (count - 1) if count > 1 else ranks.where(ranks.isna(), 0.5))
    if not normalised:
        return pd.Series(np.nan, index=scores.index, name="consensus")
    return pd.concat(normalised, axis=1).mean(axis=1, skipna=True).rename("consensus")
