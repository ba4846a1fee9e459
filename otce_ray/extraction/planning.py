"""Planning one (model, dataset) pixel store: its request and the files of each shard, or why there is nothing to do.

The run plan calls ``plan_store`` once per store a model needs; a store already complete for the same settings comes
back as a "cached" ``ExtractionSummary``, one that cannot be planned as a "failed" one, the rest as a ``StorePlan``
that ``ExtractionJobs`` turns into shard calls.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from otce_ray.datasets import SegmentationDataset
from otce_ray.extraction.shard import ExtractionRequest
from otce_ray.models import ModelError, ModelSpec
from otce_ray.store import StoreError, missing_parts, read_manifest, set_aside, store_uri

logger = logging.getLogger("otce_ray")
IMAGES_PER_SHARD = 32  # default shard size: a few minutes of GPU work at most, so a retry loses little


@dataclass
class ExtractionSummary:
    """Outcome of one (model, dataset) pair: ``status`` is "ok", "cached" (already complete) or "failed".

    ``timings`` sums the shards' phase seconds (see ``ShardResult``); ``model_loads`` counts the loads it caused.
    """

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
    timings: dict[str, float] = field(default_factory=dict)
    model_loads: int = 0
    feature_dim: int | None = None
    logit_dim: int | None = None
    params: int | None = None  # the network's parameter count, as extraction loaded it (kept in the manifest)
    started_at: float | None = None  # wall clock (epoch seconds) of its first shard's dispatch, and of its last result
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StorePlan:
    """One (model, dataset) store to fill: what decides its content, and the files of each of its shards.

    ``extract`` None fills every shard and marks the store complete (its manifest); a tuple of shard indices fills
    only those (a racing stage's shards, ``only``) and writes no manifest: the store stays partial, under the same
    key, and a later plan of the whole store finds those parts by their footers and extracts only the others.
    """

    request: ExtractionRequest
    shards: tuple[SegmentationDataset, ...]
    extract: tuple[int, ...] | None = None

    @property
    def model(self) -> str:
        return self.request.model.name

    @property
    def todo(self) -> tuple[int, ...]:
        """The shards this plan extracts."""
        return tuple(range(len(self.shards))) if self.extract is None else self.extract

    def only(self, shards: Iterable[int]) -> "StorePlan":
        """The plan of some of the store's shards; of the whole store (complete, manifest written) when that is every
        shard."""
        chosen = tuple(sorted(set(shards)))
        return replace(self, extract=None if len(chosen) == len(self.shards) else chosen)


def plan_store(
    spec: ModelSpec,
    dataset: SegmentationDataset,
    store: str,
    *,
    pixels_per_image: int,
    seed: int,
    num_shards: int | None,
    feature_dtype: str,
    model_identity: Mapping[str, Any],
    dataset_fingerprint: str,
    allowed_entrypoints: Sequence[str] | None = None,
) -> StorePlan | ExtractionSummary:
    """The plan for one pair, or its final summary when its store is already complete for the same settings."""
    try:
        if len(dataset) == 0:
            raise ValueError(f"dataset {dataset.name!r} has no images")
        shards = min(len(dataset), num_shards or math.ceil(len(dataset) / IMAGES_PER_SHARD))
        request = ExtractionRequest(
            model=spec, dataset=dataset.name, dataset_fingerprint=dataset_fingerprint, store=store,
            pixels_per_image=pixels_per_image, seed=seed, num_shards=shards, feature_dtype=feature_dtype,
            model_identity=dict(model_identity),
            allowed_entrypoints=None if allowed_entrypoints is None else tuple(allowed_entrypoints),
        )
        manifest = _complete_manifest(store, dataset.name, spec.name, request.key)
        if manifest is not None:
            return ExtractionSummary(
                spec.name, dataset.name, "cached", manifest["rows"], manifest["images"], 0, len(manifest["parts"]),
                key=request.key, feature_dim=manifest.get("feature_dim"), logit_dim=manifest.get("logit_dim"),
                params=manifest.get("params"),
            )
    except Exception as error:  # noqa: BLE001 - this pair fails, the run goes on
        return ExtractionSummary(spec.name, dataset.name, "failed", error=describe(spec.name, error))
    return StorePlan(request, tuple(dataset.shard(index, shards) for index in range(shards)))


def _complete_manifest(store: str, dataset: str, model: str, key: str) -> dict[str, Any] | None:
    """The store's manifest if the store is complete and whole; a damaged one (a manifest that cannot be what it
    claims, or parts gone) is set aside, logged, and extracted again (its whole parts are reused)."""
    where = store_uri(store, dataset, model, key)
    try:
        manifest = read_manifest(store, dataset, model, key)
        gone = [] if manifest is None else missing_parts(where, manifest)
        if gone:
            raise StoreError(f"pixel store {where}: part(s) {', '.join(gone)} are missing", damaged=where)
    except StoreError as error:
        if error.damaged is None:
            raise
        logger.warning("model %r: %s; the store is set aside and extracted again", model, error)
        set_aside(error.damaged, str(error))
        return None
    return manifest


def describe(model: str, error: BaseException) -> str:
    """An error as recorded against a model: a ModelError already names it."""
    return str(error) if isinstance(error, ModelError) else f"model {model!r}: {type(error).__name__}: {error}"
