"""Every baseline by name, and ``baseline_scores``: all of them for one model on one seeded sample of its pixels."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from otce_ray.scoring.baselines.checks import count_at_least
from otce_ray.scoring.baselines.features import gbc, hscore, hscore_shrinkage, logme, transrate
from otce_ray.scoring.baselines.jc_otce import jc_otce
from otce_ray.scoring.baselines.predictions import leep, nce, nleep
from otce_ray.scoring.inputs import sample_rows

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
    """What a baseline may need beside the pixels: the seed (N-LEEP's GMM, JC-OTCE) and JC-OTCE's engine options."""

    seed: int = 0
    otce_options: Mapping[str, Any] = field(default_factory=dict)


Baseline = Callable[[PixelsLike, PixelsLike, Context], float]


def _logits(side: PixelsLike) -> np.ndarray:
    if side.logits is None:
        raise ValueError("logits: the source model's logits were not stored for these pixels")
    return side.logits


# Each entry scores (source, target, context); all but JC-OTCE look only at the target pixels (the source model
# applied to target data). Higher is more transferable for every one.
BASELINES: dict[str, Baseline] = {
    "leep": lambda source, target, context: leep(_logits(target), target.labels),
    "nleep": lambda source, target, context: nleep(target.features, target.labels, seed=context.seed),
    "nce": lambda source, target, context: nce(_logits(target), target.labels),
    "hscore": lambda source, target, context: hscore(target.features, target.labels),
    "hscore_shrinkage": lambda source, target, context: hscore_shrinkage(target.features, target.labels),
    "logme": lambda source, target, context: logme(target.features, target.labels),
    "gbc": lambda source, target, context: gbc(target.features, target.labels),
    "transrate": lambda source, target, context: transrate(target.features, target.labels),
    "jc_otce": lambda source, target, context: jc_otce(
        source.features, source.labels, target.features, target.labels,
        **{"repeats": 1, "seed": context.seed, **context.otce_options},
    ).score,
}
LOGIT_METRICS = frozenset({"leep", "nce"})  # the entries that read the source model's logits (``_logits``)


def _sample(side: PixelsLike, n_pixels: int, ignore_index: int | None, rng: np.random.Generator) -> Sample:
    """The side's pixels without ``ignore_index``, then at most ``n_pixels`` of them drawn without replacement."""
    labels = np.asarray(side.labels)
    keep = np.flatnonzero(labels != ignore_index) if ignore_index is not None else np.arange(len(labels))
    rows = sample_rows(len(keep), n_pixels, rng)
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
    otce_options: Mapping[str, Any] | None = None,
    reasons: dict[str, str] | None = None,
) -> dict[str, float]:
    """Score one model by each of ``metrics`` (default: all of ``BASELINES``) on one seeded sample per side.

    ``n_pixels`` valid pixels are drawn per side (all when fewer), the same sample for every metric.
    ``otce_options`` go to ``otce_score`` for JC-OTCE (default: one repeat on the sample). A metric that cannot be
    computed (no logits stored, a degenerate sample, ...) scores NaN and its reason is logged (and, when
    ``reasons`` is given, stored there as ``{name: "ErrorType: message"}``); the others go on.
    """
    names = list(BASELINES if metrics is None else metrics)
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"metrics: unknown baseline(s) {', '.join(map(repr, unknown))} "
                         f"(expected any of {', '.join(BASELINES)})")
    n_pixels = count_at_least(n_pixels, "n_pixels", 2)
    rng = np.random.default_rng(seed)
    target_sample = _sample(target, n_pixels, ignore_index, rng)
    source_sample = _sample(source, n_pixels, ignore_index, rng)
    context = Context(seed=seed, otce_options=dict(otce_options or {}))
    scores = {}
    for name in names:
        try:
            scores[name] = float(BASELINES[name](source_sample, target_sample, context))
        except Exception as error:  # noqa: BLE001 - one metric's failure must not cost the others
            reason = f"{type(error).__name__}: {error}"
            logger.warning("baseline %s: cannot be computed, NaN (%s)", name, reason)
            if reasons is not None:
                reasons[name] = reason
            scores[name] = math.nan
    return scores
