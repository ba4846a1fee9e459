"""Extraction without scoring, as a library call: list the datasets once, plan the stores, drive the worker pool."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import ray

from otce_ray.cluster import Cluster, check_gpus, drive
from otce_ray.datasets import open_datasets
from otce_ray.extraction.jobs import ExtractionJobs
from otce_ray.extraction.planning import ExtractionSummary, StorePlan, describe, plan_store
from otce_ray.extraction.pool import WorkerPool, WorkerSettings
from otce_ray.models import ModelSpec
from otce_ray.models.identity import model_identity
from otce_ray.store import FEATURE_DTYPES


def run_extraction(
    model_specs: Sequence[ModelSpec | Mapping[str, Any]],
    dataset_specs_per_model: Mapping[str, Sequence[Mapping[str, Any]]],
    store: str,
    *,
    pixels_per_image: int = 1000,
    batch_size: int = 8,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    seed: int = 0,
    num_shards: int | None = None,
    max_workers: int | None = None,
    max_retries: int = 3,
    feature_dtype: str = "float16",
    decode_threads: int | None = None,
    allowed_entrypoints: Sequence[str] | None = None,
) -> list[ExtractionSummary]:
    """Fill ``{store}/{dataset}/{model}`` for every model and each of its datasets; one summary per pair, in order.

    Each dataset is listed once. ``num_shards`` None splits each dataset into shards of about ``IMAGES_PER_SHARD``
    images; ``max_workers`` None runs as many workers as the cluster can; ``allowed_entrypoints`` (module prefixes)
    restricts the Python entrypoints workers may import. Never raises for a bad model or dataset.
    """
    if pixels_per_image < 1 or batch_size < 1 or num_gpus < 0 or max_retries < 0:
        raise ValueError("pixels_per_image and batch_size must be >= 1, num_gpus and max_retries >= 0")
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {feature_dtype!r}")
    if not ray.is_initialized():
        ray.init()
    cluster = Cluster()
    check_gpus(num_gpus, cluster.view.largest("GPU"), "extraction.num_gpus")
    datasets = open_datasets(spec for specs in dataset_specs_per_model.values() for spec in specs)
    planned: list[StorePlan | ExtractionSummary] = []
    for entry in model_specs:
        name = entry.name if isinstance(entry, ModelSpec) else _name_of(entry)
        wanted = [_name_of(spec) for spec in dataset_specs_per_model.get(name, ())]
        try:
            spec = ModelSpec.from_dict(entry)
            identity = model_identity(spec)
        except ValueError as error:
            planned.extend(ExtractionSummary(name, dataset, "failed", error=describe(name, error))
                           for dataset in wanted or ["-"])
            continue
        for dataset_name in wanted:
            dataset = datasets[dataset_name]
            if isinstance(dataset, Exception):
                planned.append(ExtractionSummary(name, dataset_name, "failed", error=f"model {name!r}: {dataset}"))
                continue
            planned.append(plan_store(spec, dataset, store, pixels_per_image=pixels_per_image, seed=seed,
                                      num_shards=num_shards, feature_dtype=feature_dtype, model_identity=identity,
                                      dataset_fingerprint=dataset.fingerprint,
                                      allowed_entrypoints=allowed_entrypoints))
    done: dict[tuple[str, str], ExtractionSummary] = {}
    pool = WorkerPool(WorkerSettings(num_gpus, num_cpus, max_workers, decode_threads), cluster)
    jobs = ExtractionJobs(pool, batch_size=batch_size, max_retries=max_retries,
                          on_store=lambda summary: done.__setitem__((summary.model, summary.dataset), summary))
    jobs.add(plan for plan in planned if isinstance(plan, StorePlan))
    try:
        drive([jobs])
    finally:
        pool.shutdown()
    return [plan if isinstance(plan, ExtractionSummary) else done[(plan.model, plan.request.dataset)]
            for plan in planned]


def extract_model(model_spec: ModelSpec | Mapping[str, Any], dataset_spec: Mapping[str, Any], store: str,
                  **options: Any) -> ExtractionSummary:
    """Extract one model on one dataset into ``store`` (see ``run_extraction`` for the options)."""
    spec = ModelSpec.from_dict(model_spec)
    return run_extraction([spec], {spec.name: [dataset_spec]}, store, **options)[0]


def _name_of(entry: Any) -> str:
    """The 'name' of a model or dataset entry, even a malformed one, for its summary."""
    return str(entry.get("name", "?")) if isinstance(entry, Mapping) else "?"
