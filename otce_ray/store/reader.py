"""Reading a complete pixel store back as arrays, optionally a seeded uniform sample of its rows.

Only what is needed is read: the manifest says how many rows each part holds, a sample touches only the row groups
that contain chosen rows, and the logits column is skipped unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from otce_ray import fs
from otce_ray.store.layout import model_uri
from otce_ray.store.parts import read_manifest
from otce_ray.store.schema import StoreError


@dataclass(frozen=True)
class Pixels:
    """Sampled pixels of one (dataset, model) store, row-aligned arrays."""

    features: np.ndarray  # (n, d) float32
    labels: np.ndarray  # (n,) int64
    logits: np.ndarray | None  # (n, C) float32, None when not stored or not asked for
    image_ids: np.ndarray  # (n,) str objects
    rows: np.ndarray  # (n,) int32, label resolution
    cols: np.ndarray  # (n,) int32
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return len(self.labels)


def read_pixels(
    store: str,
    dataset: str,
    model: str,
    sample: int | None = None,
    seed: int = 0,
    *,
    with_logits: bool = True,
    key: str | None = None,
) -> Pixels:
    """Read the pixels of (dataset, model); with ``sample``, at most that many rows drawn uniformly by ``seed``.

    Raises ``StoreError`` when the store is missing or incomplete, or (with ``key``) written for other settings.
    """
    manifest = read_manifest(store, dataset, model)
    where = model_uri(store, dataset, model)
    if manifest is None:
        raise StoreError(f"no complete pixel store for model {model!r} on dataset {dataset!r} at {where}")
    if key is not None and manifest.get("key") != key:
        raise StoreError(f"pixel store {where} was written for other settings (key {manifest.get('key')} != {key})")
    columns = ["image_id", "row", "col", "label", "features"]
    if with_logits and manifest.get("logit_dim"):
        columns.append("logits")
    counts = np.array([part["rows"] for part in manifest["parts"]], dtype=np.int64)
    chosen = _choose(int(counts.sum()), sample, seed)
    starts = np.concatenate([[0], np.cumsum(counts)])
    tables = []
    for part, start, stop in zip(manifest["parts"], starts[:-1], starts[1:]):
        local = None if chosen is None else chosen[(chosen >= start) & (chosen < stop)] - start
        if local is None or local.size:
            tables.append(_read_part(fs.join(where, part["file"]), columns, local))
    table = pa.concat_tables(tables)
    return Pixels(
        features=_matrix(table, "features", manifest["feature_dim"]),
        labels=table.column("label").to_numpy().astype(np.int64),
        logits=_matrix(table, "logits", manifest["logit_dim"]) if "logits" in columns else None,
        image_ids=table.column("image_id").to_numpy(zero_copy_only=False),
        rows=table.column("row").to_numpy(),
        cols=table.column("col").to_numpy(),
        manifest=manifest,
    )


def _choose(total: int, sample: int | None, seed: int) -> np.ndarray | None:
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be a positive number of pixels, got {sample}")
    if sample is None or sample >= total:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=sample, replace=False))


def _read_part(uri: str, columns: list[str], local: np.ndarray | None) -> pa.Table:
    """Read a part, or only the row groups that hold the ``local`` row indices (sorted) and take those rows."""
    filesystem, path = fs.resolve(uri)
    with filesystem.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        if local is None:
            return parquet.read(columns=columns)
        sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        group_starts = np.concatenate([[0], np.cumsum(sizes)])
        groups = np.unique(np.searchsorted(group_starts, local, side="right") - 1)
        table = parquet.read_row_groups(groups.tolist(), columns=columns)
    kept_starts = group_starts[groups]
    offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes)[groups])])
    group_of = np.searchsorted(kept_starts, local, side="right") - 1
    return table.take(pa.array(local - kept_starts[group_of] + offsets[group_of]))


def _matrix(table: pa.Table, column: str, width: int) -> np.ndarray:
    values = table.column(column).combine_chunks().flatten()
    return values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)
