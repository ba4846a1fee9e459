"""Model entries of a run config, validated once so every later error can name the model and the field.

What a spec may hold is declared here (``MODEL``: the keys every format shares, and each format's own keys from its
family in ``families.FAMILIES``), the same declarations the run config is checked against. A spec is plain data (it
travels to Ray workers and into store metadata); loading the network is ``loading.py``'s job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import Any, Mapping

from otce_ray.datasets.spec import DATASET
from otce_ray.models.errors import ModelError
from otce_ray.models.families import FAMILIES
from otce_ray.schema import (
    NAME,
    Boolean,
    ByFormat,
    Interval,
    ListOf,
    Options,
    Problem,
    Setting,
    Text,
    name_problem,
    quoted_path,
    shown,
)

# --- the declaration --------------------------------------------------------------------------------------------------

MODEL_FORMATS = tuple(FAMILIES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL = ByFormat(
    what="a model spec",
    common={
        "name": Setting(NAME, doc="unique among the run's models"),
        "format": Setting(Options(MODEL_FORMATS), doc="how the network is built"),
        "source": Setting(DATASET, None, "the dataset the model was trained on (a dataset spec)"),
        "architecture": Setting(Text(), None, "shown on the leaderboard"),
        "mean": Setting(ListOf(Interval(Real), "values (R, G, B)", length=3), IMAGENET_MEAN,
                        "subtracted from RGB in [0, 1]"),
        "std": Setting(ListOf(Interval(Real, 0, closed="neither"), "values (R, G, B)", length=3), IMAGENET_STD,
                       "divides RGB in [0, 1] after the mean"),
        "size": Setting(ListOf(Interval(Integral, 1), "values ([height, width])", length=2), None,
                        "inputs are resized to it before the forward; null: as they are"),
        "autocast": Setting(Boolean(), True, "the forward runs under bf16 autocast on CUDA"),
        "prior": Setting(Interval(Real), None, "a number you trust about the model, e.g. its published mIoU; higher = "
                                               "expected better (a leaderboard column and reference ordering)"),
    },
    formats={family.format: family.fields for family in FAMILIES.values()},
)


@dataclass(frozen=True)
class ModelSpec:
    """One source model.

    ``format`` picks which fields matter: ``torchscript`` needs ``path``; ``python`` needs ``entrypoint``
    ("pkg.module:function", called with ``kwargs``) and may name a ``checkpoint`` and a ``feature_layer``;
    ``builtin`` needs ``architecture`` (a key of ``architectures.ARCHITECTURES``, built with ``num_classes`` and
    ``kwargs`` such as ``width``/``feature_dim``; randomly initialised from ``init_seed`` when no ``checkpoint``).
    The native formats (``families.native``: ``huggingface``, a ``path`` to a save_pretrained folder;
    ``torchvision`` and ``smp``: an ``architecture``, smp's ``encoder``, ``num_classes`` and a ``checkpoint``) take
    their features from their family's default layer unless ``feature_layer`` names another.
    Checkpoints load with ``weights_only=True`` unless ``allow_unsafe_pickle`` is set.
    ``mean``/``std`` normalise RGB in [0, 1]; ``size`` (H, W) resizes inputs before the forward.
    ``autocast`` runs the forward under bf16 autocast on CUDA; turn it off for a model whose features it harms.
    """

    name: str
    format: str
    path: str | None = None  # required by formats torchscript and huggingface, absent from the others
    entrypoint: str | None = None  # required by format python, absent from the others
    architecture: str | None = MODEL.default("architecture")
    encoder: str | None = None  # required by format smp, absent from the others
    num_classes: int = MODEL.default("num_classes")
    kwargs: Mapping[str, Any] = field(default_factory=lambda: dict(MODEL.default("kwargs")))
    checkpoint: str | None = MODEL.default("checkpoint")
    feature_layer: str | None = MODEL.default("feature_layer")
    allow_unsafe_pickle: bool = MODEL.default("allow_unsafe_pickle")
    source: Mapping[str, Any] | None = MODEL.default("source")
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    size: tuple[int, int] | None = MODEL.default("size")
    init_seed: int = MODEL.default("init_seed")
    autocast: bool = MODEL.default("autocast")
    prior: float | None = MODEL.default("prior")  # a label for the leaderboard: never changes the features

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> "ModelSpec":
        """Validate a spec (a config entry, or ``to_dict``'s output) against ``MODEL`` and return it."""
        if isinstance(entry, ModelSpec):
            return entry
        if not isinstance(entry, Mapping):
            raise ValueError(f"a model entry must be a mapping, got {type(entry).__name__}")
        problem = name_problem(entry.get("name"))
        if problem:
            raise ValueError(f"model entry {shown(dict(entry))}: field 'name': {problem}")
        values = _applicable(entry)
        problems = MODEL.check(values)[1]
        if problems:
            raise ModelError(entry["name"], _told(problems, values.get("format")))
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if values.get("size") is not None:
            values["size"] = tuple(int(v) for v in values["size"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def fingerprint(self) -> str:
        """Hash of everything that changes the extracted features (the name and the prior are only labels)."""
        content = {k: v for k, v in self.to_dict().items()
                   if k not in _LABELS and not (k in _ADDED_LATER and v is None)}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


# Fields added after specs were first fingerprinted: left out of the fingerprint while unset, so that adding one
# does not make every recorded model look changed (and rescored).
_ADDED_LATER = ("encoder",)
_LABELS = ("name", "prior")  # what a user calls or believes of a model, not what it computes


def _applicable(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry less the fields that do not apply to its format and hold their default (``to_dict`` writes every
    field, so its output reads back)."""
    own = MODEL.fields(entry.get("format")).settings
    unset = {f.name: f.default_factory() if f.default is MISSING else f.default
             for f in fields(ModelSpec) if (f.default, f.default_factory) != (MISSING, MISSING)}
    return {key: value for key, value in entry.items() if key in own or key not in unset or value != unset[key]}


def _told(problems: list[Problem], fmt: Any) -> str:
    """Problems in the reader's words: fields named as the user wrote them, unknown ones listed together."""
    unknown = sorted((p.path[0] for p in problems if p.kind == "unknown" and p.path[0] not in MODEL.keys()), key=str)
    told = [f"unknown field(s) {unknown}"] if unknown else []
    for problem in problems:
        key = problem.path[0]
        if problem.kind == "unknown" and key in MODEL.keys():
            told.append(f"field {key!r} does not apply to format {fmt!r}")
        elif problem.kind == "missing":
            told.append(f"field {key!r} is required" + ("" if MODEL.always_required(key) else f" for format {fmt!r}"))
        elif problem.kind == "invalid":
            told.append(f"field {quoted_path(problem.path)}: {problem.text}")
    return "; ".join(told)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
