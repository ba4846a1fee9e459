"""What a model's scoring reads, and the Ray task bodies of scoring: one OTCE repeat, or the baseline metrics.

Each (dataset, model) pixel store is read once per model, not once per task: ``store_reads`` lists every seeded
sample the model's tasks will draw from each of its stores (one per repeat, and the baselines' own), one loader task
per store reads the union of their rows (``otce_ray.store.read_samples``, one pass over the store), and each task
takes its own sample out of that object (``PixelSamples.sample``): the same rows, in the same order, as reading that
sample from the store gives. Only a few numbers, and what went wrong, return to the driver.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from otce_ray.config import BaselineSettings, OTCESettings
from otce_ray.scoring.baselines import LOGIT_METRICS, baseline_scores
from otce_ray.scoring import ENGINE_VERSION
from otce_ray.scoring.cost_scale import DEFAULT_COST_SCALE
from otce_ray.scoring.estimator import DEFAULT_EPSILON, RepeatRecord, otce_score
from otce_ray.scoring.exact import DEFAULT_EMD_MAX_ITERATIONS
from otce_ray.scoring.sinkhorn import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE
from otce_ray.store import PixelSamples

BASELINE_STREAM = 2**31  # the seed stream of the baselines' sample: no run has that many repeats
WARNING_CHARS = 300  # a recorded warning is cut to this length, to stay readable in a leaderboard cell
_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)  # library upkeep, not about this result


def scoring_key(otce: OTCESettings, baselines: BaselineSettings) -> dict[str, Any]:
    """Everything that decides a model's scores from its stores: the settings with each default resolved (a None
    would hide a changed default) and the engine's version."""
    return {
        "engine": ENGINE_VERSION,
        "n_pixels": otce.n_pixels, "repeats": otce.repeats, "seed": otce.seed, "solver": otce.solver,
        "epsilon": None if otce.solver == "emd" else (DEFAULT_EPSILON if otce.epsilon is None else otce.epsilon),
        "cost_scale": "none" if otce.solver == "emd" else otce.cost_scale or DEFAULT_COST_SCALE,
        "standardise": otce.standardise,
        "tolerance": DEFAULT_TOLERANCE,
        "max_iterations": DEFAULT_EMD_MAX_ITERATIONS if otce.solver == "emd" else DEFAULT_MAX_ITERATIONS,
        "baselines": list(baselines.names()), "baseline_pixels": baselines.n_pixels,
    }


def sample_seeds(seed: int, repeat: int) -> tuple[int, int]:
    """Independent sampling seeds for the source and target side of one repeat, derived from (seed, repeat)."""
    source, target = np.random.SeedSequence([seed, repeat]).generate_state(2)
    return int(source), int(target)


def store_reads(
    source: str, target: str, otce: OTCESettings, baselines: BaselineSettings
) -> dict[str, tuple[list[tuple[int, int]], bool]]:
    """How a model's stores are read: dataset -> ((size, seed) of every sample its tasks draw there, with logits).

    Each side gets one sample per repeat and, with baselines configured, the baselines' sample, seeded as
    ``sample_seeds`` says. Logits are read on the target side only, and only with baselines: LEEP and NCE use the
    source model's logits on target pixels; OTCE and every other metric use features. A model trained on the target
    dataset itself has one store for both sides, read once for both.
    """
    streams = [(otce.n_pixels, repeat) for repeat in range(otce.repeats)]
    if baselines.names():
        streams.append((baselines.n_pixels, BASELINE_STREAM))
    seeds = [(size, sample_seeds(otce.seed, stream)) for size, stream in streams]
    source_samples = [(size, seed) for size, (seed, _) in seeds]
    target_samples = [(size, seed) for size, (_, seed) in seeds]
    reads = {source: (source_samples, False)}
    shared = source_samples if target == source else []
    reads[target] = (shared + target_samples, not LOGIT_METRICS.isdisjoint(baselines.names()))
    return reads


def score_repeat(
    source: PixelSamples, target: PixelSamples, otce: OTCESettings, repeat: int, device: str
) -> dict[str, Any]:
    """Score repeat ``repeat`` of a model on its own samples of the source and target pixels read for it."""
    source_seed, target_seed = sample_seeds(otce.seed, repeat)
    source_pixels = source.sample(otce.n_pixels, source_seed, with_logits=False)
    target_pixels = target.sample(otce.n_pixels, target_seed, with_logits=False)
    result = otce_score(
        source_pixels.features, source_pixels.labels, target_pixels.features, target_pixels.labels,
        n_pixels=otce.n_pixels, repeats=1, solver=otce.solver, epsilon=otce.epsilon, seed=otce.seed,
        device=device, cost_scale_kind=otce.cost_scale or DEFAULT_COST_SCALE, standardise=otce.standardise,
    )
    record = dataclasses.replace(result.repeats[0], repeat=repeat)
    return dataclasses.asdict(record) | {"epsilon_relative": result.epsilon,
                                         "warnings": repeat_warnings(record, otce.solver)}


def repeat_warnings(record: RepeatRecord, solver: str) -> list[str]:
    """What a user should know about one repeat: a plan that missed its tolerance (even after the engine's remedy)
    is left out of the model's score, and says so."""
    if record.converged:
        return []
    remedy = f" even after {record.remedy}" if record.remedy else ""
    return [f"repeat {record.repeat}: {solver} missed its tolerance{remedy} (marginal error "
            f"{record.marginal_error:.1e} > {record.tolerance:.0e}): dropped from the score"]


def score_baselines(
    source: PixelSamples, target: PixelSamples, baselines: BaselineSettings, otce: OTCESettings, device: str
) -> dict[str, Any]:
    """Every configured baseline metric of a model on one seeded sample per side, and why any of them is NaN.

    Returns ``{"metrics": {name: value (NaN where it cannot be had)}, "warnings": [...]}``. The metrics are computed
    one by one on the same sample, so that each reason (why the registry gave NaN, or a warning such as JC-OTCE's
    unconverged plan) is told with the metric it belongs to. Python's warning capture is process-wide: run it one
    task per process, as Ray runs tasks (a warning from another thread would be blamed on the metric at hand).
    """
    source_seed, target_seed = sample_seeds(otce.seed, BASELINE_STREAM)
    source_pixels = source.sample(baselines.n_pixels, source_seed)
    target_pixels = target.sample(baselines.n_pixels, target_seed)
    options = {"epsilon": otce.epsilon, "cost_scale_kind": otce.cost_scale or DEFAULT_COST_SCALE, "device": device}
    metrics: dict[str, float] = {}
    notes: list[str] = []
    for name in baselines.names():
        failures: dict[str, str] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics |= baseline_scores(source_pixels, target_pixels, metrics=[name], n_pixels=baselines.n_pixels,
                                       seed=otce.seed, otce_options=options, reasons=failures)
        told = [f"baseline {name}: cannot be computed, NaN ({failures[name]})"] if name in failures else []
        told += [f"baseline {name}: {w.category.__name__}: {w.message}" for w in caught
                 if not issubclass(w.category, _NOISE)]
        notes += dict.fromkeys(message[:WARNING_CHARS] for message in told)
    return {"metrics": metrics, "warnings": notes}
