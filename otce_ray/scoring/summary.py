"""Reduce one model's K repeat scores to a mean with its uncertainty.

The repeats are independent draws of the pixel samples, so the mean's 95% interval uses Student's t with K-1
degrees of freedom: with K = 10 the t factor is 2.26, not the normal 1.96, which matters for grouping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class RepeatSummary:
    mean: float
    std: float  # sample standard deviation (ddof = 1)
    sem: float  # standard error of the mean: std / sqrt(K)
    ci_low: float
    ci_high: float
    repeats: int


def summarize_repeats(scores: Sequence[float], confidence: float = CONFIDENCE) -> RepeatSummary:
    """Mean, std, standard error and the two-sided t interval of the mean; needs at least 2 finite scores."""
    values = [float(s) for s in scores]
    if len(values) < 2:
        raise ValueError(f"an interval needs at least 2 repeat scores, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"repeat scores must be finite, got {values}")
    k = len(values)
    mean = math.fsum(values) / k
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (k - 1))
    sem = std / math.sqrt(k)
    half = float(stats.t.ppf(0.5 + confidence / 2, k - 1)) * sem
    return RepeatSummary(mean=mean, std=std, sem=sem, ci_low=mean - half, ci_high=mean + half, repeats=k)
