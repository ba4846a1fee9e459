"""The stopping rule of a race (``racing:``): which models cannot reach the top k, from one stage's repeat scores.

At a stage before the final one, each racing model has K repeat scores (seeded as a full run's repeats), half drawn
from one half of the shards the stage reads (half A) and half from the other (half B), two disjoint random samples
of the store's shards (``otce_ray.scoring.racing``). What a stage's mean misses of
the full-budget score (every image, the run's own N and K) has two parts, and the bound covers both:

- **repeat noise** (which pixels a repeat draws, given the stage's images): the variance of the mean from the spread
  of the repeats within each half, ``max(the model's own, the median over the stage's models) x (1/K_A + 1/K_B)/4``.
  Taking at least the median guards the estimate of a model with few repeats from coming out small by chance (with 6
  repeats the model's own variance has 4 degrees of freedom), and is what lets the normal quantile stand in for t.
- **image sampling** (which images the stage read): a stage sees a share f of each store's shards, and its score
  moves with them, by amounts that differ between models (a common shift of every model moves no one past another,
  so only the differences matter). The two halves are two disjoint random samples of m/2 shards: for model m,
  ``d_m = mean_A - mean_B`` has variance ``4 s^2/m + 4 v_m`` (s^2/m: the shard-sampling variance of the stage's
  mean, v_m its repeat variance), so the spread of d over the stage's models, less their repeat noise, estimates it;
  with the finite-population factor (1 - f), ``tau^2 = (1 - f) x max(0, var(d)/4 - mean(v))`` is the variance of the
  stage's mean about the full-budget one. This is the bias allowance, estimated from the data at every stage; the
  nominal f is used (a stage reads at least that share), which errs wide.

Bounds: ``mean +/- q x sqrt(v_m + tau^2)``, with q the normal quantile at ``1 - (1 - confidence) / (2 x M x S)`` for
M models racing and S stages before the final one: a union bound (Bonferroni) over both one-sided bounds of every
model at every stage, so with probability ``confidence`` none fails, whatever the number of models. Why not
Hoeffding or empirical Bernstein: both need a known range of a repeat's score, and the only one there is (0 to log C
nats of conditional entropy) is tens of times wider than the differences between models; repeat scores are means over
thousands of pixels and close to normal (the leaderboard's t-interval assumes as much).

A model stops when its upper bound is below the k-th best lower bound of the stage: then k models are better than it
at full budget (each of those k lower bounds holds), so it is not in the top k. The k models with the best lower
bounds never stop, so at least k reach the final stage.

What it assumes, and what the benchmark measures (``otce-ray bench racing``, docs/performance.md): that the
image-sampling deviation of a model is about as large as most models' (tau is pooled over the stage's models);
that fewer pixels per repeat (``stages[].pixels``) shift every model's score alike, or by less than the bounds'
width (the halves have the same N, so this part is not in tau); and that repeat scores are close to normal. Stopped
models keep their stage score on the leaderboard, ranked below every model that finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import fmean, median
from typing import Mapping, Sequence

from scipy import stats


@dataclass(frozen=True)
class StageScores:
    """One model's converged repeat scores at a stage: on the stage's even shards (``a``) and odd shards (``b``)."""

    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def usable(self) -> bool:
        """A mean and a within-half spread can be had (a repeat on each half, and three in all)."""
        return bool(self.a) and bool(self.b) and len(self.a) + len(self.b) >= 3

    @property
    def mean(self) -> float:
        return (fmean(self.a) + fmean(self.b)) / 2

    @property
    def difference(self) -> float:
        return fmean(self.a) - fmean(self.b)

    @property
    def within_variance(self) -> float:
        """The repeats' variance about their half's mean (pooled over both halves)."""
        squares = sum((x - fmean(half)) ** 2 for half in (self.a, self.b) for x in half)
        return squares / (len(self.a) + len(self.b) - 2)

    def mean_variance(self, variance: float) -> float:
        """The variance of ``mean`` for repeats of ``variance``."""
        return variance * (1 / len(self.a) + 1 / len(self.b)) / 4


@dataclass(frozen=True)
class Bound:
    """One model's stage mean and its bounds on the full-budget score (up to a shift common to every model)."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class StageDecision:
    """What a stage decided: every model's bounds, the k-th best lower bound and the models below it."""

    bounds: dict[str, Bound]
    threshold: float  # the k-th best lower bound; NaN when too few models had bounds to stop any
    stopped: tuple[str, ...]
    allowance: float  # tau: the image-sampling standard deviation in every bound
    repeat_variance: float  # the median repeat variance (the floor of each model's)
    quantile: float
    notes: tuple[str, ...] = field(default=())


def quantile(confidence: float, models: int, stages: int) -> float:
    """The normal quantile of the bounds: both one-sided bounds of ``models`` models at ``stages`` stages hold at
    once with probability ``confidence`` (Bonferroni).

    >>> round(quantile(0.95, 100, 2), 2)
    3.66
    """
    return float(stats.norm.ppf(1 - (1 - confidence) / (2 * max(1, models) * max(1, stages))))


def image_allowance(scores: Sequence[StageScores], images: float) -> float:
    """tau, the standard deviation of a stage mean about its full-budget value from the images it read (see the module
    docstring); 0 with fewer than two models (nothing to compare)."""
    if len(scores) < 2:
        return 0.0
    differences = [score.difference for score in scores]
    centre = fmean(differences)
    spread = sum((d - centre) ** 2 for d in differences) / (len(differences) - 1)
    repeat_part = fmean(score.mean_variance(score.within_variance) for score in scores)
    return math.sqrt((1 - images) * max(0.0, spread / 4 - repeat_part))


def decide(scores: Mapping[str, StageScores], *, top_k: int, images: float, quantile: float) -> StageDecision:
    """Bound every model of one stage (``scores``: model -> its repeat scores by half) and stop those whose upper
    bound is below the ``top_k``-th best lower bound. ``images`` is the share of each store the stage read.

    A model without usable scores (``StageScores.usable``) gets no bound and never stops; with at most ``top_k``
    bounded models, none stops.
    """
    usable = {name: score for name, score in scores.items() if score.usable}
    notes = tuple(f"{name}: too few converged repeats on a half of the stage's images to bound it; it goes on"
                  for name in scores if name not in usable)
    if not usable:
        return StageDecision({}, math.nan, (), math.nan, math.nan, quantile, notes)
    floor = median(score.within_variance for score in usable.values())
    tau = image_allowance(list(usable.values()), images)
    bounds = {}
    for name, score in usable.items():
        half = quantile * math.sqrt(score.mean_variance(max(score.within_variance, floor)) + tau ** 2)
        bounds[name] = Bound(score.mean, score.mean - half, score.mean + half)
    if len(bounds) <= top_k:
        return StageDecision(bounds, math.nan, (), tau, floor, quantile, notes)
    threshold = sorted((bound.low for bound in bounds.values()), reverse=True)[top_k - 1]
    stopped = tuple(sorted(name for name, bound in bounds.items() if bound.high < threshold))
    return StageDecision(bounds, threshold, stopped, tau, floor, quantile, notes)
