"""torchvision's segmentation models (``torchvision.models.segmentation``): an architecture built with
``num_classes`` and no downloaded weights, then a state-dict checkpoint. Logits are the output's ``out``."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Mapping

from torch import nn

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec


# builder -> the module whose output is the feature map the classifier reads. DeepLabV3 and FCN heads end in
# conv-bn-relu(-dropout) then a 1x1 classifier conv (index 4): index 3 is its input. LR-ASPP's classifier reads the
# 128-channel high-level branch gated by a per-image channel attention; ``classifier.cbr`` is that branch.
ARCHITECTURES = {
    "deeplabv3_resnet50": "classifier.3",
    "deeplabv3_resnet101": "classifier.3",
    "deeplabv3_mobilenet_v3_large": "classifier.3",
    "fcn_resnet50": "classifier.3",
    "fcn_resnet101": "classifier.3",
    "lraspp_mobilenet_v3_large": "classifier.cbr",
}
# builder -> the classifier conv whose output channels are the classes (LR-ASPP adds a second, low-level one)
CLASSIFIERS = {name: "classifier.high_classifier" if name.startswith("lraspp") else "classifier.4"
               for name in ARCHITECTURES}
AUX_HEAD = "aux_classifier."


def build(spec: ModelSpec) -> nn.Module:
    from torchvision.models import segmentation

    builder = getattr(segmentation, spec.architecture)
    return builder(weights=None, weights_backbone=None, num_classes=spec.num_classes, **spec.kwargs)


def default_feature_layer(spec: ModelSpec, module: nn.Module) -> str:
    return ARCHITECTURES[spec.architecture]


def checkpoint_state(module: nn.Module, state: Mapping[str, Any]) -> Mapping[str, Any]:
    """Without its training-only auxiliary head, unless the network was built with one (``aux_loss``)."""
    if getattr(module, "aux_classifier", None) is not None:
        return state
    return {key: value for key, value in state.items() if not key.startswith(AUX_HEAD)}


def recognise(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any] | None:
    """The spec fields (architecture, num_classes) of the architecture whose state dict has exactly these keys and
    shapes (an auxiliary head allowed), or None."""
    for architecture, classifier in CLASSIFIERS.items():
        weight = shapes.get(classifier + ".weight")
        if weight is None:
            continue
        aux = any(key.startswith(AUX_HEAD) for key in shapes)
        if _shapes(architecture, weight[0], aux) == dict(shapes):
            return {"architecture": architecture, "num_classes": weight[0]}
    return None


@functools.lru_cache(maxsize=None)
def _shapes(architecture: str, num_classes: int, aux: bool) -> dict[str, tuple[int, ...]]:
    """The key -> shape map of an architecture's state dict, built on the meta device (no memory, no weights)."""
    import torch
    from torchvision.models import segmentation

    with torch.device("meta"):
        module = getattr(segmentation, architecture)(weights=None, weights_backbone=None, num_classes=num_classes,
                                                     aux_loss=aux)
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}
