"""Feature extraction: sample labelled pixels, take the source model's features there, write pixel stores on Ray.

``extract_pixels`` (pixels.py), ``sampling.py`` and ``decode.py`` are the computation; ``run_shard`` (shard.py) is
the unit of work, Ray-free; ``plan_store`` (planning.py) decides what a store needs; ``ShardWorker`` (worker.py)
runs shards in a Ray actor that keeps its models loaded, a ``WorkerPool`` (pool.py) sizes those actors to the
cluster, and ``ExtractionJobs`` (jobs.py) routes shards to them from the dispatch loop. ``run_extraction`` /
``extract_model`` (driver.py) extract without scoring.
"""

from otce_ray.extraction.decode import Stopwatch
from otce_ray.extraction.driver import extract_model, run_extraction
from otce_ray.extraction.jobs import ExtractionJobs
from otce_ray.extraction.planning import ExtractionSummary, StorePlan, describe, plan_store
from otce_ray.extraction.pixels import PixelColumns, extract_pixels
from otce_ray.extraction.pool import WorkerPool, WorkerSettings
from otce_ray.extraction.sampling import pixel_rng, sample_map, sample_pixels
from otce_ray.extraction.shard import ExtractionRequest, ShardResult, run_shard

__all__ = [
    "ExtractionJobs",
    "ExtractionRequest",
    "ExtractionSummary",
    "PixelColumns",
    "ShardResult",
    "Stopwatch",
    "StorePlan",
    "WorkerPool",
    "WorkerSettings",
    "describe",
    "extract_model",
    "extract_pixels",
    "pixel_rng",
    "plan_store",
    "run_extraction",
    "run_shard",
    "sample_map",
    "sample_pixels",
]
