"""One unit of extraction work: (model, dataset, shard) -> one Parquet part, skipped when already written.

This is what an extraction worker runs, but nothing here imports Ray: it can be called directly (the GPU check does),
and it never raises for a bad model or dataset. Failures come back as a ``ShardResult`` carrying the message, so the
driver records them against that model; only a dying worker escapes (and the driver retries the shard elsewhere).
The shard's files come with the call (``images``, a view of the dataset the run plan listed once), so a worker never
lists a dataset; the model comes from the worker's ``ModelCache`` when it holds one.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from otce_ray import __version__
from otce_ray.datasets import SegmentationDataset
from otce_ray.extraction.decode import Stopwatch, decoded
from otce_ray.extraction.pixels import extract_pixels
from otce_ray.models import ModelError, ModelSpec
from otce_ray.models.cache import ModelCache
from otce_ray.store import part_metadata, part_uri, pixel_table, write_part

DECODE_THREADS = 4  # images decoded side by side ahead of the forward pass
# Bump when extraction changes what it writes for the same inputs (pixel sampling, feature sampling, the schema),
# so stores written by the old code are not reused.
EXTRACTION_VERSION = 3


@dataclass(frozen=True)
class ExtractionRequest:
    """Everything that decides the content of one (model, dataset) pixel store; ``key`` hashes it."""

    model: ModelSpec
    dataset: str
    dataset_fingerprint: str
    store: str
    pixels_per_image: int
    seed: int
    num_shards: int
    feature_dtype: str = "float16"
    model_identity: Mapping[str, Any] = field(default_factory=dict)  # its files' digests, its code (models.identity)
    allowed_entrypoints: tuple[str, ...] | None = None  # checked again on the worker; not part of the content

    @property
    def key(self) -> str:
        content = {
            "model": self.model.fingerprint(),
            "model_identity": dict(self.model_identity),
            "extraction": EXTRACTION_VERSION,
            "dataset": self.dataset_fingerprint,
            "pixels_per_image": self.pixels_per_image,
            "seed": self.seed,
            "num_shards": self.num_shards,
            "feature_dtype": self.feature_dtype,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]

    def metadata(self, feature_dim: int, logit_dim: int | None, images: int, rows: int, **extra: Any) -> dict[str, Any]:
        """Provenance written into every part's footer (with ``shard``) and into the manifest (with ``parts``)."""
        return {
            "key": self.key,
            "model": self.model.name,
            "model_spec": self.model.to_dict(),
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "feature_layer": self.model.feature_layer or "output",
            "feature_dim": feature_dim,
            "logit_dim": logit_dim,
            "feature_dtype": self.feature_dtype,
            "pixels_per_image": self.pixels_per_image,
            "seed": self.seed,
            "num_shards": self.num_shards,
            "images": images,
            "rows": rows,
            "otce_ray_version": __version__,
            **extra,
        }


@dataclass(frozen=True)
class ShardResult:
    """What a task sends back: a few numbers and, on failure, the message (never arrays).

    ``timings`` holds the seconds of each phase (``otce_ray.extraction.decode.PHASES``): loading the model (0 when the
    worker already held it), decoding images (summed over the decode threads), waiting for a decoded image, the
    forward passes, pixel sampling and writing the part.
    """

    shard: int
    status: str  # "written" | "skipped" | "failed"
    rows: int = 0
    images: int = 0
    feature_dim: int | None = None
    logit_dim: int | None = None
    seconds: float = 0.0
    skipped_files: tuple[str, ...] = ()
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    model_loads: int = 0
    params: int | None = None  # the loaded network's parameter count (None: a part written before it was recorded)


def run_shard(
    request: ExtractionRequest,
    shard: int,
    images: SegmentationDataset,
    batch_size: int,
    *,
    models: ModelCache | None = None,
    decode_threads: int = DECODE_THREADS,
    device: str | None = None,
) -> ShardResult:
    """Extract shard ``shard`` (its files: ``images``) into its part, unless a part written for the same ``key`` is
    already there. ``models`` keeps loaded models between calls; without it the model is loaded for this call."""
    start = time.perf_counter()
    uri = part_uri(request.store, request.dataset, request.model.name, request.key, shard)
    try:
        existing = part_metadata(uri)
        if existing is not None and existing.get("key") == request.key:
            return ShardResult(
                shard, "skipped", existing["rows"], existing["images"], existing["feature_dim"], existing["logit_dim"],
                params=existing.get("params"),
            )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return _extract(request, shard, images, batch_size, uri, start, models or ModelCache(1), decode_threads,
                        device)
    except Exception as error:  # recorded against this model; the run goes on with the others
        return ShardResult(shard, "failed", seconds=time.perf_counter() - start, error=_describe(request, shard, error))


def _extract(
    request: ExtractionRequest,
    shard: int,
    images: SegmentationDataset,
    batch_size: int,
    uri: str,
    start: float,
    models: ModelCache,
    decode_threads: int,
    device: str,
) -> ShardResult:
    stopwatch = Stopwatch()
    with stopwatch.measure("load"):
        model, loaded = models.get(request.model, request.model_identity, device, request.allowed_entrypoints)
    items = decoded(images, threads=decode_threads, lookahead=max(2 * batch_size, decode_threads), stopwatch=stopwatch)
    columns = extract_pixels(
        model,
        items,
        pixels_per_image=request.pixels_per_image,
        batch_size=batch_size,
        seed=request.seed,
        stopwatch=stopwatch,
    )
    feature_dim = columns.features.shape[1]
    logit_dim = None if columns.logits is None else columns.logits.shape[1]
    metadata = request.metadata(feature_dim, logit_dim, columns.images, len(columns.labels), shard=shard,
                                params=model.parameter_count)
    with stopwatch.measure("write"):
        table = pixel_table(
            columns.image_ids,
            columns.rows,
            columns.cols,
            columns.labels,
            columns.features,
            columns.logits,
            metadata,
            request.feature_dtype,
        )
        write_part(uri, table)
    return ShardResult(
        shard,
        "written",
        table.num_rows,
        columns.images,
        feature_dim,
        logit_dim,
        time.perf_counter() - start,
        tuple(f"{entry.uri}: {entry.reason}" for entry in images.skipped),
        timings=dict(stopwatch.seconds),
        model_loads=int(loaded),
        params=model.parameter_count,
    )


def _describe(request: ExtractionRequest, shard: int, error: Exception) -> str:
    where = f"dataset {request.dataset!r} shard {shard}/{request.num_shards}"
    if isinstance(error, ModelError):
        return f"{error} ({where})"
    origin = traceback.extract_tb(error.__traceback__)[-1]
    return (
        f"model {request.model.name!r}: {where}: {type(error).__name__}: {error} "
        f"(at {origin.filename}:{origin.lineno})"
    )
