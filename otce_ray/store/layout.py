"""Where a pixel store keeps things: ``{store}/{dataset}/{model}/{key}/part-{shard:05d}.parquet`` plus a manifest.

``key`` hashes every setting that decides the store's content (``ExtractionRequest.key``), so runs with different
settings never share a file and a run never reads rows written for other settings; two runs with the same settings
write the same bytes. The manifest (``_manifest.json``) is written last, atomically, once every part is in place:
its presence is the completion marker. Stores of the layout before keys (parts directly under ``{model}``) are never
read: a run extracts its stores again under their key.
"""

from __future__ import annotations

from otce_ray import fs
from otce_ray.schema import require_name

MANIFEST = "_manifest.json"


def model_uri(store: str, dataset: str, model: str) -> str:
    """The folder of every store of (dataset, model), one subfolder per extraction key. Every path into a store is
    built here, so a name that is not folder-safe (``../x``) is a ValueError naming it, never a path elsewhere."""
    return fs.join(store, require_name(dataset, "dataset"), require_name(model, "model"))


def store_uri(store: str, dataset: str, model: str, key: str) -> str:
    return fs.join(model_uri(store, dataset, model), key)


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def part_uri(store: str, dataset: str, model: str, key: str, shard: int) -> str:
    return fs.join(store_uri(store, dataset, model, key), part_name(shard))


def manifest_uri(store: str, dataset: str, model: str, key: str) -> str:
    return fs.join(store_uri(store, dataset, model, key), MANIFEST)
