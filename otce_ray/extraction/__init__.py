"""Feature extraction: sample labelled pixels, take the source model's features there, write pixel stores on Ray.

``extract_pixels`` (pixels.py), ``sampling.py`` and ``decode.py`` are the computation; ``run_shard`` (shard.py) is
the unit of work, Ray-free; ``plan_store`` (planning.py) decides what a store needs; ``ShardWorker`` (worker.py)
runs shards in a Ray actor that keeps its models loaded, a ``WorkerPool`` (pool.py) sizes those actors to the
cluster, and ``ExtractionJobs`` (jobs.py) routes shards to them from the dispatch loop. ``run_extraction`` /
``extract_model`` (driver.py) extract without scoring.

The names below are imported from their modules on first use (PEP 562), so that importing the Ray-free part
(``otce_ray.extraction.shard``, what the GPU check runs on a host without Ray) never imports Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExtractionJobs": "jobs",
    "ExtractionRequest": "shard",
    "ExtractionSummary": "planning",
    "PixelColumns": "pixels",
    "ShardResult": "shard",
    "Stopwatch": "decode",
    "StorePlan": "planning",
    "WorkerPool": "pool",
    "WorkerSettings": "pool",
    "describe": "planning",
    "extract_model": "driver",
    "extract_pixels": "pixels",
    "pixel_rng": "sampling",
    "plan_store": "planning",
    "run_extraction": "driver",
    "run_shard": "shard",
    "sample_map": "sampling",
    "sample_pixels": "sampling",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
