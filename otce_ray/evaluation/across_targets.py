"""Judging a metric over many targets and a noisy ground truth: pure functions over arrays.

- ``fisher_z_mean``: correlations are averaged on Fisher's z scale (atanh), where their sampling distribution is
  close to normal with a spread that does not depend on the correlation itself; a plain mean of r is biased
  towards 0.
- ``replicate_reliability``: how repeatable the ground truth is across fine-tuning seeds on identical data (the
  intraclass correlation ICC(1, k) of the mean over k seeds) and the noise ceiling sqrt(ICC): the highest
  correlation any score can reach with that noisy mean (classical test theory: corr(mean, truth) = sqrt(reliability)).
- ``Block`` and ``bootstrap_correlations``: the targets of one benchmark share source models, so they are not
  independent. A resample draws the source models of a block once, with replacement, and applies that draw to
  every target of the block (a model drawn twice counts twice); blocks (benchmark seeds) are drawn independently.
  Every metric sees the same resamples, so the difference of two metrics is a paired comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

MIN_MODELS = 3
_CLIP = 1 - 1e-9  # keeps atanh finite for |r| = 1


def fisher_z_mean(correlations: Sequence[float] | np.ndarray, axis: int = -1) -> float | np.ndarray:
    """tanh of the mean of atanh(r) along ``axis``, NaN entries ignored (NaN when all are NaN)."""
    z = np.arctanh(np.clip(np.asarray(correlations, dtype=float), -_CLIP, _CLIP))
    with warnings.catch_warnings():  # an all-NaN slice is meant to give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.tanh(np.nanmean(z, axis=axis))
    return float(mean) if np.ndim(mean) == 0 else mean


@dataclass(frozen=True)
class Reliability:
    """Replicate reliability of a ground truth measured ``replicates`` times per model."""

    pairwise_pearson: float  # mean Pearson between two replicates, over pairs of replicates
    icc: float  # ICC(1, k): reliability of the mean over the k replicates
    ceiling: float  # sqrt(max(icc, 0)): the largest correlation a score can have with the mean
    replicates: int


def replicate_reliability(values: np.ndarray) -> Reliability:
    """``values``: (k replicates, n models). One-way random-effects ICC of the mean, from the ANOVA mean squares:
    (MS_between - MS_within) / MS_between."""
    values = np.asarray(values, dtype=float)
    k, n = values.shape
    if k < 2 or n < MIN_MODELS:
        raise ValueError(f"replicate reliability needs >= 2 replicates of >= {MIN_MODELS} models, got {values.shape}")
    pairs = [np.corrcoef(values[i], values[j])[0, 1] for i in range(k) for j in range(i + 1, k)]
    between = k * values.mean(axis=0).var(ddof=1)
    within = values.var(axis=0, ddof=1).mean()
    icc = (between - within) / between if between > 0 else float("nan")
    return Reliability(float(np.mean(pairs)), float(icc), float(np.sqrt(max(icc, 0.0))), k)


def weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` (n,) under each row of ``weights`` (R, n) of non-negative counts:
    the correlation of the resample that repeats model i ``weights[r, i]`` times. NaN where fewer than 3 models
    are drawn or either side is constant."""
    w = np.asarray(weights, dtype=float)
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w * x).sum(axis=1, keepdims=True) / total, (w * y).sum(axis=1, keepdims=True) / total
        dx, dy = x - mx, y - my
        r = (w * dx * dy).sum(axis=1) / np.sqrt((w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1))
    degenerate = ((w > 0).sum(axis=1) < MIN_MODELS) | ~np.isfinite(r)
    return np.where(degenerate, np.nan, np.clip(r, -1.0, 1.0))


@dataclass(frozen=True)
class Block:
    """The targets of one benchmark: ``models`` are every source any of its targets uses; ``targets`` maps a target
    to the positions (in ``models``) of its sources, in the order of its score and ground-truth vectors."""

    models: tuple[str, ...]
    targets: Mapping[str, np.ndarray]


def block_draws(blocks: Sequence[Block], resamples: int, seed: int) -> list[np.ndarray]:
    """Per block, (resamples, n_models) counts: each row draws the block's models with replacement."""
    rng = np.random.default_rng(seed)
    return [rng.multinomial(len(b.models), np.full(len(b.models), 1 / len(b.models)), size=resamples) for b in blocks]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def resampled_mean_correlation(blocks: Sequence[Block], x: Mapping[tuple[int, str], np.ndarray],
                               y: Mapping[tuple[int, str], np.ndarray], draws: Sequence[np.ndarray]) -> np.ndarray:
    """Per resample, the Fisher-z mean over every (block, target) of the Pearson correlation of ``x[(b, t)]`` with
    ``y[(b, t)]`` under the block's draw."""
    per_target = [weighted_pearson(x[(b, t)], y[(b, t)], draws[b][:, positions])
                  for b, block in enumerate(blocks) for t, positions in block.targets.items()]
    return fisher_z_mean(np.stack(per_target, axis=1), axis=1)


def percentile_interval(value: float, resampled: np.ndarray, confidence: float = 0.95) -> Interval:
    """``value`` with the percentile interval of its finite resampled values."""
    finite = resampled[np.isfinite(resampled)]
    if not np.isfinite(value) or finite.size == 0:
        return Interval(value, float("nan"), float("nan"))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(value), float(low), float(high))


@dataclass(frozen=True)
class PairedDifference:
    """Fisher-z mean correlation of metric A minus that of metric B, on the same resamples."""

    difference: float
    low: float
    high: float
    p_value: float  # two-sided bootstrap p of "no difference": twice the smaller tail beyond 0


def paired_difference(a: np.ndarray, b: np.ndarray, value_a: float, value_b: float,
                      confidence: float = 0.95) -> PairedDifference:
    """Compare two metrics from their resampled mean correlations ``a`` and ``b`` (same resamples, same order)."""
    both = np.isfinite(a) & np.isfinite(b)
    delta = a[both] - b[both]
    interval = percentile_interval(value_a - value_b, delta, confidence)
    if delta.size == 0:
        return PairedDifference(interval.value, interval.low, interval.high, float("nan"))
    tail = min((delta <= 0).mean(), (delta >= 0).mean())
    return PairedDifference(interval.value, interval.low, interval.high, float(min(1.0, 2 * tail)))
