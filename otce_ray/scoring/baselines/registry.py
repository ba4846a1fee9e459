"""Every baseline by name (``BASELINES``, the one registry), its settings, and ``baseline_scores``: all of them for one
model on one seeded sample of its pixels."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any, Protocol

import numpy as np

from otce_ray.schema import Interval, ListOf, Options, check_record, declared
from otce_ray.scoring.baselines.checks import count_at_least
from otce_ray.scoring.baselines.features import gbc, hscore, hscore_shrinkage, logme, transrate
from otce_ray.scoring.baselines.jc_otce import jc_otce
from otce_ray.scoring.baselines.predictions import leep, nce, nleep
from otce_ray.scoring.repeat import BASELINE_STREAM, sample_seeds
from otce_ray.scoring.settings import MAX_PIXELS, OTCESettings
from otce_ray.store import choose_rows

logger = logging.getLogger(__name__)


class PixelsLike(Protocol):
    """What ``baseline_scores`` reads of one side: row-aligned arrays, as ``otce_ray.store.Pixels`` holds them."""

    features: np.ndarray  # (n, d)
    labels: np.ndarray  # (n,)
    logits: np.ndarray | None  # (n, source classes), None when not stored


@dataclass(frozen=True)
class Sample:
    """The pixels a baseline sees: one side's valid pixels, possibly a seeded subset."""

    features: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None


@dataclass(frozen=True)
class Context:
    """What a baseline may need beside the pixels: the seed (N-LEEP's GMM), and the OTCE settings and device a metric
    that solves OT (JC-OTCE) solves under."""

    seed: int = 0
    settings: OTCESettings = field(default_factory=OTCESettings)
    device: str = "auto"


@dataclass(frozen=True)
class Baseline:
    """A published metric: ``score`` (source pixels, target pixels, context) -> float, higher = more transferable.
    ``reads_logits``: it reads the source model's logits on target pixels (stored, and read, only when asked)."""

    name: str
    score: Callable[[PixelsLike, PixelsLike, Context], float]
    reads_logits: bool = False


def _logits(side: PixelsLike) -> np.ndarray:
    if side.logits is None:
        raise ValueError("logits: the source model's logits were not stored for these pixels")
    return side.logits


def _jc_otce(source: PixelsLike, target: PixelsLike, context: Context) -> float:
    """JC-OTCE on one repeat of the run's OTCE settings, on the features as given (as published: z-scoring its
    feature-plus-label columns would undo its gamma weighting)."""
    settings = dataclasses.replace(context.settings, repeats=1, seed=context.seed, standardise=False)
    return jc_otce(source.features, source.labels, target.features, target.labels, settings,
                   device=context.device).score


# The one registry of baseline metrics: the config, the pipeline, the leaderboard, the evaluation and the validation
# take their names from here. All but JC-OTCE look only at the target pixels (the source model applied to target
# data). Adding a metric is one function and one line.
BASELINES: dict[str, Baseline] = {baseline.name: baseline for baseline in (
    Baseline("leep", lambda source, target, context: leep(_logits(target), target.labels), reads_logits=True),
    Baseline("nleep", lambda source, target, context: nleep(target.features, target.labels, seed=context.seed)),
    Baseline("nce", lambda source, target, context: nce(_logits(target), target.labels), reads_logits=True),
    Baseline("hscore", lambda source, target, context: hscore(target.features, target.labels)),
    Baseline("hscore_shrinkage", lambda source, target, context: hscore_shrinkage(target.features, target.labels)),
    Baseline("logme", lambda source, target, context: logme(target.features, target.labels)),
    Baseline("gbc", lambda source, target, context: gbc(target.features, target.labels)),
    Baseline("transrate", lambda source, target, context: transrate(target.features, target.labels)),
    Baseline("jc_otce", _jc_otce),
)}


def reads_logits(names: Iterable[str]) -> bool:
    """Whether any of these baselines reads the source model's logits."""
    return any(BASELINES[name].reads_logits for name in names)


@dataclass(frozen=True)
class BaselineSettings:
    """Published metrics computed beside OTCE on the same pixel stores, as extra leaderboard columns.
    ``metrics`` None: every metric of ``BASELINES``; () none."""

    metrics: tuple[str, ...] | None = declared(ListOf(Options(tuple(BASELINES)), "metric names"), None,
                                               "baseline metrics computed beside OTCE (`[]`: none)", "all")
    n_pixels: int = declared(Interval(Integral, 2, MAX_PIXELS), 2000,
                             "pixels sampled per side, one sample shared by all metrics (2,000: as validated)")

    def __post_init__(self) -> None:
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))
        check_record(self)

    def names(self) -> tuple[str, ...]:
        return tuple(BASELINES) if self.metrics is None else self.metrics

    def key(self) -> dict[str, Any]:
        """What decides the baseline columns from the same pixels (next to the OTCE settings' key)."""
        return {"metrics": list(self.names()), "n_pixels": self.n_pixels}


def _sample(side: PixelsLike, n_pixels: int, ignore_index: int | None, seed: int) -> Sample:
    """The side's pixels without ``ignore_index``, then at most ``n_pixels`` of them drawn by ``choose_rows``."""
    labels = np.asarray(side.labels)
    keep = np.flatnonzero(labels != ignore_index) if ignore_index is not None else np.arange(len(labels))
    rows = choose_rows(len(keep), n_pixels, seed)
    if rows is not None:
        keep = keep[rows]
    logits = None if side.logits is None else np.asarray(side.logits)[keep]
    return Sample(features=np.asarray(side.features)[keep], labels=labels[keep], logits=logits)


def baseline_scores(
    source: PixelsLike,
    target: PixelsLike,
    *,
    metrics: Iterable[str] | None = None,
    n_pixels: int = 10_000,
    seed: int = 0,
    ignore_index: int | None = 255,
    settings: OTCESettings | None = None,
    device: str = "auto",
    reasons: dict[str, str] | None = None,
) -> dict[str, float]:
    """Score one model by each of ``metrics`` (default: all of ``BASELINES``) on one seeded sample per side.

    ``n_pixels`` valid pixels are drawn per side (all when fewer) with the seeds of the baselines' stream
    (``otce_ray.scoring.repeat.sample_seeds(seed, BASELINE_STREAM)``), the same sample for every metric.
    ``settings`` and ``device`` are what JC-OTCE solves under (default ``OTCESettings()``). A metric that cannot be
    computed (no logits stored, a degenerate sample, ...) scores NaN and its reason is logged (and, when ``reasons``
    is given, stored there as ``{name: "ErrorType: message"}``); the others go on.
    """
    names = list(BASELINES if metrics is None else metrics)
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"metrics: unknown baseline(s) {', '.join(map(repr, unknown))} "
                         f"(expected any of {', '.join(BASELINES)})")
    n_pixels = count_at_least(n_pixels, "n_pixels", 2)
    source_seed, target_seed = sample_seeds(seed, BASELINE_STREAM)
    target_sample = _sample(target, n_pixels, ignore_index, target_seed)
    source_sample = _sample(source, n_pixels, ignore_index, source_seed)
    context = Context(seed=seed, settings=settings or OTCESettings(), device=device)
    scores = {}
    for name in names:
        try:
            scores[name] = float(BASELINES[name].score(source_sample, target_sample, context))
        except Exception as error:  # noqa: BLE001 - one metric's failure must not cost the others
            reason = f"{type(error).__name__}: {error}"
            logger.warning("baseline %s: cannot be computed, NaN (%s)", name, reason)
            if reasons is not None:
                reasons[name] = reason
            scores[name] = math.nan
    return scores
