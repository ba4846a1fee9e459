"""Dataset specs: the dict a run config gives for one dataset, checked once and put in a canonical form.

Checking happens before any file is touched so that a typo in a key is reported as a typo, naming the key, and
not as a confusing file error later on a Ray worker. The canonical form (defaults filled in, local roots made
absolute) is what :func:`dataset_fingerprint` hashes, so two spellings of the same dataset share pixel stores.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from otce_ray import fs

FORMATS = ("cityscapes", "bdd100k", "gta5", "folder")
ON_ERROR = ("raise", "skip")

_COMMON_KEYS = {"name", "format", "root", "max_images", "seed", "on_error", "shard_index", "num_shards"}
_FORMAT_KEYS = {
    "cityscapes": {"split", "cities"},
    "bdd100k": {"split"},
    "gta5": set(),
    "folder": {"label_map", "ignore_index"},
}
_FORMAT_REQUIRED = {"cityscapes": {"split"}, "bdd100k": {"split"}, "gta5": set(), "folder": {"label_map"}}
# What decides which pixels a dataset yields; name and shard keys do not (every shard belongs to one dataset).
_CONTENT_KEYS = ("format", "root", "split", "cities", "max_images", "seed", "on_error", "label_map", "ignore_index")
# Bump when a reader changes what it yields for the same spec, so stores built by the old reader are not reused.
_READER_VERSION = 1


class DatasetError(ValueError):
    """Bad dataset input: the message names the spec key or the file; ``uri`` is the file, when there is one."""

    def __init__(self, message: str, uri: str | None = None):
        super().__init__(message)
        self.uri = uri


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check a dataset spec and return it with defaults filled in (``seed`` 0, ``on_error`` raise, ...)."""
    if not isinstance(spec, Mapping):
        raise DatasetError(f"a dataset spec must be a mapping, got {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise DatasetError(f"dataset spec key 'name': expected a non-empty string, got {name!r}")
    where = f"dataset {name!r}: spec key"
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise DatasetError(f"{where} 'format': expected one of {', '.join(FORMATS)}, got {fmt!r}")
    allowed = _COMMON_KEYS | _FORMAT_KEYS[fmt]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise DatasetError(f"{where} {unknown[0]!r} is not a {fmt} dataset key; allowed: {', '.join(sorted(allowed))}")
    for key in sorted({"root"} | _FORMAT_REQUIRED[fmt]):
        if key not in spec:
            raise DatasetError(f"{where} {key!r} is required for format {fmt}")

    out: dict[str, Any] = {"name": name, "format": fmt, "root": _root(spec["root"], where)}
    for key in ("split",) if "split" in _FORMAT_KEYS[fmt] else ():
        out[key] = _string(spec[key], f"{where} {key!r}")
    if "cities" in spec:
        cities = spec["cities"]
        if not isinstance(cities, (list, tuple)) or not cities or not all(isinstance(c, str) and c for c in cities):
            raise DatasetError(f"{where} 'cities': expected a non-empty list of city names, got {cities!r}")
        out["cities"] = sorted(set(cities))
    out["max_images"] = _optional_int(spec.get("max_images"), f"{where} 'max_images'", minimum=1)
    out["seed"] = _optional_int(spec.get("seed"), f"{where} 'seed'", minimum=0) or 0
    out["on_error"] = spec.get("on_error", "raise")
    if out["on_error"] not in ON_ERROR:
        raise DatasetError(f"{where} 'on_error': expected one of {', '.join(ON_ERROR)}, got {out['on_error']!r}")
    if fmt == "folder":
        out["label_map"] = _label_map(spec["label_map"], f"{where} 'label_map'")
        out["ignore_index"] = _optional_int(spec.get("ignore_index"), f"{where} 'ignore_index'", minimum=0)
        if out["ignore_index"] in out["label_map"]:
            raise DatasetError(f"{where} 'ignore_index': raw value {out['ignore_index']} is also a key of 'label_map'")
    if "shard_index" in spec or "num_shards" in spec:
        out["shard_index"], out["num_shards"] = check_shard(spec.get("shard_index"), spec.get("num_shards"), where)
    return out


def check_shard(index: Any, count: Any, where: str = "shard") -> tuple[int, int]:
    """Validate a (shard_index, num_shards) pair: both integers, 0 <= index < count."""
    count = _optional_int(count, f"{where} 'num_shards'", minimum=1)
    index = _optional_int(index, f"{where} 'shard_index'", minimum=0)
    if count is None or index is None:
        raise DatasetError(f"{where} 'shard_index' and 'num_shards' must be given together")
    if index >= count:
        raise DatasetError(f"{where} 'shard_index': {index} is out of range for num_shards {count}")
    return index, count


def dataset_fingerprint(spec: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit hash of what determines a dataset's content (not its name nor its sharding)."""
    canonical = normalize_spec(spec)
    content = {key: canonical.get(key) for key in _CONTENT_KEYS}
    content["label_map"] = sorted(content["label_map"].items()) if content["label_map"] else None
    if content["max_images"] is None:
        content["seed"] = None  # the seed only picks the max_images subset
    payload = json.dumps({"reader": _READER_VERSION, **content}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _root(value: Any, where: str) -> str:
    root = _string(value, f"{where} 'root'")
    if fs.is_s3(root):
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(value: Any, where: str, minimum: int) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < minimum:
        raise DatasetError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _label_map(value: Any, where: str) -> dict[int, int]:
    """Raw mask value -> class id. Class ids stop at 254 because 255 is the ignore id of every item's label."""
    if not isinstance(value, Mapping) or not value:
        raise DatasetError(f"{where}: expected a non-empty mapping of raw mask value -> class id, got {value!r}")
    for raw, class_id in value.items():
        if not (_is_int(raw) and raw >= 0 and _is_int(class_id) and 0 <= class_id < 255):
            raise DatasetError(f"{where}: entry {raw!r}: {class_id!r} must map a raw value >= 0 to a class id 0-254")
    return {raw: value[raw] for raw in sorted(value)}
