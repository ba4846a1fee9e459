"""Published transferability metrics to compare OTCE with, as pure functions over the same pixel stores.

Sign convention: higher = more transferable, for every metric (each is used as published, all of which already
point that way). All are computed on target-side pixels (the source model applied to target images) except
JC-OTCE, which needs both sides as OTCE does.

- ``predictions``: LEEP (source logits), N-LEEP (features, via a GMM), NCE (source argmax labels).
- ``features``: H-score and its shrinkage form, LogME, GBC, TransRate (features).
- ``jc_otce``: OTCE with a label-to-label term in the cost, solved by the engine.
- ``registry``: ``BASELINES``, the one registry of metrics by name, their settings, and ``baseline_scores`` for the
  pipeline's leaderboard columns.
"""

from otce_ray.scoring.baselines.features import gbc, hscore, hscore_shrinkage, logme, transrate
from otce_ray.scoring.baselines.jc_otce import jc_otce
from otce_ray.scoring.baselines.predictions import leep, nce, nleep
from otce_ray.scoring.baselines.registry import (
    BASELINES,
    Baseline,
    BaselineSettings,
    PixelsLike,
    baseline_scores,
    reads_logits,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineSettings",
    "PixelsLike",
    "baseline_scores",
    "gbc",
    "hscore",
    "hscore_shrinkage",
    "jc_otce",
    "leep",
    "logme",
    "nce",
    "nleep",
    "reads_logits",
    "transrate",
]
