"""Inference over cells of (benchmark seed, target), each ranking a set of source models: pure functions.

A mean over cells is not an average of independent numbers: targets of one seed share their source models, and a
new benchmark seed is a new draw of everything. The hierarchical bootstrap resamples what varies: benchmark seeds
with replacement, then, for each seed drawn, its targets with replacement and its source models with replacement
(one draw of models shared by that seed's targets, a model drawn twice counting twice). Every statistic is computed
on the same resamples (``draw_plans``), so the difference of two metrics is a paired comparison. Intervals are BCa
(bias-corrected and accelerated; the acceleration from the jackknife over seeds), equivalence is TOST on the 90%
interval, and a family of tests is corrected by Holm.

Per-cell statistics of a metric ``x`` against a ground truth ``y`` under model weights ``w``: Pearson
(``weighted_pearson``), and the decisions a user makes from the top of the list: the top-1 hit, the regret (the
ground-truth gap between the model picked and the best one drawn, absolute and relative to picking at random), and
the top-3 recall.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from otce_ray.evaluation.across_targets import fisher_z_mean

CellKey = tuple[int, str]  # (seed, target)


@dataclass(frozen=True)
class Cells:
    """Cells grouped by seed: ``targets[seed]`` lists its targets; ``models[seed]`` every model any of its targets
    ranks; ``positions[(seed, target)]`` the target's models as indices into ``models[seed]``, in the order of the
    value vectors the statistics get."""

    seeds: tuple[int, ...]
    targets: Mapping[int, tuple[str, ...]]
    models: Mapping[int, tuple[str, ...]]
    positions: Mapping[CellKey, np.ndarray]


@dataclass(frozen=True)
class Plan:
    """One resample: for each seed drawn (with replacement), the targets drawn and the weight of every model."""

    draws: tuple[tuple[int, np.ndarray, np.ndarray], ...]  # (seed, target indices, model weights)


def draw_plans(cells: Cells, resamples: int, seed: int = 0) -> list[Plan]:
    rng = np.random.default_rng(seed)
    plans = []
    for _ in range(resamples):
        draws = []
        for index in rng.integers(0, len(cells.seeds), len(cells.seeds)):
            chosen = cells.seeds[index]
            count = len(cells.models[chosen])
            targets = rng.integers(0, len(cells.targets[chosen]), len(cells.targets[chosen]))
            draws.append((chosen, targets, rng.multinomial(count, np.full(count, 1 / count))))
        plans.append(Plan(tuple(draws)))
    return plans


CellStatistic = Callable[[np.ndarray, np.ndarray, np.ndarray], float]  # (x, y, weights) -> value


def weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Pearson of x and y where model i counts ``w[i]`` times; NaN with fewer than 3 models or a constant side."""
    keep = w > 0
    if keep.sum() < 3:
        return float("nan")
    w, x, y = w[keep] / w[keep].sum(), x[keep], y[keep]
    dx, dy = x - (w * x).sum(), y - (w * y).sum()
    denominator = np.sqrt((w * dx * dx).sum() * (w * dy * dy).sum())
    return float(np.clip((w * dx * dy).sum() / denominator, -1, 1)) if denominator > 0 else float("nan")


def _pick(x: np.ndarray, w: np.ndarray) -> int:
    """The model a user picks: the highest score among those drawn (the first in order on ties)."""
    return int(np.argmax(np.where(w > 0, x, -np.inf)))


def top1_hit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """1 when the model with the highest score has the best ground truth among the models drawn."""
    return float(y[_pick(x, w)] >= y[w > 0].max())


def regret(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Ground truth of the best model drawn minus that of the model picked (>= 0; in the ground truth's units)."""
    return float(y[w > 0].max() - y[_pick(x, w)])


def relative_regret(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """``regret`` over the expected regret of a random pick (0: the best model; 1: no better than picking at random);
    NaN when every model drawn has the same ground truth."""
    drawn = w > 0
    random = y[drawn].max() - (w[drawn] * y[drawn]).sum() / w[drawn].sum()
    return regret(x, y, w) / random if random > 0 else float("nan")


def top3_recall(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """Of the 3 best models drawn (by ground truth), the share among the 3 the score ranks highest."""
    drawn = np.flatnonzero(w > 0)
    k = min(3, len(drawn))
    by_score = set(drawn[np.argsort(-x[drawn], kind="stable")[:k]])
    by_truth = set(drawn[np.argsort(-y[drawn], kind="stable")[:k]])
    return len(by_score & by_truth) / k


def random_pick(statistic: str, y: np.ndarray, w: np.ndarray) -> float:
    """What picking at random gives on a cell, in expectation: the reference every decision statistic needs."""
    drawn = w > 0
    count = drawn.sum()
    best = (y[drawn] >= y[drawn].max()).sum()
    return {"top1_hit": best / count, "regret": y[drawn].max() - (w[drawn] * y[drawn]).sum() / w[drawn].sum(),
            "relative_regret": 1.0, "top3_recall": min(3, count) / count}[statistic]


DECISIONS: dict[str, CellStatistic] = {"top1_hit": top1_hit, "regret": regret, "relative_regret": relative_regret,
                                       "top3_recall": top3_recall}


def over_cells(cells: Cells, x: Mapping[CellKey, np.ndarray], y: Mapping[CellKey, np.ndarray],
               statistic: CellStatistic, pearson: bool, plans: Sequence[Plan] | None = None,
               keep: Sequence[int] | None = None) -> float | np.ndarray:
    """The statistic over cells (Fisher-z mean for correlations, else the mean) on the data as it is, or, with
    ``plans``, one value per resample; ``keep``: only these seeds (the jackknife)."""
    def mean(values: list[float]) -> float:
        if pearson:
            return fisher_z_mean(values)
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    if plans is None:
        values = [statistic(x[(s, t)], y[(s, t)], np.ones(len(x[(s, t)])))
                  for s in (keep if keep is not None else cells.seeds) for t in cells.targets[s]]
        return mean(values)
    out = np.empty(len(plans))
    for b, plan in enumerate(plans):
        values = []
        for s, targets, weights in plan.draws:
            for t in targets:
                key = (s, cells.targets[s][t])
                values.append(statistic(x[key], y[key], weights[cells.positions[key]]))
        out[b] = mean(values)
    return out


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float


def bca_interval(value: float, resampled: np.ndarray, jackknife: np.ndarray, confidence: float = 0.95) -> Estimate:
    """The BCa interval of ``value`` from its resampled values and its leave-one-seed-out values."""
    finite = resampled[np.isfinite(resampled)]
    if not np.isfinite(value) or finite.size < 10:
        return Estimate(value, float("nan"), float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        z0 = stats.norm.ppf(np.clip((finite < value).mean() + 0.5 * (finite == value).mean(), 1e-6, 1 - 1e-6))
        jack = jackknife[np.isfinite(jackknife)]
        spread = jack.mean() - jack
        denominator = 6 * (spread**2).sum() ** 1.5
        acceleration = (spread**3).sum() / denominator if denominator > 0 else 0.0
    tails = []
    for alpha in ((1 - confidence) / 2, (1 + confidence) / 2):
        z = stats.norm.ppf(alpha)
        tails.append(stats.norm.cdf(z0 + (z0 + z) / (1 - acceleration * (z0 + z))))
    low, high = np.percentile(finite, np.array(tails) * 100)
    return Estimate(float(value), float(low), float(high))


@dataclass(frozen=True)
class Comparison:
    """Metric A minus metric B on the same resamples: the difference with its BCa interval at 95% (and at 90%, the
    TOST interval), and the two-sided bootstrap p of "no difference"."""

    difference: float
    low: float
    high: float
    low90: float
    high90: float
    p_value: float

    def equivalent(self, margin: float) -> bool:
        """TOST at ``margin``: the 90% interval lies inside (-margin, margin)."""
        return bool(-margin < self.low90 and self.high90 < margin)


def compare(value: float, resampled: np.ndarray, jackknife: np.ndarray) -> Comparison:
    """``value``/``resampled``/``jackknife`` are already differences (A minus B)."""
    at95 = bca_interval(value, resampled, jackknife, 0.95)
    at90 = bca_interval(value, resampled, jackknife, 0.90)
    finite = resampled[np.isfinite(resampled)]
    tail = min((finite <= 0).mean(), (finite >= 0).mean()) if finite.size else float("nan")
    return Comparison(value, at95.low, at95.high, at90.low, at90.high, float(min(1.0, 2 * tail)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN), in the given order."""
    p = np.asarray(p_values, dtype=float)
    order = [i for i in np.argsort(p) if np.isfinite(p[i])]
    adjusted = np.full(len(p), np.nan)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
