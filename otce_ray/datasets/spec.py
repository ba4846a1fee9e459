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
from numbers import Integral
from typing import Any, Mapping

from otce_ray import fs
from otce_ray.schema import (
    NAME,
    ByFormat,
    Checked,
    Constraint,
    Fields,
    Interval,
    ListOf,
    Location,
    Options,
    Problem,
    Resolver,
    Rule,
    Setting,
    Text,
    name_problem,
    quoted_path,
    shown,
)

class LabelMap(Constraint):
    """Raw mask value -> class id. Class ids stop at 254 because 255 is the ignore id of every item's label."""

    raw, class_id = Interval(Integral, 0), Interval(Integral, 0, 254)

    def __str__(self) -> str:
        return "a non-empty mapping of raw mask value -> class id"

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping) or not value:
            return value, [Problem((), f"expected {self}, got {shown(value)}")]
        return value, [Problem((), f"entry {raw!r}: {class_id!r} must map a raw value >= 0 to a class id 0-254")
                       for raw, class_id in value.items()
                       if not (self.raw.allows(raw) and self.class_id.allows(class_id))]


# --- the declaration ------------------------------------------------------------------------------------------------

DATASET_FORMATS = ("cityscapes", "bdd100k", "gta5", "folder")
ON_ERROR = ("raise", "skip")
_SPLIT = Setting(Text(), doc="the split folder, e.g. train")


def _ignore_index_not_mapped(ignore_index: int | None, label_map: Mapping) -> str | None:
    if ignore_index is not None and ignore_index in label_map:
        return f"raw value {ignore_index} is also a key of 'label_map'"
    return None


DATASET = ByFormat(
    what="a dataset spec",
    common={
        "name": Setting(NAME, doc="one name means one dataset: pixel stores are keyed by it"),
        "format": Setting(Options(DATASET_FORMATS), doc="the file layout"),
        "root": Setting(Location("directory"), doc="the dataset's folder, local or s3://"),
        "max_images": Setting(Interval(Integral, 1), None, "a seeded subset of this many images (it keeps its "
                                                             "images when max_images grows); null: every image"),
        "seed": Setting(Interval(Integral, 0), 0, "picks the max_images subset"),
        "on_error": Setting(Options(ON_ERROR), "raise", "skip: unreadable files are skipped, counted and reported"),
    },
    formats={
        "cityscapes": Fields({
            "split": _SPLIT,
            "cities": Setting(ListOf(Text(), "city names", min_length=1), None, "cities to read; null: every city"),
        }),
        "bdd100k": Fields({"split": _SPLIT}),
        "gta5": Fields({}),
        "folder": Fields({
            "label_map": Setting(LabelMap(), doc="raw mask value -> class id 0-254"),
            "ignore_index": Setting(Interval(Integral, 0), None, "a raw mask value that labels no class (ignored)"),
        }, rules=(Rule(("ignore_index", "label_map"), _ignore_index_not_mapped),)),
    },
)



def _shard_in_range(shard_index: int, num_shards: int) -> str | None:
    return f"{shard_index} is out of range for num_shards {num_shards}" if shard_index >= num_shards else None


# Set by the run on each shard's spec, never by a user: the dataset reader accepts them, a config does not.
SHARD = Fields({
    "shard_index": Setting(Interval(Integral, 0), doc="which shard of the dataset's images"),
    "num_shards": Setting(Interval(Integral, 1), doc="how many shards the images are dealt into"),
}, rules=(Rule(("shard_index", "num_shards"), _shard_in_range),))

FORMATS = DATASET_FORMATS

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
