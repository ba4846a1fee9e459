"""The Ray shell around ``run_shard``: plan (model, dataset, shard) tasks, keep a bounded number in flight, record.

Work is planned per (model, dataset) pair. A pair whose store is complete for the same settings is not touched;
otherwise every shard becomes a task asking for ``num_gpus`` (fractions allowed) that writes its own part and
returns a small ``ShardResult``. Ray retries a task whose worker dies; a model that fails is recorded with its
error, its remaining shards are dropped, and the other pairs go on. The manifest is written last, by the driver.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import ray

from otce_ray import fs
from otce_ray.config import check_gpus
from otce_ray.extraction.shard import ExtractionRequest, ShardResult, run_shard
from otce_ray.models import ModelError, ModelSpec
from otce_ray.store import FEATURE_DTYPES, read_manifest, retract_manifest, write_manifest
from otce_ray.store.layout import part_name

IMAGES_PER_SHARD = 32  # default shard size: a few minutes of GPU work at most, so a retry loses little


@dataclass
class ExtractionSummary:
    """Outcome of one (model, dataset) pair: ``status`` is "ok", "cached" (already complete) or "failed"."""

    model: str
    dataset: str
    status: str
    rows: int = 0
    images: int = 0
    shards_written: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    error: str | None = None
    key: str | None = None
    skipped_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Job:
    request: ExtractionRequest
    results: dict[int, ShardResult] = field(default_factory=dict)
    error: str | None = None
    started: float | None = None
    finished: float = 0.0


def extract_model(
    model_spec: ModelSpec | Mapping[str, Any],
    dataset_spec: Mapping[str, Any],
    store: str,
    *,
    pixels_per_image: int = 1000,
    batch_size: int = 8,
    num_gpus: float = 0.0,
    seed: int = 0,
    num_shards: int | None = None,
    max_in_flight: int | None = None,
    **options: Any,
) -> ExtractionSummary:
    """Extract one model on one dataset into ``store`` (see ``run_extraction`` for the options)."""
    spec = ModelSpec.from_dict(model_spec)
    return run_extraction(
        [spec],
        {spec.name: [dataset_spec]},
        store,
        pixels_per_image=pixels_per_image,
        batch_size=batch_size,
        num_gpus=num_gpus,
        seed=seed,
        num_shards=num_shards,
        max_in_flight=max_in_flight,
        **options,
    )[0]


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
    max_in_flight: int | None = None,
    max_retries: int = 3,
    feature_dtype: str = "float16",
) -> list[ExtractionSummary]:
    """Fill ``{store}/{dataset}/{model}`` for every model and each of its datasets; one summary per pair, in order.

    ``num_shards`` None splits each dataset into shards of about ``IMAGES_PER_SHARD`` images; ``max_in_flight``
    None allows twice the tasks the cluster can run at once. Never raises for a bad model or dataset.
    """
    if pixels_per_image < 1 or batch_size < 1 or num_gpus < 0 or max_retries < 0:
        raise ValueError("pixels_per_image and batch_size must be >= 1, num_gpus and max_retries >= 0")
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {feature_dtype!r}")
    if not ray.is_initialized():
        ray.init()
    planned: list[_Job | ExtractionSummary] = []
    for entry in model_specs:
        try:
            spec = ModelSpec.from_dict(entry)
        except ValueError as error:
            name = _name_of(entry)
            datasets = [_name_of(d) for d in dataset_specs_per_model.get(name, ())] or ["-"]
            planned.extend(ExtractionSummary(name, dataset, "failed", error=str(error)) for dataset in datasets)
            continue
        for dataset_spec in dataset_specs_per_model.get(spec.name, ()):
            planned.append(_plan(spec, dataset_spec, store, pixels_per_image, seed, num_shards, feature_dtype))
    jobs = [job for job in planned if isinstance(job, _Job)]
    if jobs:
        check_gpus(num_gpus, ray.cluster_resources().get("GPU", 0), "extraction.num_gpus")
        task = ray.remote(run_shard).options(
            num_gpus=num_gpus, num_cpus=num_cpus, max_retries=max_retries, retry_exceptions=False
        )
        _dispatch(jobs, task, batch_size, max_in_flight or _default_in_flight(num_gpus, num_cpus))
    return [_finish(job, store) if isinstance(job, _Job) else job for job in planned]


def _plan(
    spec: ModelSpec,
    dataset_spec: Mapping[str, Any],
    store: str,
    pixels_per_image: int,
    seed: int,
    num_shards: int | None,
    feature_dtype: str,
) -> _Job | ExtractionSummary:
    """The job for one pair, or its final summary when it is already complete or cannot even be planned."""
    from otce_ray.datasets import dataset_fingerprint, open_dataset

    dataset_name = _name_of(dataset_spec)
    try:
        dataset = open_dataset(dataset_spec)
        if len(dataset) == 0:
            raise ValueError(f"dataset {dataset.name!r} has no images")
        dataset_name = dataset.name
        shards = min(len(dataset), num_shards or math.ceil(len(dataset) / IMAGES_PER_SHARD))
        request = ExtractionRequest(
            model=spec,
            dataset_spec=dict(dataset_spec),
            dataset=dataset_name,
            dataset_fingerprint=dataset_fingerprint(dataset_spec),
            store=store,
            pixels_per_image=pixels_per_image,
            seed=seed,
            num_shards=shards,
            feature_dtype=feature_dtype,
            model_files=spec.file_stamps(),
        )
        manifest = read_manifest(store, dataset_name, spec.name)
        if manifest is not None and manifest.get("key") == request.key:
            return ExtractionSummary(
                spec.name, dataset_name, "cached", manifest["rows"], manifest["images"], 0, len(manifest["parts"]),
                key=request.key,
            )
        if manifest is not None:  # written for other settings: it must not read as complete while parts change
            retract_manifest(store, dataset_name, spec.name)
    except Exception as error:
        message = str(error) if isinstance(error, ModelError) else f"model {spec.name!r}: {type(error).__name__}: {error}"
        return ExtractionSummary(spec.name, dataset_name, "failed", error=message)
    return _Job(request)


def _default_in_flight(num_gpus: float, num_cpus: float) -> int:
    resources = ray.cluster_resources()
    slots = resources["GPU"] / num_gpus if num_gpus > 0 else resources.get("CPU", 1) / max(num_cpus, 1e-3)
    return max(1, 2 * int(slots))


def _dispatch(jobs: list[_Job], task: Any, batch_size: int, max_in_flight: int) -> None:
    """Submit shards job by job with at most ``max_in_flight`` outstanding; record each result as it lands."""
    queue = deque((job, shard) for job in jobs for shard in range(job.request.num_shards))
    in_flight: dict[Any, tuple[_Job, int]] = {}
    while queue or in_flight:
        while queue and len(in_flight) < max_in_flight:
            job, shard = queue.popleft()
            if job.error is None:
                job.started = job.started or time.perf_counter()
                in_flight[task.remote(job.request, shard, batch_size)] = (job, shard)
        if not in_flight:
            continue
        [ref], _ = ray.wait(list(in_flight), num_returns=1)
        job, shard = in_flight.pop(ref)
        try:
            result = ray.get(ref)
        except Exception as error:  # the worker died more often than max_retries allows
            result = ShardResult(shard, "failed", error=f"model {job.request.model.name!r}: shard {shard} task lost: {error}")
        job.results[shard] = result
        job.finished = time.perf_counter()
        if result.status == "failed" and job.error is None:
            job.error = result.error


def _finish(job: _Job, store: str) -> ExtractionSummary:
    """Write the manifest of a job whose shards all succeeded, and summarise it."""
    request = job.request
    results = [job.results[shard] for shard in sorted(job.results)]
    summary = ExtractionSummary(
        request.model.name,
        request.dataset,
        "failed" if job.error else "ok",
        rows=sum(r.rows for r in results),
        images=sum(r.images for r in results),
        shards_written=sum(r.status == "written" for r in results),
        shards_reused=sum(r.status == "skipped" for r in results),
        seconds=job.finished - (job.started or job.finished),
        error=job.error,
        key=request.key,
        skipped_files=[entry for r in results for entry in r.skipped_files],
    )
    if job.error:
        return summary
    first = results[0]
    parts = [{"file": part_name(r.shard), "shard": r.shard, "rows": r.rows, "images": r.images} for r in results]
    manifest = request.metadata(first.feature_dim, first.logit_dim, summary.images, summary.rows, parts=parts)
    try:
        write_manifest(store, request.dataset, request.model.name, manifest)
    except Exception as error:
        summary.status, summary.error = "failed", f"model {request.model.name!r}: cannot write manifest: {error}"
    return summary


def _name_of(entry: Any) -> str:
    """The 'name' of a model or dataset entry, even a malformed one, for its summary."""
    return str(entry.get("name", "?")) if isinstance(entry, Mapping) else "?"
