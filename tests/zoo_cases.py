"""Tiny random-initialised models of each native family, saved the way each ecosystem saves them, built offline.

The zoo libraries are the optional extra ``otce-ray[zoo]``: where one is missing its tests skip, except under CI
(``CI`` set), where `make test` installs them and a missing one is a failure, not a silent skip.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

ZOO_LIBRARIES = ("transformers", "torchvision", "segmentation_models_pytorch")


def require(*modules: str) -> None:
    """Skip (fail under CI) unless every module imports."""
    problems = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # ImportError, or PyPI's torchvision beside a torch it was not built for
            problems.append(f"{module} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
    if problems and os.environ.get("CI"):
        pytest.fail(f"not importable under CI, where `make test` installs otce-ray[zoo]: {'; '.join(problems)}")
    if problems:
        pytest.skip(f"needs otce-ray[zoo] (see the README): {'; '.join(problems)}")


def save_huggingface(folder: Path, kind: str, num_labels: int = 5, seed: int = 0) -> Path:
    """A save_pretrained folder of a tiny ``kind`` model (segformer, upernet, beit, dpt, mobilevit, ...)."""
    import transformers as hf

    torch.manual_seed(seed)
    configs = {
        "segformer": lambda: hf.SegformerConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                                num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=32),
        "segformer-wide": lambda: hf.SegformerConfig(hidden_sizes=[16, 16, 32, 32], depths=[1, 1, 1, 1],
                                                     num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=24),
        "upernet": lambda: hf.UperNetConfig(
            backbone_config=hf.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                              out_features=["stage1", "stage2", "stage3", "stage4"]),
            hidden_size=32, auxiliary_in_channels=24, use_auxiliary_head=False),
        "beit": lambda: hf.BeitConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                                      image_size=32, patch_size=8, out_indices=[0, 1, 2, 3], pool_scales=[1, 2],
                                      use_auxiliary_head=False, auxiliary_channels=16),
        "data2vec-vision": lambda: hf.Data2VecVisionConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=64,
            patch_size=8, out_indices=[1, 2, 3, 4], pool_scales=[1, 2], use_auxiliary_head=False,
            auxiliary_channels=16),
        "dpt": lambda: hf.DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                                    image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                                    neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16,
                                    use_auxiliary_head=False),
        "mobilevit": lambda: hf.MobileViTConfig(hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 48],
                                                aspp_out_channels=32),
        "mobilevitv2": lambda: hf.MobileViTV2Config(width_multiplier=0.25, aspp_out_channels=32),
        "mobilenet_v2": lambda: hf.MobileNetV2Config(depth_multiplier=0.25),
    }
    config = configs[kind]()
    config.num_labels = num_labels
    hf.AutoModelForSemanticSegmentation.from_config(config).save_pretrained(folder)
    return folder


def save_torchvision(path: Path, architecture: str, num_classes: int = 5, seed: int = 0, aux: bool = False) -> Path:
    """A state dict of a torchvision segmentation builder, as ``torch.save(model.state_dict(), path)`` writes it."""
    from torchvision.models import segmentation

    torch.manual_seed(seed)
    model = getattr(segmentation, architecture)(weights=None, weights_backbone=None, num_classes=num_classes,
                                                aux_loss=aux)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def smp_model(architecture: str, encoder: str, num_classes: int = 5, seed: int = 0, **kwargs):
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    return smp.create_model(architecture, encoder_name=encoder, encoder_weights=None, classes=num_classes, **kwargs)


def save_smp_pretrained(folder: Path, architecture: str, encoder: str, num_classes: int = 5, seed: int = 0,
                        **kwargs) -> Path:
    """smp's own ``save_pretrained`` folder (config.json + model.safetensors)."""
    smp_model(architecture, encoder, num_classes, seed, **kwargs).save_pretrained(folder)
    return folder


def save_smp_state(path: Path, architecture: str, encoder: str, num_classes: int = 5, seed: int = 0) -> Path:
    """A plain state dict of an smp model at default settings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(smp_model(architecture, encoder, num_classes, seed).state_dict(), path)
    return path


def build_mixed_zoo(root: Path, num_classes: int = 5) -> Path:
    """The 12-model zoo of the end-to-end test: 4 Hugging Face folders, 4 torchvision and 4 smp checkpoints (two
    smp save_pretrained folders, two plain state dicts), plus a file that is no model."""
    for index, kind in enumerate(("segformer", "segformer-wide", "upernet", "beit")):
        save_huggingface(root / "huggingface" / f"{kind}-{index}", kind, num_classes, seed=index)
    for index, architecture in enumerate(("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
                                          "deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")):
        save_torchvision(root / "torchvision" / f"{architecture}-{index}.pth", architecture, num_classes, seed=index,
                         aux=index == 3)
    save_smp_pretrained(root / "smp" / "unet-small", "Unet", "mobilenet_v2", num_classes, encoder_depth=3,
                        decoder_channels=(32, 16, 8))
    save_smp_pretrained(root / "smp" / "deeplabv3plus", "DeepLabV3Plus", "mobilenet_v2", num_classes, seed=1,
                        decoder_channels=32)
    save_smp_state(root / "smp" / "fpn.pt", "FPN", "resnet18", num_classes, seed=2)
    save_smp_state(root / "smp" / "linknet.pth", "Linknet", "resnet18", num_classes, seed=3)
    (root / "notes.txt").write_text("trained on alpha, see the wiki\n")
    return root
