"""Shared by the store and pipeline tests: small pixel stores whose rows can be checked against what was written."""

from __future__ import annotations

import numpy as np

from otce_ray.store import part_uri, pixel_table, write_manifest, write_part
from otce_ray.store.layout import part_name


def columns(rows: int, dim: int = 6, classes: int = 3, seed: int = 0, offset: int = 0) -> dict:
    """``pixel_table`` columns of ``rows`` pixels numbered from ``offset`` (seeded labels, features and logits)."""
    rng = np.random.default_rng(seed)
    index = np.arange(offset, offset + rows)
    return {
        "image_ids": np.array([f"img{i // 100:04d}" for i in index], dtype=object),
        "rows": (index % 100).astype(np.int32),
        "cols": (index // 100).astype(np.int32),
        "labels": rng.integers(0, classes, rows).astype(np.int16),
        # the first feature is the global row index, so every read can be checked against what was written
        "features": np.column_stack([index, rng.normal(size=(rows, dim - 1))]).astype(np.float32),
        "logits": rng.normal(size=(rows, classes)).astype(np.float32),
    }


def write_store(store: str, parts: list[int], *, key: str = "k1", dtype: str = "float32", logits: bool = True,
                dataset: str = "ds", model: str = "m") -> int:
    """A complete store of (dataset, model) with ``parts`` rows per part; returns its row count."""
    offset, entries = 0, []
    for shard, rows in enumerate(parts):
        data = columns(rows, seed=shard, offset=offset)
        if not logits:
            data["logits"] = None
        table = pixel_table(**data, metadata={"key": key, "rows": rows}, feature_dtype=dtype)
        write_part(part_uri(store, dataset, model, key, shard), table)
        entries.append({"file": part_name(shard), "shard": shard, "rows": rows, "images": 1})
        offset += rows
    write_manifest(store, dataset, model, {"key": key, "feature_dim": 6, "logit_dim": 3 if logits else None,
                                      "parts": entries, "rows": offset, "images": len(parts)})
    return offset
