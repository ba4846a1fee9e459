"""The interface every model format implements (``Family``), and what several formats share: the weight settings,
reading a model file, calling a network factory, seeding a random initialisation.

A family is a record of functions, as the project's other registries are (``scoring.backends.Backend``,
``scoring.baselines.Baseline``). Only ``build`` and ``fields`` have no default; the others fit a network that is plain
code with an optional checkpoint. Family modules import ``models.spec`` for type checking only: it derives ``MODEL``
from them.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from otce_ray import fs
from otce_ray.models.errors import ModelError
from otce_ray.schema import Boolean, Fields, Interval, JSONObject, Location, Setting

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec


@dataclass(frozen=True)
class BuildContext:
    """Where a network is built: its device, and the Python entrypoint modules allowed there (None: any)."""

    device: torch.device
    allowed_entrypoints: Sequence[str] | None = None


def _checkpoint_file(spec: ModelSpec) -> list[tuple[str, str]]:
    """The spec's checkpoint, if it names one, and every file its ``kwargs`` name: what a network that is plain code
    is read from."""
    return ([(spec.checkpoint, "checkpoint")] if spec.checkpoint else []) + kwargs_files(spec)


def kwargs_files(spec: ModelSpec) -> list[tuple[str, str]]:
    """Files a model's ``kwargs`` name, at any depth: every string that is an ``s3://`` URI or an existing local file.
    An entrypoint that loads weights from such a path is rescored when they change; a relative path is taken from the
    driver's working folder. Folders are not followed (a kwarg may name a large data folder): name the files, or the
    weights as the spec's ``checkpoint``."""
    found: list[tuple[str, str]] = []

    def visit(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(item, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(item, f"{where}[{index}]")
        elif isinstance(value, str) and (fs.is_s3(value) or os.path.isfile(value)):
            found.append((value, f"file named by {where}"))

    visit(dict(spec.kwargs), "kwargs")
    return found


def _no_code(spec: ModelSpec) -> None:
    return None


def _forward_output(spec: ModelSpec, module: nn.Module) -> None:
    return None


def _as_saved(module: nn.Module, state: Mapping[str, Any]) -> Mapping[str, Any]:
    return state


@dataclass(frozen=True)
class Family:
    """One model format.

    ``fields``: its own spec keys besides the common ones. ``build(spec, context)``: the bare network with the
    weights its own files hold (a spec's checkpoint is loaded afterwards). ``code_identity(spec)``: what identifies
    its code besides its files (None: its files hold it). ``files(spec)``: (uri, what it is) of every file it is read
    from, fingerprinted by content. ``default_feature_layer(spec, module)``: the submodule whose output is the feature
    map when the spec names none (None: the forward's own output). ``checkpoint_state(module, state)``: the
    checkpoint's entries the built network takes (a family may drop training-only heads).
    """

    format: str
    fields: Fields
    build: Callable[[ModelSpec, BuildContext], nn.Module]
    code_identity: Callable[[ModelSpec], str | None] = _no_code
    files: Callable[[ModelSpec], list[tuple[str, str]]] = _checkpoint_file
    default_feature_layer: Callable[[ModelSpec, nn.Module], str | None] = _forward_output
    checkpoint_state: Callable[[nn.Module, Mapping[str, Any]], Mapping[str, Any]] = _as_saved


# --- settings several families declare ------------------------------------------------------------------------------

WEIGHTS = {
    "checkpoint": Setting(Location("file"), None, "weights loaded into the network (a weights-only pickle, or "
                                                   ".safetensors)"),
    "allow_unsafe_pickle": Setting(Boolean(), False, "load a checkpoint that needs full unpickling (runs its code)"),
    "kwargs": Setting(JSONObject(), {}, "keyword arguments of the entrypoint or architecture"),
}
NUM_CLASSES = Setting(Interval(Integral, 1), 19, "classes of the logits (19: Cityscapes train ids)")
INIT_SEED = Setting(Interval(Integral, 0), 0, "seeds the random initialisation (without checkpoint)")

# --- steps several families take ------------------------------------------------------------------------------------


def read_file(spec: ModelSpec, what: str, uri: str) -> io.BytesIO:
    """The file's bytes, from this node's copy of it: an S3 object is fetched once per node (``fs.local_copy``)."""
    try:
        with open(fs.local_copy(uri), "rb") as handle:
            return io.BytesIO(handle.read())
    except FileNotFoundError:
        raise ModelError(spec.name, f"{what} not found: {uri}") from None
    except OSError as error:
        raise ModelError(spec.name, f"cannot read {what} {uri}: {error}") from error


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch inside the block only: a network built without checkpoint is the same on every worker."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def call_factory(spec: ModelSpec, what: str, factory: Callable[[], Any]) -> nn.Module:
    """The network a user's or built-in factory returns; ModelError when it fails or returns something else."""
    try:
        module = factory()
    except Exception as error:
        raise ModelError(spec.name, f"{what} with kwargs {dict(spec.kwargs)} failed: {error}") from error
    if not isinstance(module, nn.Module):
        raise ModelError(spec.name, f"{what} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
