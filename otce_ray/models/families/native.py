"""The native formats of the ecosystems users' segmentation zoos live in: Hugging Face Transformers, torchvision and
segmentation_models_pytorch (smp).

Each is an adapter module (``huggingface``, ``torchvision_seg``, ``smp_seg``: how the network is built from a spec,
which layer gives its features by default, the decoder's last map, the one its classifier reads) and the libraries
it runs on. Its code is identified by those libraries' versions and the digest of the adapter's source, so these
records live here, apart from the adapters: declaring a format's keys does not change the fingerprint of every
model of it.

The libraries are the optional extra ``otce-ray[zoo]``: the adapters import them only when a model of the family is
built, so configs are checked and other formats run without them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
from types import ModuleType
from typing import TYPE_CHECKING, Any

from torch import nn

from otce_ray import fs
from otce_ray.models.errors import ModelError
from otce_ray.models.families import huggingface, smp_seg, torchvision_seg
from otce_ray.models.families.family import (
    INIT_SEED,
    NUM_CLASSES,
    WEIGHTS,
    BuildContext,
    Family,
    first_line,
    seeded,
)
from otce_ray.schema import Fields, Options, PretrainedLocation, Setting, Text

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec

INSTALL_HINT = "pip install 'otce-ray[zoo]'"
DEFAULT_LAYER = Setting(Text(), None, "the module whose output is the feature map; null: the family's default, the "
                                      "decoder's last map before the classifier")


def native(fmt: str, adapter: ModuleType, distributions: tuple[str, ...], fields: Fields, **hooks: Any) -> Family:
    """The family of an adapter module that runs on ``distributions``; ``hooks`` are further ``Family`` functions."""
    return Family(fmt, fields, functools.partial(_build, adapter, distributions),
                  functools.partial(_code_identity, adapter, distributions),
                  default_feature_layer=adapter.default_feature_layer, **hooks)


def _build(adapter: ModuleType, distributions: tuple[str, ...], spec: ModelSpec, context: BuildContext) -> nn.Module:
    what = f"{spec.format} model {spec.path or spec.architecture!r}" + (f" ({spec.encoder})" if spec.encoder else "")
    with seeded(spec.init_seed):  # a model without checkpoint is the same on every worker
        try:
            module = adapter.build(spec)
        except ImportError as error:
            raise ModelError(spec.name, f"format {spec.format!r} needs {', '.join(distributions)} "
                                        f"({INSTALL_HINT}): {error}") from error
        except Exception as error:
            raise ModelError(spec.name, f"{what} cannot be built: {first_line(error)}") from error
    if not isinstance(module, nn.Module):
        raise ModelError(spec.name, f"{what} built a {type(module).__name__}, not a torch.nn.Module")
    return module


def _code_identity(adapter: ModuleType, distributions: tuple[str, ...], spec: ModelSpec) -> str:
    """``name==version`` of each library, and the digest of our adapter (it picks the default feature layer)."""
    versions = []
    for distribution in distributions:
        try:
            versions.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(spec.name, f"format {spec.format!r} needs {distribution} on the driver too (its "
                                        f"version is fingerprinted there): {INSTALL_HINT}") from None
    source = inspect.getsource(adapter).encode()
    return " ".join(versions + ["adapter:" + hashlib.sha256(source).hexdigest()[:16]])


def _pretrained_files(spec: ModelSpec) -> list[tuple[str, str]]:
    """Every file of a save_pretrained folder; a Hub model is one reference (identified by its commit)."""
    if spec.path.startswith(huggingface.HUB):
        return [(spec.path, "Hub model")]
    try:
        names = fs.list_files(spec.path)
    except FileNotFoundError:
        raise ModelError(spec.name, f"save_pretrained folder not found: {spec.path}") from None
    except OSError as error:
        raise ModelError(spec.name, f"cannot reach {spec.path}: {error}") from error
    return [(fs.join(spec.path, name), "file of the save_pretrained folder") for name in names]


HUGGINGFACE = native("huggingface", huggingface, ("transformers",), Fields({
    "path": Setting(PretrainedLocation(), doc="a save_pretrained folder (config.json, safetensors), or a Hub model "
                                              "hf://org/name[@revision] where the Hub is reachable"),
    "feature_layer": DEFAULT_LAYER,
}), files=_pretrained_files)

TORCHVISION = native("torchvision", torchvision_seg, ("torchvision",), Fields({
    "architecture": Setting(Options(tuple(torchvision_seg.ARCHITECTURES)),
                            doc="a torchvision.models.segmentation builder"),
    "num_classes": NUM_CLASSES,
    "init_seed": INIT_SEED,
    "feature_layer": DEFAULT_LAYER,
    **WEIGHTS,
}), checkpoint_state=torchvision_seg.checkpoint_state)

SMP = native("smp", smp_seg, ("segmentation-models-pytorch", "timm"), Fields({
    "architecture": Setting(Options(tuple(smp_seg.ARCHITECTURES)), doc="a segmentation_models_pytorch architecture"),
    "encoder": Setting(Text(), doc="its encoder, e.g. resnet34 or tu-convnext_tiny"),
    "num_classes": NUM_CLASSES,
    "init_seed": INIT_SEED,
    "feature_layer": DEFAULT_LAYER,
    **WEIGHTS,
}))
