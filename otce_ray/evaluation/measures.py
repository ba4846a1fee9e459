"""How well a transferability metric predicts transfer: correlations, ranking agreement, top-1 selection quality.

Every measure takes the metric's ``scores`` and the ground-truth ``performance`` of the same models (higher is
better for both) along the last axis: 1-d input gives a float, 2-d input (one row per bootstrap resample) an array,
computed in one vectorised pass (scipy's per-call overhead made 1000 resamples take seconds per metric). The
results equal scipy's ``pearsonr``, ``spearmanr``, ``kendalltau`` (tau-b) and ``weightedtau``.

A row with fewer than 3 models, a non-finite value, or a constant metric or ground truth gives NaN, never an
error (``degenerate_reason`` says which), so one broken baseline cannot stop an evaluation.

- ``weighted_kendall``: scipy's ``weightedtau`` with its defaults, as in Agostinelli et al., "How stable are
  transferability metrics evaluations?" (ECCV 2022). A pair of models (i, j) counts with weight w(r_i) + w(r_j),
  w(r) = 1 / (r + 1) (hyperbolic), r the 0-based rank (best = 0), so disagreements among the top models cost most.
  Ranks come from the metric (ties broken by the ground truth) and, separately, from the ground truth (ties broken
  by the metric); the result is the mean of the two, which makes it symmetric.
- ``top1_relative``: the paper's relative top-1 accuracy, performance of the model the metric ranks first divided
  by the best performance (1 = the metric picks the best model). A ratio needs a non-negative, accuracy-like
  measure (NaN otherwise); for a log measure such as the mean log-likelihood (<= 0) pass ``log_scale=True``: the
  ratio is taken on exp(ll), the per-pixel geometric-mean probability of the true label, i.e.
  exp(ll_picked - ll_best).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

MIN_MODELS = 3
CONFIDENCE = 0.95
RESAMPLES = 1000
_CHUNK_CELLS = 1 << 20  # pairwise measures hold (rows, n, n) arrays of this many cells per chunk

Measure = Callable[..., Any]  # (scores, performance, **options) -> float for 1-d input, array for 2-d


def _pair(scores: ArrayLike, performance: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(scores, dtype=float), np.asarray(performance, dtype=float)
    if x.shape != y.shape or x.ndim not in (1, 2):
        raise ValueError(f"scores and performance must be 1-d or 2-d of one shape, got {x.shape} and {y.shape}")
    return x, y


def degenerate_reason(scores: ArrayLike, performance: ArrayLike) -> str | None:
    """Why no measure is defined on these 1-d values, or None when they are usable."""
    x, y = _pair(scores, performance)
    if len(x) < MIN_MODELS:
        return f"fewer than {MIN_MODELS} models ({len(x)})"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return "non-finite values"
    if np.ptp(x) == 0:
        return "the metric is constant across models"
    if np.ptp(y) == 0:
        return "the ground truth is constant across models"
    return None


def _defined(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per row of 2-d input: whether ``degenerate_reason`` would find nothing."""
    if x.shape[-1] < MIN_MODELS:
        return np.zeros(len(x), dtype=bool)
    finite = np.isfinite(x).all(axis=-1) & np.isfinite(y).all(axis=-1)
    with np.errstate(invalid="ignore"):
        return finite & (np.ptp(x, axis=-1) > 0) & (np.ptp(y, axis=-1) > 0)


def _along_last_axis(rows: Callable[..., np.ndarray]) -> Measure:
    """Lift a kernel over defined (rows, n) arrays to the public 1-d / 2-d measure with NaN for degenerate rows.

    Every measure here lies in [-1, 1]; clipping only removes floating-point overshoot.
    """

    @functools.wraps(rows)
    def measure(scores: ArrayLike, performance: ArrayLike, **options: Any) -> float | np.ndarray:
        x, y = _pair(scores, performance)
        x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
        values = np.full(len(x2), np.nan)
        defined = np.flatnonzero(_defined(x2, y2))
        step = max(1, _CHUNK_CELLS // max(1, x2.shape[-1]) ** 2)
        for start in range(0, len(defined), step):
            index = defined[start:start + step]
            values[index] = np.clip(rows(x2[index], y2[index], **options), -1.0, 1.0)
        return float(values[0]) if x.ndim == 1 else values

    return measure


def _centred_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc, yc = x - x.mean(axis=-1, keepdims=True), y - y.mean(axis=-1, keepdims=True)
    return (xc * yc).sum(axis=-1) / np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))


def _pair_sums(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per model i: sum over j of s_x * s_y, of |s_x| and of |s_y|, where s_v = sign(v_i - v_j).

    Both Kendall taus reduce to these: the pair weight w_i + w_j summed against a symmetric pair matrix M is
    2 * sum_i w_i * (row sum of M)_i, so no (rows, n, n) weight array is needed.
    """
    sx, sy = _signs(x), _signs(y)
    return (sx * sy).sum(axis=-1, dtype=np.int64), np.count_nonzero(sx, axis=-1), np.count_nonzero(sy, axis=-1)


def _signs(v: np.ndarray) -> np.ndarray:
    """sign(v_i - v_j) for every ordered pair, as int8: a third of the time of float signs for hundreds of models."""
    return (v[..., :, None] > v[..., None, :]).view(np.int8) - (v[..., :, None] < v[..., None, :]).view(np.int8)


def _tau(weight: np.ndarray, agree: np.ndarray, untied_x: np.ndarray, untied_y: np.ndarray) -> np.ndarray:
    """Weighted (dis)agreement over pairs not tied, normalised as tau-b: 1 for the same order, -1 for reversed."""
    return (weight * agree).sum(axis=-1) / np.sqrt((weight * untied_x).sum(axis=-1) * (weight * untied_y).sum(axis=-1))


def _hyperbolic_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1 / (r + 1), r the 0-based rank by decreasing x, ties broken by decreasing y."""
    order = np.lexsort((-y, -x), axis=-1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(x.shape[-1]), order.shape), axis=-1)
    return 1.0 / (rank + 1.0)


@_along_last_axis
def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear correlation of metric and performance (the paper's headline number)."""
    return _centred_correlation(x, y)


@_along_last_axis
def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of the ranks (ties get their average rank)."""
    return _centred_correlation(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


@_along_last_axis
def kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b: pair agreement corrected for ties, so a metric that ties models is not rewarded."""
    return _tau(np.ones_like(x), *_pair_sums(x, y))


@_along_last_axis
def weighted_kendall(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau with hyperbolic weights on the top ranks (see the module docstring)."""
    sums = _pair_sums(x, y)
    return (_tau(_hyperbolic_weights(x, y), *sums) + _tau(_hyperbolic_weights(y, x), *sums)) / 2


@_along_last_axis
def top1_relative(x: np.ndarray, y: np.ndarray, *, log_scale: bool = False) -> np.ndarray:
    """Performance of the metric's top model over the best performance; tied top scores count as their mean.

    Averaging over a tie is the expected outcome of picking one of the tied models at random.
    """
    picked = x == x.max(axis=-1, keepdims=True)
    best = y.max(axis=-1, keepdims=True)
    ratio = np.exp(y - best) if log_scale else y / best
    mean_picked = (ratio * picked).sum(axis=-1) / picked.sum(axis=-1)
    return mean_picked if log_scale else np.where(y.min(axis=-1) < 0, np.nan, mean_picked)


def top1_reason(performance: ArrayLike, *, log_scale: bool) -> str | None:
    """Why ``top1_relative`` is undefined beyond ``degenerate_reason``: a ratio of negative performances."""
    if not log_scale and np.min(performance) < 0:
        return "top1_relative needs a non-negative ground truth (or a log measure)"
    return None


@dataclass(frozen=True)
class Estimate:
    """A measure on all models with its bootstrap percentile interval (NaN bounds when undefined)."""

    value: float
    low: float
    high: float


def bootstrap(measure: Measure, scores: ArrayLike, performance: ArrayLike, *, resamples: int = RESAMPLES,
              seed: int = 0, confidence: float = CONFIDENCE) -> Estimate:
    """``measure`` on all models, and its percentile interval over models resampled with replacement.

    The models are the sampling unit: the interval says how much the verdict depends on which models happen to be
    in the zoo. Resamples on which the measure is undefined (say, one model drawn every time) are left out.
    The generator is seeded, so the same inputs and seed always give the same interval.
    """
    x, y = _pair(scores, performance)
    value = measure(x, y)
    if np.isnan(value):
        return Estimate(value, float("nan"), float("nan"))
    draws = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    values = measure(x[draws], y[draws])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Estimate(value, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Estimate(value, float(low), float(high))
