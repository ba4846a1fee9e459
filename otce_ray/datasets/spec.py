"""Dataset specs: the dict a run config gives for one dataset, checked once and put in a canonical form.

What a spec may hold is declared here (``DATASET``: the keys every format shares, and each format's own keys from
its ``layouts.LAYOUTS`` entry; ``SHARD`` for the keys a run sets on each shard), the same declarations the run config
is checked against. Checking happens before any file is touched so that a typo in a key is reported as a typo,
naming the key, and not as a confusing file error later on a Ray worker. The canonical form (defaults filled in,
local roots made absolute) is what :func:`dataset_fingerprint` hashes, so two spellings of the same dataset share
pixel stores; which keys it hashes is what their declarations say (``content``).
"""

from __future__ import annotations

import hashlib
import json
import os
from numbers import Integral
from typing import Any, Mapping

from otce_ray import fs
from otce_ray.datasets.errors import DatasetError
from otce_ray.datasets.layouts import LAYOUTS
from otce_ray.schema import (
    NAME,
    ByFormat,
    Fields,
    Interval,
    Location,
    Options,
    Problem,
    Rule,
    Setting,
    name_problem,
    quoted_path,
)

# --- the declaration ------------------------------------------------------------------------------------------------

DATASET_FORMATS = tuple(LAYOUTS)
ON_ERROR = ("raise", "skip")

DATASET = ByFormat(
    what="a dataset spec",
    common={
        "name": Setting(NAME, doc="one name means one dataset: pixel stores are keyed by it", content=False),
        "format": Setting(Options(DATASET_FORMATS), doc="the file layout", content=True),
        "root": Setting(Location("directory"), doc="the dataset's folder, local or s3://", content=True),
        "max_images": Setting(Interval(Integral, 1), None, "a seeded subset of this many images (it keeps its "
                                                             "images when max_images grows); null: every image",
                              content=True),
        "seed": Setting(Interval(Integral, 0), 0, "picks the max_images subset", content=True),
        "on_error": Setting(Options(ON_ERROR), "raise", "skip: unreadable files are skipped, counted and reported",
                            content=True),
    },
    formats={layout.format: layout.fields for layout in LAYOUTS.values()},
)


def _shard_in_range(shard_index: int, num_shards: int) -> str | None:
    return f"{shard_index} is out of range for num_shards {num_shards}" if shard_index >= num_shards else None


# Set by the run on each shard's spec, never by a user: the dataset reader accepts them, a config does not. Every
# shard belongs to one dataset, so they decide no content.
SHARD = Fields({
    "shard_index": Setting(Interval(Integral, 0), doc="which shard of the dataset's images", content=False),
    "num_shards": Setting(Interval(Integral, 1), doc="how many shards the images are dealt into", content=False),
}, rules=(Rule(("shard_index", "num_shards"), _shard_in_range),))

FORMATS = DATASET_FORMATS


def _content_keys(spec: ByFormat) -> tuple[str, ...]:
    """Every key that some format of ``spec`` declares as deciding content, sorted."""
    declared = [spec.common, *(fields.settings for fields in spec.formats.values())]
    return tuple(sorted({key for settings in declared for key, setting in settings.items() if setting.content}))


# What decides which pixels a dataset yields, over every format.
CONTENT_KEYS = _content_keys(DATASET)
# The content keys of the first fingerprints, hashed as null where a format lacks them or leaves them unset, as they
# always were: existing pixel stores are keyed so. A content key declared since enters a fingerprint only when set, so
# a new layout's key or a new optional key changes no existing fingerprint. Never edit: it is in every fingerprint.
_HASHED_WHEN_NULL = ("cities", "format", "ignore_index", "label_map", "max_images", "on_error", "root", "seed", "split")
# Bump when a reader changes what it yields for the same spec, so stores built by the old reader are not reused.
_READER_VERSION = 1


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
    if "label_map" in out:
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
    content = {key: _hashable(canonical.get(key)) for key in CONTENT_KEYS
               if key in _HASHED_WHEN_NULL or canonical.get(key) is not None}
    if content["max_images"] is None:
        content["seed"] = None  # the seed only picks the max_images subset
    payload = json.dumps({"reader": _READER_VERSION, **content}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _hashable(value: Any) -> Any:
    """A value as JSON keeps it: a mapping (a label_map's integer keys would turn into strings) as sorted pairs."""
    return sorted(value.items()) if isinstance(value, Mapping) else value


def _root(root: str) -> str:
    if fs.is_s3(root):
        return root.rstrip("/")
    return os.path.abspath(os.path.expanduser(root))
