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
import itertools
import math
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


EXACT_PERMUTATIONS = 8  # up to this many models a permutation test enumerates every ordering (8! = 40,320)


def _orderings(n: int, *, seed: int, resamples: int) -> np.ndarray:
    """Every permutation of ``range(n)`` (n <= ``EXACT_PERMUTATIONS``), else ``resamples`` seeded random ones."""
    if n <= EXACT_PERMUTATIONS:
        return np.array(list(itertools.permutations(range(n))))
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((resamples, n)), axis=1)


def permutation_p(measure: Measure, scores: ArrayLike, performance: ArrayLike, *, seed: int = 0,
                  resamples: int = 10_000) -> float:
    """One-sided p-value of ``measure`` under random orderings: the share of orderings of ``performance`` over
    the models whose measure reaches the observed one (exact up to ``EXACT_PERMUTATIONS`` models; else seeded Monte
    Carlo, counting the observed ordering once). NaN where the measure is undefined."""
    x, y = _pair(scores, performance)
    observed = measure(x, y)
    if np.isnan(observed):
        return math.nan
    orders = _orderings(len(y), seed=seed, resamples=resamples)
    reached = int((measure(np.broadcast_to(x, orders.shape), y[orders]) >= observed - 1e-12).sum())
    exact = len(y) <= EXACT_PERMUTATIONS
    return reached / len(orders) if exact else (reached + 1) / (len(orders) + 1)


def kendall_needed(n: int, *, alpha: float = 0.05, seed: int = 0, resamples: int = 10_000) -> float:
    """The smallest Kendall tau that ``n`` models without ties reach with probability at most ``alpha`` under random
    orderings (one-sided): below it, agreement cannot be told from chance. NaN when even a perfect order is more
    likely than ``alpha`` (3 models: 1 in 6)."""
    if n < MIN_MODELS:
        return math.nan
    orders = _orderings(n, seed=seed, resamples=resamples)
    taus = np.sort(kendall(np.broadcast_to(np.arange(n, dtype=float), orders.shape), orders.astype(float)))
    for tau in np.unique(taus):
        if (taus >= tau - 1e-12).mean() <= alpha:
            return float(tau)
    return math.nan


def fisher_interval(value: float, n: int, *, rank: bool = False, confidence: float = CONFIDENCE
                    ) -> tuple[float, float]:
    """A normal-theory interval for a correlation over ``n`` models, on Fisher's z = atanh(value): standard error
    1/sqrt(n - 3) for Pearson, sqrt(0.437 / (n - 4)) for Kendall's tau (``rank``; Fieller, Hartley & Pearson, 1957).

    Unlike a bootstrap over the models, it widens with few models: four models in perfect order give a bootstrap
    interval of [1, 1], since every resample is in order too. NaN bounds when ``n`` is too small for the formula; a
    value of exactly +-1 collapses it (the permutation p-value then says what the models show).
    """
    spare = n - (4 if rank else 3)
    if spare <= 0 or not np.isfinite(value):
        return math.nan, math.nan
    if abs(value) >= 1:
        return float(value), float(value)
    half = stats.norm.ppf((1 + confidence) / 2) * math.sqrt((0.437 if rank else 1.0) / spare)
    z = math.atanh(value)
    return math.tanh(z - half), math.tanh(z + half)
