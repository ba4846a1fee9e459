"""segmentation_models_pytorch (smp): an architecture over an encoder, built with ``num_classes`` and no downloaded
weights, then a checkpoint (a state dict, or the ``model.safetensors`` of smp's ``save_pretrained``). Logits are the
model's output; inputs must be a multiple of the encoder's output stride (32 for most), which ``size`` can ensure."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Mapping

from torch import nn

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec


ARCHITECTURES = ("Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "PAN",
                 "UPerNet", "Segformer", "DPT")
# Every smp model is encoder -> decoder -> segmentation_head, the head reading the decoder's output.
FEATURE_LAYER = "decoder"


def build(spec: ModelSpec) -> nn.Module:
    import segmentation_models_pytorch as smp

    return smp.create_model(spec.architecture, encoder_name=spec.encoder, encoder_weights=None,
                            classes=spec.num_classes, **spec.kwargs)


def default_feature_layer(spec: ModelSpec, module: nn.Module) -> str:
    return FEATURE_LAYER

PARTS = ("encoder.", "decoder.", "segmentation_head.")
HUB_CONFIG_CLASS = "_model_class"  # the key smp's save_pretrained writes into config.json
_NOT_INIT_ARGUMENTS = (HUB_CONFIG_CLASS, "encoder_name", "encoder_weights", "classes")


def from_config(config: Mapping[str, Any]) -> dict[str, Any] | str:
    """The spec fields of an smp ``save_pretrained`` config.json (its other init arguments become ``kwargs``), or
    why not."""
    architecture = next((name for name in ARCHITECTURES if name.lower() == str(config[HUB_CONFIG_CLASS]).lower()),
                        None)
    if architecture is None or not isinstance(config.get("encoder_name"), str):
        return f"smp config.json of class {config[HUB_CONFIG_CLASS]!r} with encoder {config.get('encoder_name')!r}"
    kwargs = {key: value for key, value in config.items() if key not in _NOT_INIT_ARGUMENTS}
    return {"architecture": architecture, "encoder": config["encoder_name"], "num_classes": config.get("classes", 1),
            "kwargs": kwargs}


def looks_like_smp(shapes: Mapping[str, tuple[int, ...]]) -> bool:
    return bool(shapes) and all(key.startswith(PARTS) for key in shapes) and any(
        key.startswith("segmentation_head.") for key in shapes)


def recognise(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any] | str:
    """The spec fields of the architecture and encoder (one of smp's own, default settings) whose state dict has
    exactly these keys and shapes, or why none does. Encoders are tried in smp's order, each built once per
    process on the meta device."""
    import segmentation_models_pytorch as smp

    head = [shape for key, shape in shapes.items() if key.startswith("segmentation_head.") and len(shape) == 4]
    num_classes = head[-1][0]
    encoder_shapes = {key[len("encoder."):]: shape for key, shape in shapes.items() if key.startswith("encoder.")}
    encoder = next((name for name in smp.encoders.get_encoder_names() if _encoder_shapes(name) == encoder_shapes),
                   None)
    if encoder is None:
        return ("an smp state dict whose encoder is none of smp's own encoders at default depth (a timm 'tu-' "
                "encoder cannot be told from its keys): write its entry by hand, or save it with save_pretrained")
    for architecture in ARCHITECTURES:
        if _model_shapes(architecture, encoder, num_classes) == dict(shapes):
            return {"architecture": architecture, "encoder": encoder, "num_classes": num_classes}
    return (f"an smp state dict with encoder {encoder} whose decoder matches no smp architecture at default "
            "settings: write its entry by hand (with its kwargs), or save it with save_pretrained")


def _built_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]] | None:
    """Key -> shape of a network's state dict, built on the meta device (or on the CPU for the few encoders whose
    construction reads a tensor's value); None when it cannot be built."""
    import torch

    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                return {key: tuple(value.shape) for key, value in build().state_dict().items()}
        except Exception:  # an encoder or architecture that cannot be built this way is simply not a candidate
            continue
    return None


@functools.lru_cache(maxsize=None)
def _encoder_shapes(name: str) -> dict[str, tuple[int, ...]] | None:
    from segmentation_models_pytorch.encoders import get_encoder

    return _built_shapes(lambda: get_encoder(name, in_channels=3, depth=5, weights=None))


@functools.lru_cache(maxsize=None)
def _model_shapes(architecture: str, encoder: str, num_classes: int) -> dict[str, tuple[int, ...]] | None:
    import segmentation_models_pytorch as smp

    return _built_shapes(lambda: smp.create_model(architecture, encoder_name=encoder, encoder_weights=None,
                                                  classes=num_classes))
