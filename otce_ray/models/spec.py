"""Model entries of a run config, validated once so every later error can name the model and the field.

A spec is plain data (it travels to Ray workers and into store metadata); loading the network is ``loading.py``'s job.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

FORMATS = ("torchscript", "python", "builtin")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelError(ValueError):
    """A model that cannot be loaded or run; the message names the model and the cause."""

    def __init__(self, model: str, cause: str) -> None:
        super().__init__(f"model {model!r}: {cause}")
        self.model = model


@dataclass(frozen=True)
class ModelSpec:
    """One source model.

    ``format`` picks which fields matter: ``torchscript`` needs ``path``; ``python`` needs ``entrypoint``
    ("pkg.module:function", called with ``kwargs``) and may name a ``checkpoint`` and a ``feature_layer``;
    ``builtin`` needs ``architecture`` (a key of ``architectures.ARCHITECTURES``, built with ``num_classes`` and
    ``kwargs`` such as ``width``/``feature_dim``; randomly initialised from ``init_seed`` when no ``checkpoint``).
    Checkpoints load with ``weights_only=True`` unless ``allow_unsafe_pickle`` is set.
    ``mean``/``std`` normalise RGB in [0, 1]; ``size`` (H, W) resizes inputs before the forward.
    ``autocast`` runs the forward under bf16 autocast on CUDA; turn it off for a model whose features it harms.
    """

    name: str
    format: str
    path: str | None = None
    entrypoint: str | None = None
    architecture: str | None = None
    num_classes: int = 19  # Cityscapes train ids
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    feature_layer: str | None = None
    allow_unsafe_pickle: bool = False
    source: Mapping[str, Any] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    size: tuple[int, int] | None = None
    init_seed: int = 0
    autocast: bool = True

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> "ModelSpec":
        """Validate a config entry (a mapping, e.g. from YAML) and return the spec."""
        if isinstance(entry, ModelSpec):
            return entry
        if not isinstance(entry, Mapping):
            raise ValueError(f"a model entry must be a mapping, got {type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"model entry {dict(entry)!r}: field 'name' must be a non-empty string without '/'")
        unknown = set(entry) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelError(name, f"unknown field(s) {sorted(unknown)}")
        values = dict(entry)
        for key in ("mean", "std"):
            if key in values:
                values[key] = _triple(name, key, values[key])
        if values.get("size") is not None:
            values["size"] = _pair(name, values["size"])
        spec = cls(**values)
        spec._check()
        return spec

    def _check(self) -> None:
        required = {"torchscript": "path", "python": "entrypoint", "builtin": "architecture"}
        if self.format not in FORMATS:
            raise ModelError(self.name, f"field 'format' is {self.format!r}; expected one of {list(FORMATS)}")
        needed = required[self.format]
        if not getattr(self, needed):
            raise ModelError(self.name, f"field {needed!r} is required for format {self.format!r}")
        if self.format == "python" and ":" not in self.entrypoint:
            raise ModelError(self.name, f"field 'entrypoint' {self.entrypoint!r} must look like 'package.module:function'")
        if self.format == "torchscript" and (self.checkpoint or self.feature_layer):
            raise ModelError(self.name, "fields 'checkpoint'/'feature_layer' do not apply to format 'torchscript'")
        if any(s <= 0 for s in self.std):
            raise ModelError(self.name, f"field 'std' must be positive, got {list(self.std)}")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def file_stamps(self) -> dict[str, Any]:
        """Size and modification time of the model's files, so a retrained checkpoint at the same path is noticed.

        A file that is not there is a ``ModelError`` naming it: the model fails before any work is spent on it.
        """
        from otce_ray import fs

        stamps: dict[str, Any] = {}
        for uri in filter(None, (self.path, self.checkpoint)):
            filesystem, path = fs.resolve(uri)
            try:
                info = filesystem.get_file_info(path)
            except OSError as error:
                raise ModelError(self.name, f"cannot reach {uri}: {error}") from error
            if not info.is_file:
                raise ModelError(self.name, f"{'checkpoint' if uri == self.checkpoint else 'model file'} not found: "
                                            f"{uri}")
            stamps[uri] = [info.size, info.mtime_ns]
        return stamps

    def fingerprint(self) -> str:
        """Hash of everything that changes the extracted features (the name is only a label)."""
        content = {k: v for k, v in self.to_dict().items() if k != "name"}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _triple(model: str, key: str, value: Any) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3:
        raise ModelError(model, f"field {key!r} must be three numbers (R, G, B), got {value!r}")
    return triple  # type: ignore[return-value]


def _pair(model: str, value: Any) -> tuple[int, int]:
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) <= 0:
        raise ModelError(model, f"field 'size' must be two positive integers (H, W), got {value!r}")
    return pair  # type: ignore[return-value]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
