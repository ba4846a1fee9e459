"""Dataset specs: the dict a run config gives for one dataset, checked once and put in a canonical form.

What a spec may hold is declared in :mod:`otce_ray.schema` (``DATASET``; ``SHARD`` for the keys a run sets on each
shard), the same declarations the run config is checked against. Checking happens before any file is touched so
that a typo in a key is reported as a typo, naming the key, and not as a confusing file error later on a Ray worker.
The canonical form (defaults filled in, local roots made absolute) is what :func:`dataset_fingerprint` hashes, so two
spellings of the same dataset share pixel stores.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from otce_ray import fs
from otce_ray.schema import DATASET, SHARD, Problem, name_problem, quoted_path
from otce_ray.schema import DATASET_FORMATS as FORMATS  # noqa: F401 (re-exported by otce_ray.datasets)

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
    problem = name_problem(spec.get("name"))
    if problem:
        raise DatasetError(f"dataset spec key 'name': {problem}")
    name, fmt = spec["name"], spec.get("format")
    problems = DATASET.check({key: value for key, value in spec.items() if key not in SHARD.settings})[1]
    if problems:
        raise DatasetError(f"dataset {name!r}: " + "; ".join(_told(problem, fmt) for problem in problems))
    settings = DATASET.fields(fmt).settings
    out = {key: setting.default if spec.get(key) is None else spec[key] for key, setting in settings.items()}
    out["root"] = _root(out["root"])
    if out.get("cities") is None:
        out.pop("cities", None)  # absent: every city (readers test for the key)
    else:
        out["cities"] = sorted(set(out["cities"]))
    if fmt == "folder":
        out["label_map"] = {raw: out["label_map"][raw] for raw in sorted(out["label_map"])}
    if "shard_index" in spec or "num_shards" in spec:
        where = f"dataset {name!r}: spec key"
        out["shard_index"], out["num_shards"] = check_shard(spec.get("shard_index"), spec.get("num_shards"), where)
    return out


def _told(problem: Problem, fmt: str) -> str:
    """A problem in the reader's words: spec keys named as the user wrote them."""
    key = problem.path[0]
    if problem.kind == "unknown":
        allowed = ", ".join(sorted(DATASET.fields(fmt).settings))
        return f"spec key {key!r} is not a {fmt} dataset key; allowed: {allowed}"
    if problem.kind == "missing":
        return f"spec key {key!r} is required" + ("" if DATASET.always_required(key) else f" for format {fmt}")
    return f"spec key {quoted_path(problem.path)}: {problem.text}"


def check_shard(index: Any, count: Any, where: str = "shard") -> tuple[int, int]:
    """Validate a (shard_index, num_shards) pair: both integers, 0 <= index < count."""
    if index is None or count is None:
        raise DatasetError(f"{where} 'shard_index' and 'num_shards' must be given together")
    problems = SHARD.check({"shard_index": index, "num_shards": count})[1]
    if problems:
        raise DatasetError("; ".join(f"{where} {quoted_path(problem.path)}: {problem.text}" for problem in problems))
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


def _root(root: str) -> str:
    if fs.is_s3(root):
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))
