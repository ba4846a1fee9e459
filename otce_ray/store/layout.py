"""Where a pixel store keeps things: ``{store}/{dataset}/{model}/part-{shard:05d}.parquet`` plus ``_manifest.json``.

The manifest is written last, atomically, once every part is in place: its presence is the completion marker.
"""

from __future__ import annotations

from otce_ray import fs

MANIFEST = "_manifest.json"


def model_uri(store: str, dataset: str, model: str) -> str:
    return fs.join(store, dataset, model)


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def part_uri(store: str, dataset: str, model: str, shard: int) -> str:
    return fs.join(model_uri(store, dataset, model), part_name(shard))


def manifest_uri(store: str, dataset: str, model: str) -> str:
    return fs.join(model_uri(store, dataset, model), MANIFEST)
