"""Ray task bodies of scoring: one OTCE repeat, or one model's baseline metrics, each from seeded samples.

Pixel data moves from the store straight to the worker that scores it; only a few numbers return.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from otce_ray.config import BaselineSettings, OTCESettings
from otce_ray.scoring.baselines import baseline_scores
from otce_ray.scoring.cost_scale import DEFAULT_COST_SCALE
from otce_ray.scoring.estimator import otce_score
from otce_ray.store import read_pixels


BASELINE_STREAM = 2**31  # the seed stream of the baselines' sample: no run has that many repeats


def sample_seeds(seed: int, repeat: int) -> tuple[int, int]:
    """Independent sampling seeds for the source and target side of one repeat, derived from (seed, repeat)."""
    source, target = np.random.SeedSequence([seed, repeat]).generate_state(2)
    return int(source), int(target)


def score_repeat(
    store: str, model: str, source: str, target: str, otce: OTCESettings, repeat: int, device: str
) -> dict[str, Any]:
    """Score repeat ``repeat`` of ``model`` from the (source, model) and (target, model) pixel stores."""
    source_seed, target_seed = sample_seeds(otce.seed, repeat)
    source_pixels = read_pixels(store, source, model, sample=otce.n_pixels, seed=source_seed, with_logits=False)
    target_pixels = read_pixels(store, target, model, sample=otce.n_pixels, seed=target_seed, with_logits=False)
    result = otce_score(
        source_pixels.features, source_pixels.labels, target_pixels.features, target_pixels.labels,
        n_pixels=otce.n_pixels, repeats=1, solver=otce.solver, epsilon=otce.epsilon, seed=otce.seed,
        device=device, cost_scale_kind=otce.cost_scale or DEFAULT_COST_SCALE,
    )
    record = dataclasses.replace(result.repeats[0], repeat=repeat)
    return dataclasses.asdict(record) | {"epsilon_relative": result.epsilon}


def score_baselines(
    store: str, model: str, source: str, target: str, baselines: BaselineSettings, otce: OTCESettings, device: str
) -> dict[str, float]:
    """Every configured baseline metric of ``model`` on one seeded sample per side (NaN where one cannot be had)."""
    source_seed, target_seed = sample_seeds(otce.seed, BASELINE_STREAM)
    source_pixels = read_pixels(store, source, model, sample=baselines.n_pixels, seed=source_seed)
    target_pixels = read_pixels(store, target, model, sample=baselines.n_pixels, seed=target_seed)
    return baseline_scores(
        source_pixels, target_pixels, metrics=baselines.names(), n_pixels=baselines.n_pixels, seed=otce.seed,
        otce_options={"epsilon": otce.epsilon, "cost_scale_kind": otce.cost_scale or DEFAULT_COST_SCALE,
                      "device": device},
    )
