"""The run config: one YAML file in, frozen settings out, validated before any work starts.

Validation collects every problem (unknown keys, missing fields, wrong types, duplicate names, unreachable local
paths, malformed S3 URIs) and raises them together as one :class:`ConfigError`, each line led by its key path
(``models[3].source.format: ...``), so a user with a zoo of hundreds of entries fixes everything in one pass.

Dataset and model specs stay plain dicts (the readers take dicts). They are checked here key by key, per format, so
that every problem is listed; a spec that passes is then handed to its reader's own validator
(``datasets.spec.normalize_spec``, ``models.ModelSpec.from_dict``) so the config never accepts what a reader
rejects. Relative local paths, and ``models_file``, are taken relative to the config file's folder and stored
absolute. S3 URIs are only checked for syntax: validation never touches the network.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import yaml

from otce_ray import fs
from otce_ray.datasets.spec import FORMATS as DATASET_FORMATS
from otce_ray.datasets.spec import ON_ERROR, dataset_fingerprint, normalize_spec
from otce_ray.models import ARCHITECTURES, ModelSpec
from otce_ray.models.spec import FORMATS as MODEL_FORMATS
from otce_ray.scoring.baselines import BASELINES
from otce_ray.scoring.cost_scale import COST_SCALES
from otce_ray.scoring.inputs import SOLVERS

SCORING_DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """Every problem found in one run config, one line each, led by its key path."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = tuple(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid run config {where} ({count}):\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class OTCESettings:
    """How each model is scored: K repeats of an OT solve between n_pixels source and n_pixels target pixels."""

    n_pixels: int = 10000
    repeats: int = 10
    seed: int = 0
    solver: str = "sinkhorn"
    epsilon: float | None = None  # None: the engine's default
    cost_scale: str | None = None  # None: the engine's default
    standardise: bool = False  # z-score each side's features on its own before the cost (see otce_score)


@dataclass(frozen=True)
class ExtractionSettings:
    """How pixel stores are filled, by a pool of extraction workers (Ray actors that keep their model loaded).

    ``num_gpus`` None means auto (see ``otce_ray.cluster.resolve_num_gpus``); ``max_workers`` None: as many workers as
    the cluster can run (on CPUs, half its CPUs).
    """

    pixels_per_image: int = 1000
    batch_size: int = 8
    num_gpus: float | None = None
    num_cpus: float = 1.0  # per worker: reserve more on GPU nodes to keep decoding ahead of a fast GPU
    num_shards: int | None = None  # None: about 32 images per shard
    max_workers: int | None = None
    decode_threads: int = 4  # images decoded side by side, per worker, ahead of the forward pass


@dataclass(frozen=True)
class BaselineSettings:
    """Published metrics computed beside OTCE on the same pixel stores, as extra leaderboard columns."""

    metrics: tuple[str, ...] | None = None  # None: every metric in otce_ray.scoring.baselines.BASELINES; () none
    n_pixels: int = 5000  # pixels sampled per side, one sample shared by all metrics

    def __post_init__(self) -> None:
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))

    def names(self) -> tuple[str, ...]:
        return tuple(BASELINES) if self.metrics is None else self.metrics


@dataclass(frozen=True)
class ScoringSettings:
    """Resources of the repeat tasks. ``num_gpus`` None means auto (see ``otce_ray.cluster.resolve_num_gpus``);
    ``max_in_flight`` None: twice the tasks the cluster can run at once now (it may grow)."""

    max_in_flight: int | None = None
    num_gpus: float | None = None
    device: str = "auto"


@dataclass(frozen=True)
class ClusterSettings:
    """How long the driver waits: work that cannot start for lack of resources fails after ``resource_wait_seconds``
    (an autoscaler adds nodes in minutes); a task running longer than ``stuck_task_seconds`` is reported."""

    resource_wait_seconds: float = 3600.0
    stuck_task_seconds: float = 900.0


@dataclass(frozen=True)
class RunConfig:
    """A validated run. Specs are plain dicts that readers consume as-is; treat them as read-only."""

    store: str
    output: str
    target: dict
    models: tuple[dict, ...]
    otce: OTCESettings = field(default_factory=OTCESettings)
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    config_path: str | None = None

    def to_dict(self) -> dict:
        """The resolved config as plain data (for run.json); parse_config accepts it back, less config_path."""
        data = dataclasses.asdict(self)
        data["models"] = list(data["models"])
        if self.baselines.metrics is not None:
            data["baselines"]["metrics"] = list(self.baselines.metrics)
        return data

    def model(self, name: str) -> dict:
        for spec in self.models:
            if spec["name"] == name:
                return spec
        raise KeyError(f"no model named {name!r} in the run config")


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a run config (local path or s3://); raise ConfigError listing every problem."""
    path = str(path)
    raw, problem = _read_yaml(path)
    if problem:
        raise ConfigError(path, [f"config: {problem}"])
    base_dir = posixpath.dirname(path) if fs.is_s3(path) else os.path.dirname(fs.resolve(path)[1])
    return parse_config(raw, base_dir=base_dir, config_path=path)


def parse_config(raw: Any, base_dir: str, config_path: str | None = None) -> RunConfig:
    """Validate already-parsed config data; relative paths (and models_file) are taken from base_dir."""
    check = _Checker(base_dir)
    config = check.run_config(raw)
    if check.problems:
        raise ConfigError(config_path or "(given as data)", check.problems)
    assert config is not None
    return dataclasses.replace(config, config_path=config_path)


# --- YAML -------------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-3 as a float (YAML 1.2), not as a string."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(path: str) -> tuple[Any, str | None]:
    """(data, None), or (None, why) when the file cannot be read or parsed."""
    try:
        text = fs.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, f"cannot read {path!r}: {error}"
    try:
        return yaml.load(text, Loader=_StrictLoader), None
    except yaml.YAMLError as error:
        return None, f"{path!r} is not valid YAML: {error}"


def _locate(path: str, base_dir: str) -> str:
    """A path as written in the config, made absolute against the config's folder (S3 URIs stay as they are)."""
    if fs.is_s3(path):
        return path
    if fs.is_s3(base_dir):
        return "s3://" + posixpath.normpath(posixpath.join(base_dir[len("s3://"):], path))
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))


# --- value checks: each returns a problem text, or None when the value is fine ------------------------------------

Check = Callable[[Any], "str | None"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENTRYPOINT = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"expected a non-empty string, got {_kind(value)}"


def name_problem(value: Any) -> str | None:
    """Why a model or dataset name cannot be a folder or file name in a store or output, or None."""
    if not isinstance(value, str) or not _NAME.match(value):
        return f"expected a name of letters, digits, '.', '_', '-' (it becomes a folder name), got {value!r}"
    return None


def _int_at_least(minimum: int) -> Check:
    def check(value: Any) -> str | None:
        if not _is_int(value) or value < minimum:
            return f"expected an integer >= {minimum}, got {value!r}"
        return None

    return check


def _number(minimum: float, strict: bool) -> Check:
    bound = f"> {minimum}" if strict else f">= {minimum}"

    def check(value: Any) -> str | None:
        if not _is_number(value) or value < minimum or (strict and value == minimum):
            return f"expected a number {bound}, got {value!r}"
        return None

    return check


def _choice(options: tuple[str, ...], what: str = "value") -> Check:
    def check(value: Any) -> str | None:
        if value not in options:
            return f"unknown {what} {value!r} (expected one of {', '.join(options)})"
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {value!r}"


def _string_list(value: Any) -> str | None:
    if not isinstance(value, list) or not value or any(_string(item) for item in value):
        return f"expected a non-empty list of strings, got {value!r}"
    return None


def _metric_list(value: Any) -> str | None:
    """A list (possibly empty: no baselines) of names from BASELINES."""
    if not isinstance(value, list) or any(_string(item) for item in value):
        return f"expected a list of metric names, got {value!r}"
    unknown = [name for name in value if name not in BASELINES]
    if unknown:
        return f"unknown metric(s) {', '.join(map(repr, unknown))} (expected any of {', '.join(BASELINES)})"
    return None


def _triple(positive: bool) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
            return f"expected a list of 3 numbers (one per RGB channel), got {value!r}"
        if positive and any(v <= 0 for v in value):
            return f"expected 3 numbers > 0, got {value!r}"
        return None

    return check


def _size(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value):
        return None
    return f"expected [height, width] in pixels, got {value!r}"


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, Mapping) else f"expected a mapping, got {_kind(value)}"


def _entrypoint(value: Any) -> str | None:
    if not isinstance(value, str) or not _ENTRYPOINT.match(value):
        return f"expected 'package.module:function', got {value!r}"
    return None


def _nested(value: Any) -> None:
    """A section or spec with a key table of its own, checked by its own walker."""


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def s3_uri_problem(uri: str) -> str | None:
    """Why an s3:// URI is malformed (bucket naming rules), or None; checked without any network access."""
    bucket = uri[len("s3://"):].split("/", 1)[0]
    if not _BUCKET.match(bucket) or ".." in bucket:
        return f"malformed S3 URI {uri!r}: bucket {bucket!r} must be 3-63 lowercase letters, digits, '.', '-'"
    return None


# --- key tables -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _SpecKeys:
    """The key table of a spec whose allowed and required keys depend on its ``format``."""

    common: dict[str, Check]
    by_format: dict[str, dict[str, Check]]
    required: set[str]
    by_format_required: dict[str, set[str]]


_DATASET_COMMON: dict[str, Check] = {
    "name": name_problem, "format": _choice(DATASET_FORMATS, "format"), "root": _string,
    "max_images": _int_at_least(1), "seed": _int_at_least(0), "on_error": _choice(ON_ERROR),
}
_DATASET_FORMAT_KEYS: dict[str, dict[str, Check]] = {
    "cityscapes": {"split": _string, "cities": _string_list},
    "bdd100k": {"split": _string},
    "gta5": {},
    "folder": {"label_map": _mapping, "ignore_index": _int_at_least(0)},
}
_DATASET_REQUIRED = {"name", "format", "root"}
_DATASET_FORMAT_REQUIRED = {"cityscapes": {"split"}, "bdd100k": {"split"}, "gta5": set(), "folder": {"label_map"}}
_DATASET_KEYS = _SpecKeys(_DATASET_COMMON, _DATASET_FORMAT_KEYS, _DATASET_REQUIRED, _DATASET_FORMAT_REQUIRED)

_MODEL_COMMON: dict[str, Check] = {
    "name": name_problem, "format": _choice(MODEL_FORMATS, "format"), "source": _nested,
    "architecture": _string, "mean": _triple(False), "std": _triple(True), "size": _size,
    "autocast": _boolean,
}
_WEIGHTS: dict[str, Check] = {"checkpoint": _string, "allow_unsafe_pickle": _boolean, "kwargs": _mapping}
_MODEL_FORMAT_KEYS: dict[str, dict[str, Check]] = {
    "torchscript": {"path": _string},
    "python": {"entrypoint": _entrypoint, "feature_layer": _string, **_WEIGHTS},
    "builtin": {"num_classes": _int_at_least(1), "init_seed": _int_at_least(0), **_WEIGHTS},
}
_MODEL_REQUIRED = {"name", "format", "source"}
_MODEL_FORMAT_REQUIRED = {"torchscript": {"path"}, "python": {"entrypoint"}, "builtin": {"architecture"}}
_MODEL_KEYS = _SpecKeys(_MODEL_COMMON, _MODEL_FORMAT_KEYS, _MODEL_REQUIRED, _MODEL_FORMAT_REQUIRED)
_MODEL_FILES = ("path", "checkpoint")

_TOP: dict[str, Check] = {
    "store": _string, "output": _string, "target": _nested, "models": _nested, "models_file": _string,
    "otce": _nested, "extraction": _nested, "scoring": _nested, "baselines": _nested, "cluster": _nested,
}
_OTCE: dict[str, Check] = {
    "n_pixels": _int_at_least(2), "repeats": _int_at_least(2), "seed": _int_at_least(0),
    "solver": _choice(SOLVERS, "solver"), "epsilon": _optional(_number(0, strict=True)),
    "cost_scale": _optional(_choice(COST_SCALES, "cost scale")), "standardise": _boolean,
}
_EXTRACTION: dict[str, Check] = {
    "pixels_per_image": _int_at_least(1), "batch_size": _int_at_least(1),
    "num_gpus": _optional(_number(0, strict=False)), "num_cpus": _number(0, strict=True),
    "num_shards": _optional(_int_at_least(1)), "max_workers": _optional(_int_at_least(1)),
    "decode_threads": _int_at_least(1),
}
_BASELINES: dict[str, Check] = {
    "metrics": _optional(_metric_list),
    "n_pixels": _int_at_least(2),
}
_CLUSTER: dict[str, Check] = {
    "resource_wait_seconds": _number(0, strict=True), "stuck_task_seconds": _number(0, strict=True),
}
_SCORING: dict[str, Check] = {
    "max_in_flight": _optional(_int_at_least(1)), "num_gpus": _optional(_number(0, strict=False)),
    "device": _choice(SCORING_DEVICES, "device"),
}


def _key(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


class _Checker:
    """Walks the raw config once, collecting problems with key paths and building the resolved specs."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self.problems: list[str] = []
        self.datasets: dict[str, tuple[str, dict]] = {}  # name -> (first key path, spec): one name, one dataset

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    def mapping(self, value: Any, path: str, keys: Mapping[str, Check], required: set[str]) -> dict | None:
        """Check a mapping against a key table; returns the mapping (problems recorded) or None if not a mapping."""
        if not isinstance(value, Mapping):
            self.problem(path or "(top level)", f"expected a mapping, got {_kind(value)}")
            return None
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(str(key), list(keys), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(keys)}"
                self.problem(_key(path, key), f"unknown key ({hint})")
        for key in sorted(required - set(value)):
            self.problem(_key(path, key), "missing required field")
        for key, item in value.items():
            text = keys[key](item) if key in keys else None
            if text:
                self.problem(_key(path, key), text)
        return dict(value)

    def location(self, value: Any, path: str, must_exist: str | None) -> Any:
        """Resolve a local path (checking it exists when must_exist is 'file' or 'directory') or check an S3 URI."""
        if not isinstance(value, str) or not value.strip():
            return value
        if fs.is_s3(value):
            text = s3_uri_problem(value)
            if text:
                self.problem(path, text)
            return value
        resolved = _locate(value, self.base_dir)
        found = {"file": os.path.isfile, "directory": os.path.isdir}
        if must_exist and not found[must_exist](resolved):
            self.problem(path, f"no such {must_exist} {resolved!r}")
        return resolved

    def formatted(self, value: Any, path: str, table: _SpecKeys) -> dict | None:
        """Check a spec whose allowed and required keys depend on its ``format``."""
        fmt = value.get("format") if isinstance(value, Mapping) else None
        if fmt in table.by_format:
            keys, needed = {**table.common, **table.by_format[fmt]}, table.required | table.by_format_required[fmt]
        else:  # unknown format: accept any format's keys so the one real problem is not buried in noise
            every_format = {k: c for keys in table.by_format.values() for k, c in keys.items()}
            keys, needed = {**table.common, **every_format}, table.required
        return self.mapping(value, path, keys, needed)

    def dataset(self, value: Any, path: str) -> dict | None:
        problems_before = len(self.problems)
        spec = self.formatted(value, path, _DATASET_KEYS)
        if spec is None:
            return None
        if "root" in spec:
            spec["root"] = self.location(spec["root"], f"{path}.root", "directory")
        if len(self.problems) == problems_before and self.accepted_by_reader(normalize_spec, spec, path):
            name, fingerprint = spec["name"], dataset_fingerprint(spec)
            first_path, first_fingerprint = self.datasets.setdefault(name, (path, fingerprint))
            if first_fingerprint != fingerprint:
                self.problem(path, f"dataset name {name!r} is already used by a different spec at {first_path} "
                                   "(pixel stores are keyed by dataset name)")
        return spec

    def accepted_by_reader(self, validate: Callable[[dict], Any], spec: dict, path: str) -> bool:
        """Run a reader's own validator on a spec that passed the key tables; its complaint becomes a problem."""
        try:
            validate(spec)
        except ValueError as error:
            self.problem(path, str(error))
            return False
        return True

    def model(self, value: Any, path: str) -> dict | None:
        problems_before = len(self.problems)
        spec = self.formatted(value, path, _MODEL_KEYS)
        if spec is None:
            return None
        for key in _MODEL_FILES:
            if key in spec:
                spec[key] = self.location(spec[key], f"{path}.{key}", "file")
        if spec.get("format") == "builtin" and isinstance(spec.get("architecture"), str):
            problem = _choice(tuple(ARCHITECTURES), "architecture")(spec["architecture"])
            if problem:
                self.problem(f"{path}.architecture", problem)
        if len(self.problems) == problems_before:
            self.accepted_by_reader(ModelSpec.from_dict, spec, path)
        if "source" in spec:
            spec["source"] = self.dataset(spec["source"], f"{path}.source")
        return spec

    def model_entries(self, raw: Mapping) -> tuple[Any, str]:
        """The model list and the key path its entries are reported under; models_file is read here."""
        if "models" in raw:
            return raw["models"], "models"
        models_file = raw["models_file"]
        if not isinstance(models_file, str) or not models_file.strip():
            return None, "models_file"
        entries, problem = _read_yaml(_locate(models_file, self.base_dir))
        if problem:
            self.problem("models_file", problem)
        return entries, "models_file"

    def models(self, raw: Mapping) -> tuple[dict, ...]:
        if ("models" in raw) == ("models_file" in raw):
            self.problem("models", "give exactly one of models (an inline list) or models_file")
            return ()
        entries, prefix = self.model_entries(raw)
        if entries is None:
            return ()
        if not isinstance(entries, list) or not entries:
            self.problem(prefix, f"expected a non-empty list of model specs, got {_kind(entries)}")
            return ()
        specs: list[dict] = []
        first_seen: dict[str, str] = {}
        for index, entry in enumerate(entries):
            path = f"{prefix}[{index}]"
            spec = self.model(entry, path)
            if spec is None:
                continue
            name = spec.get("name")
            if isinstance(name, str) and name in first_seen:
                self.problem(f"{path}.name", f"duplicate model name {name!r} (first at {first_seen[name]})")
            elif isinstance(name, str):
                first_seen[name] = path
            specs.append(spec)
        return tuple(specs)

    def settings(self, raw: Mapping, key: str, table: dict[str, Check], cls: type) -> Any:
        section = raw.get(key, {})
        checked = self.mapping({} if section is None else section, key, table, set())
        if checked is None:
            return cls()
        return cls(**{k: v for k, v in checked.items() if k in table})

    def run_config(self, raw: Any) -> RunConfig | None:
        if self.mapping(raw, "", _TOP, {"store", "output", "target"}) is None:
            return None
        target = self.dataset(raw["target"], "target") if "target" in raw else None
        models = self.models(raw)
        scoring = self.settings(raw, "scoring", _SCORING, ScoringSettings)
        if scoring.device == "cuda" and scoring.num_gpus == 0:
            self.problem("scoring.device", "'cuda' needs scoring.num_gpus > 0 (or leave num_gpus unset)")
        return RunConfig(
            store=self.location(raw.get("store"), "store", None),
            output=self.location(raw.get("output"), "output", None),
            target=target or {},
            models=models,
            otce=self.settings(raw, "otce", _OTCE, OTCESettings),
            extraction=self.settings(raw, "extraction", _EXTRACTION, ExtractionSettings),
            scoring=scoring,
            baselines=self.settings(raw, "baselines", _BASELINES, BaselineSettings),
            cluster=self.settings(raw, "cluster", _CLUSTER, ClusterSettings),
        )
