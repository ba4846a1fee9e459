"""One OTCE repeat as a Ray task body: read a seeded sample of each pixel store, solve, return a few numbers.

Pixel data moves from the store straight to the worker that scores it; only the repeat's record returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from otce_ray.config import OTCESettings
from otce_ray.scoring.cost_scale import DEFAULT_COST_SCALE
from otce_ray.scoring.estimator import otce_score
from otce_ray.store import read_pixels


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
