"""Writing parts and the manifest of a pixel store, atomically, and telling what is already complete.

A part is serialised in memory and written in one atomic put (rename locally, single PUT on S3), so a killed task
leaves either the old state or the whole file. A store's folder is its ``key`` (see ``layout``), and every part's
footer and the manifest carry that key too: a part whose footer cannot be read or names another key is written
again, and readers refuse a part whose footer disagrees with the manifest.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from otce_ray import fs
from otce_ray.store.layout import MANIFEST, manifest_uri, model_uri, part_name, part_uri, store_uri
from otce_ray.store.schema import StoreError, decode_metadata

ROW_GROUP_ROWS = 8192  # small enough that a sampled read skips most of a large part


def write_part(uri: str, table: pa.Table) -> int:
    """Write one part atomically; returns its size in bytes."""
    data = part_bytes(table)
    fs.write_bytes_atomic(uri, data)
    return len(data)


def part_bytes(table: pa.Table) -> bytes:
    """A part serialised in memory (also how a worker warms up Parquet's writer before its first shard)."""
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
    return sink.getvalue().to_pybytes()


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
    """Mark the store of ``manifest["key"]`` complete, once every part it lists is verified in place (its footer
    read: written for this key, with the rows the manifest counts); a StoreError naming the parts otherwise, so an
    incomplete store is never marked complete."""
    where = store_uri(store, dataset, model, manifest["key"])
    problems = [problem for part in manifest["parts"] if (problem := _part_problem(where, part, manifest["key"]))]
    if problems:
        raise StoreError(f"pixel store {where} not marked complete: {'; '.join(problems)}", damaged=where)
    fs.write_bytes_atomic(fs.join(where, MANIFEST), json.dumps(dict(manifest), indent=1).encode())


def _part_problem(where: str, part: Mapping[str, Any], key: str) -> str | None:
    uri = fs.join(where, part["file"])
    filesystem, path = fs.resolve(uri)
    try:
        with filesystem.open_input_file(path) as handle:
            footer = pq.read_metadata(handle)
    except FileNotFoundError:
        return f"part {part['file']} is missing"
    except (OSError, pa.ArrowException) as error:
        return f"part {part['file']} is unreadable ({error})"
    if (decode_metadata(footer.metadata) or {}).get("key") != key:
        return f"part {part['file']} was written for other settings"
    if footer.num_rows != part["rows"]:
        return f"part {part['file']} holds {footer.num_rows} rows, the manifest counts {part['rows']}"
    return None


# What every manifest holds (readers need each): a manifest without one is damaged, not half-read.
_MANIFEST_FIELDS = {"key": str, "rows": int, "images": int, "feature_dim": int, "parts": list}
_PART_FIELDS = {"file": str, "rows": int}


def read_manifest(store: str, dataset: str, model: str, key: str) -> dict[str, Any] | None:
    """The manifest of the complete store of ``key``, or None when it is absent; a StoreError (``damaged`` set)
    naming the file and what is wrong when it cannot be what it claims."""
    uri = manifest_uri(store, dataset, model, key)
    where = store_uri(store, dataset, model, key)
    try:
        manifest = json.loads(fs.read_bytes(uri))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{uri}: not a valid manifest ({error})", damaged=where) from error
    problem = _manifest_problem(manifest, key)
    if problem:
        raise StoreError(f"{uri}: {problem}", damaged=where)
    return manifest


def _manifest_problem(manifest: Any, key: str) -> str | None:
    if not isinstance(manifest, dict):
        return f"not a valid manifest (a JSON {type(manifest).__name__}, not an object)"
    if manifest.get("key") != key:
        return f"a manifest for key {manifest.get('key')!r} in the folder of key {key!r}"
    missing = [name for name, kind in _MANIFEST_FIELDS.items() if not isinstance(manifest.get(name), kind)]
    parts = manifest.get("parts") if isinstance(manifest.get("parts"), list) else []
    if any(not isinstance(part, dict) or not all(isinstance(part.get(n), k) for n, k in _PART_FIELDS.items())
           for part in parts):
        missing.append("parts[].file/rows")
    if missing:
        return f"not a valid manifest (missing or malformed: {', '.join(missing)})"
    if sum(part["rows"] for part in parts) != manifest["rows"]:
        return f"its parts count {sum(part['rows'] for part in parts)} rows, it says {manifest['rows']}"
    return None


def parts_manifest(store: str, dataset: str, model: str, key: str, shards: Sequence[int]) -> dict[str, Any]:
    """What the parts of ``shards`` of the store of ``key`` hold, from their footers, in a manifest's form (key, rows,
    images, feature and logit width, parts) for a reader: how a racing stage reads a store that is still partial.

    It is never written: only ``write_manifest`` marks a store complete, so a partial store is never taken for one. A
    StoreError names a part that is missing, unreadable or written for other settings (the next run extracts it
    again: ``run_shard`` rewrites a part whose footer does not name its key).
    """
    where = store_uri(store, dataset, model, key)
    footers = [(shard, part_metadata(part_uri(store, dataset, model, key, shard))) for shard in shards]
    wrong = [part_name(shard) for shard, footer in footers if footer is None or footer.get("key") != key]
    if wrong or not footers:
        raise StoreError(f"pixel store {where}: part(s) {', '.join(wrong) or '(none asked)'} missing, unreadable or "
                         "written for other settings")
    parts = [{"file": part_name(shard), "shard": shard, "rows": int(footer["rows"]), "images": int(footer["images"])}
             for shard, footer in footers]
    first = footers[0][1]
    return {"key": key, "rows": sum(part["rows"] for part in parts), "images": sum(part["images"] for part in parts),
            "feature_dim": first["feature_dim"], "logit_dim": first["logit_dim"], "parts": parts}


def complete_keys(store: str, dataset: str, model: str) -> list[str]:
    """The keys of the complete stores of (dataset, model), for a reader that does not know which one it wants."""
    try:
        files = fs.list_files(model_uri(store, dataset, model))
    except FileNotFoundError:
        return []
    return sorted(path.split("/")[0] for path in files if path.count("/") == 1 and path.endswith("/" + MANIFEST))


def missing_parts(where: str, manifest: Mapping[str, Any]) -> list[str]:
    """The parts a manifest lists that are not in its store folder ``where`` (one listing)."""
    try:
        present = set(fs.list_files(where))
    except FileNotFoundError:
        present = set()
    return [part["file"] for part in manifest["parts"] if part["file"] not in present]


DAMAGED = "_damaged.json"


def set_aside(where: str, reason: str) -> None:
    """Take a damaged store out of use: its manifest is replaced by ``_damaged.json`` (the reason and the old
    manifest's text), so the store counts as incomplete and is extracted again; parts still whole are reused."""
    manifest = fs.join(where, MANIFEST)
    try:
        old = fs.read_bytes(manifest).decode("utf-8", "replace")
    except FileNotFoundError:
        old = None
    fs.write_bytes_atomic(fs.join(where, DAMAGED), json.dumps({"reason": reason, "manifest": old}, indent=1).encode())
    fs.delete(manifest)
