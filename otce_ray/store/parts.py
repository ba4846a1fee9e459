"""Writing parts and the manifest of a pixel store, atomically, and telling what is already complete.

A part is serialised in memory and written in one atomic put (rename locally, single PUT on S3), so a killed task
leaves either the old state or the whole file. Reuse is decided by the ``key`` in a part's footer or in the
manifest: a store written for other settings (pixels per image, seed, model or dataset content) never counts.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from otce_ray import fs
from otce_ray.store.layout import manifest_uri
from otce_ray.store.schema import StoreError, decode_metadata

ROW_GROUP_ROWS = 8192  # small enough that a sampled read skips most of a large part


def write_part(uri: str, table: pa.Table) -> int:
    """Write one part atomically; returns its size in bytes."""
    sink = pa.BufferOutputStream()
    # lz4 and no statistics on the vector columns: random-looking floats barely compress, and this write is on the
    # extraction hot path (3.5x faster than zstd with full statistics, 10% larger)
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_ROWS,
        compression="lz4",
        use_dictionary=["image_id"],
        write_statistics=["image_id", "row", "col", "label"],
    )
    data = sink.getvalue().to_pybytes()
    fs.write_bytes_atomic(uri, data)
    return len(data)


def part_metadata(uri: str) -> dict[str, Any] | None:
    """The ``otce_ray`` metadata of a part from its footer alone, or None when it is absent or unreadable."""
    filesystem, path = fs.resolve(uri)
    try:
        with filesystem.open_input_file(path) as handle:
            return decode_metadata(pq.read_metadata(handle).metadata)
    except FileNotFoundError:
        return None
    except pa.ArrowInvalid:  # a damaged or foreign file is not reusable: the caller rewrites it
        return None


def write_manifest(store: str, dataset: str, model: str, manifest: Mapping[str, Any]) -> None:
    """Mark a (dataset, model) store complete; call only once every listed part is written."""
    fs.write_bytes_atomic(manifest_uri(store, dataset, model), json.dumps(dict(manifest), indent=1).encode())


def retract_manifest(store: str, dataset: str, model: str) -> None:
    """Withdraw the completion mark (before replacing a store written for other settings)."""
    filesystem, path = fs.resolve(manifest_uri(store, dataset, model))
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        pass


def read_manifest(store: str, dataset: str, model: str) -> dict[str, Any] | None:
    """The manifest of a complete store, or None when the store is absent or incomplete."""
    uri = manifest_uri(store, dataset, model)
    try:
        return json.loads(fs.read_bytes(uri))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise StoreError(f"{uri}: not a valid manifest ({error}); delete it to re-extract this store") from error


def is_complete(store: str, dataset: str, model: str, key: str | None = None) -> bool:
    """Whether every part of (dataset, model) is written; with ``key``, also that it was written for those settings."""
    manifest = read_manifest(store, dataset, model)
    return manifest is not None and (key is None or manifest.get("key") == key)
