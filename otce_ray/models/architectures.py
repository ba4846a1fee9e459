"""Tiny segmentation networks for the demo zoo and the tests, addressable by name.

They mirror the families of the paper's model zoo (UNet, FCN-8s, SegNet, PSPNet) at CPU scale: a zoo of a dozen
trains on 128x256 images in about a minute. Each returns ``(features, logits)``: ``features`` (B, d, h, w) is the
penultimate map the OTCE cost is computed on, ``logits`` a 1x1 classifier over it (same h, w). The output strides
differ on purpose (UNet 2, SegNet 4, FCN 4, PSPNet 8) so extraction is exercised at every alignment.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Head(nn.Module):
    """1x1 projection to the feature width d plus the classifier, shared by every architecture."""

    def __init__(self, cin: int, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(cin, feature_dim, 1, bias=False), nn.BatchNorm2d(feature_dim), nn.ReLU())
        self.classifier = nn.Conv2d(feature_dim, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.project(x)
        return features, self.classifier(features)


def _resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class UNet(nn.Module):
    """Encoder-decoder with concatenated skips; features at stride 2 (a strided stem keeps it CPU-cheap)."""

    def __init__(self, num_classes: int, width: int = 16, feature_dim: int = 32) -> None:
        super().__init__()
        w = width
        self.enc1, self.enc2, self.enc3 = _conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2)
        self.dec2, self.dec1 = _conv(4 * w, 2 * w), _conv(3 * w, w)
        self.head = _Head(w, feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([_resize_to(e3, e2), e2], 1))
        d1 = self.dec1(torch.cat([_resize_to(d2, e1), e1], 1))
        return self.head(d1)


class SegNet(nn.Module):
    """Encoder-decoder that upsamples with the encoder's max-pooling indices; features at stride 4."""

    def __init__(self, num_classes: int, width: int = 16, feature_dim: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv(3, w, 2), _conv(w, w, 2))
        self.enc1, self.enc2 = _conv(w, w), _conv(w, 2 * w)
        self.dec2, self.dec1 = _conv(2 * w, w), _conv(w, w)
        self.head = _Head(w, feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        e1, i1 = F.max_pool2d(self.enc1(x), 2, return_indices=True)
        e2 = self.enc2(e1)
        p2, i2 = F.max_pool2d(e2, 2, return_indices=True)
        d2 = self.dec2(F.max_unpool2d(p2, i2, 2, output_size=e2.shape[-2:]))
        d1 = self.dec1(F.max_unpool2d(d2, i1, 2, output_size=x.shape[-2:]))
        return self.head(d1)


class FCN8s(nn.Module):
    """Plain conv backbone to stride 32 whose stride-32/16/8 maps are fused by addition (FCN-8s); stride 4 out."""

    def __init__(self, num_classes: int, width: int = 16, feature_dim: int = 32) -> None:
        super().__init__()
        w = width
        self.s4 = nn.Sequential(_conv(3, w, 2), _conv(w, w, 2))
        self.s8, self.s16, self.s32 = _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w, 2)
        self.skip8, self.skip16 = nn.Conv2d(2 * w, 2 * w, 1), nn.Conv2d(2 * w, 2 * w, 1)
        self.head = _Head(2 * w + w, feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c4 = self.s4(x)
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        fused = self.skip8(c8) + _resize_to(self.skip16(c16) + _resize_to(c32, c16), c8)
        return self.head(torch.cat([_resize_to(fused, c4), c4], 1))


class PSPNet(nn.Module):
    """Backbone to stride 8 plus a pyramid pooling module (bins 1, 2, 4); features at stride 8."""

    BINS = (1, 2, 4)

    def __init__(self, num_classes: int, width: int = 16, feature_dim: int = 32) -> None:
        super().__init__()
        w = width
        self.backbone = nn.Sequential(_conv(3, w, 2), _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w))
        self.pools = nn.ModuleList(nn.Conv2d(2 * w, w // 2, 1) for _ in self.BINS)
        self.head = _Head(2 * w + len(self.BINS) * (w // 2), feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.backbone(x)
        pyramid = [_resize_to(conv(F.adaptive_avg_pool2d(c, b)), c) for b, conv in zip(self.BINS, self.pools)]
        return self.head(torch.cat([c, *pyramid], 1))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "segnet": SegNet,
    "fcn8s": FCN8s,
    "pspnet": PSPNet,
}


def build_architecture(arch: str, num_classes: int, width: int = 16, feature_dim: int = 32) -> nn.Module:
    """Instantiate a built-in architecture by name (see ``ARCHITECTURES``)."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; built-ins are {sorted(ARCHITECTURES)}") from None
    return factory(num_classes=num_classes, width=width, feature_dim=feature_dim)
