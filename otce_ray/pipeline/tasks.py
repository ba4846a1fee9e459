"""What a model's scoring reads, what decides its result, and the baselines' Ray task body.

Each (dataset, model) pixel store is read once per model, not once per task: ``store_reads`` lists every seeded
sample the model's tasks will draw from each of its stores (one per repeat, and the baselines' own), one loader task
per store reads the union of their rows (``otce_ray.store.read_samples``, one pass over the store), and each task
takes its own sample out of that object (``PixelSamples.sample``): the same rows, in the same order, as reading that
sample from the store gives. The repeat tasks run the repeat unit itself (``otce_ray.scoring.repeat.score_repeat``);
only a few numbers, and what went wrong, return to the driver.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable

from otce_ray.leaderboard.results import WARNING_CHARS
from otce_ray.scoring.baselines import BaselineSettings, baseline_scores, reads_logits
from otce_ray.scoring.repeat import BASELINE_STREAM, sample_seeds
from otce_ray.scoring.settings import OTCESettings
from otce_ray.store import PixelSamples

_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)  # library upkeep, not about this result


def result_key(otce: OTCESettings, baselines: BaselineSettings) -> dict[str, Any]:
    """Everything that decides a model's scores from its stores: the settings records' keys (every field resolved,
    and the engine's version), so a setting added to a record changes the key by itself."""
    return {"otce": otce.key(), "baselines": baselines.key()}


def store_reads(
    source: str, target: str, otce: OTCESettings, baselines: BaselineSettings, repeats: Iterable[int] | None = None
) -> dict[str, tuple[list[tuple[int, int]], bool]]:
    """How a model's stores are read: dataset -> ((size, seed) of every sample its tasks draw there, with logits).

    Each side gets one sample per repeat (``repeats``: those repeat indices only; default all of ``otce.repeats``)
    and, with baselines configured, the baselines' sample, seeded as ``sample_seeds`` says. Logits are read on the
    target side only, and only with baselines that read them (LEEP and NCE use the source model's logits on target
    pixels; OTCE and every other metric use features). A model trained on the target dataset itself has one store
    for both sides, read once for both.
    """
    streams = [(otce.n_pixels, repeat) for repeat in (range(otce.repeats) if repeats is None else repeats)]
    if baselines.names():
        streams.append((baselines.n_pixels, BASELINE_STREAM))
    seeds = [(size, sample_seeds(otce.seed, stream)) for size, stream in streams]
    source_samples = [(size, seed) for size, (seed, _) in seeds]
    target_samples = [(size, seed) for size, (_, seed) in seeds]
    reads = {source: (source_samples, False)}
    shared = source_samples if target == source else []
    reads[target] = (shared + target_samples, reads_logits(baselines.names()))
    return reads


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
    metrics: dict[str, float] = {}
    notes: list[str] = []
    for name in baselines.names():
        failures: dict[str, str] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metrics |= baseline_scores(source_pixels, target_pixels, metrics=[name], n_pixels=baselines.n_pixels,
                                       seed=otce.seed, settings=otce, device=device, reasons=failures)
        told = [f"baseline {name}: cannot be computed, NaN ({failures[name]})"] if name in failures else []
        told += [f"baseline {name}: {w.category.__name__}: {w.message}" for w in caught
                 if not issubclass(w.category, _NOISE)]
        notes += dict.fromkeys(message[:WARNING_CHARS] for message in told)
    return {"metrics": metrics, "warnings": notes}
