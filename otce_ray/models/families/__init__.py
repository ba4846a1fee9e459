"""The native formats of the ecosystems users' segmentation zoos live in: Hugging Face Transformers, torchvision and
segmentation_models_pytorch (smp). One registry: each family says how its network is built from a spec, which layer
gives its features by default (the decoder's last feature map, the one its classifier reads), and which installed
libraries are its code (for fingerprints).

The libraries are the optional extra ``otce-ray[zoo]``: they are imported only when a model of the family is loaded,
so configs are checked and other formats run without them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

from torch import nn

from otce_ray.models.errors import ModelError

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec

INSTALL_HINT = "pip install 'otce-ray[zoo]'"


@dataclass(frozen=True)
class Family:
    """A native format: ``adapter`` is the module that builds it; ``distributions`` are the libraries it runs on."""

    format: str
    adapter_module: str
    distributions: tuple[str, ...]

    def adapter(self) -> ModuleType:
        return importlib.import_module(self.adapter_module)

    def build(self, spec: ModelSpec) -> nn.Module:
        """The network with the weights its own files hold (a checkpoint, if any, is loaded afterwards)."""
        try:
            return self.adapter().build(spec)
        except ImportError as error:
            raise ModelError(spec.name, f"format {self.format!r} needs {', '.join(self.distributions)} "
                                        f"({INSTALL_HINT}): {error}") from error

    def default_feature_layer(self, spec: ModelSpec, module: nn.Module) -> str:
        return self.adapter().default_feature_layer(spec, module)

    def checkpoint_state(self, module: nn.Module, state: Mapping[str, Any]) -> Mapping[str, Any]:
        """The checkpoint's entries the built network takes (a family may drop training-only heads)."""
        adapter = self.adapter()
        return adapter.checkpoint_state(module, state) if hasattr(adapter, "checkpoint_state") else state

    def code_identity(self, model: str) -> str:
        """``name==version`` of each library, and the digest of our adapter (it picks the default feature layer)."""
        versions = []
        for distribution in self.distributions:
            try:
                versions.append(f"{distribution}=={importlib.metadata.version(distribution)}")
            except importlib.metadata.PackageNotFoundError:
                raise ModelError(model, f"format {self.format!r} needs {distribution} on the driver too (its "
                                        f"version is fingerprinted there): {INSTALL_HINT}") from None
        source = inspect.getsource(self.adapter()).encode()
        return " ".join(versions + ["adapter:" + hashlib.sha256(source).hexdigest()[:16]])


FAMILIES: dict[str, Family] = {
    "huggingface": Family("huggingface", "otce_ray.models.families.huggingface", ("transformers",)),
    "torchvision": Family("torchvision", "otce_ray.models.families.torchvision_seg", ("torchvision",)),
    "smp": Family("smp", "otce_ray.models.families.smp_seg", ("segmentation-models-pytorch", "timm")),
}
