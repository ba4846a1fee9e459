"""Helper networks and data for the models/extraction/store tests (no tests here).

Ray workers import this module by name (``test_extraction_nets``) through PYTHONPATH, so it must stay importable
on its own: torch, numpy and Pillow only.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from torch import nn


class CoordNet(nn.Module):
    """Features whose two channels are the cell centre's (row, col) as a fraction of the image, at ``stride``.

    Bilinear sampling at label pixel (r, c) must give back ((r + 0.5) / H, (c + 0.5) / W) away from the border,
    whatever the stride or input resize: this is the alignment oracle.
    """

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = _fractions(x, x.shape[2] // self.stride, x.shape[3] // self.stride)
        # logits at twice the stride, encoding the same fractions: aligned independently of the features
        return features, _fractions(x, x.shape[2] // (2 * self.stride), x.shape[3] // (2 * self.stride))


def _fractions(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    rows = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    cols = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    grid = torch.stack([rows[:, None].expand(height, width), cols[None, :].expand(height, width)])
    return grid.unsqueeze(0).expand(x.shape[0], 2, height, width) + 0.0 * x.mean()


def expected_fractions(positions: np.ndarray, extent: int, cells: int) -> np.ndarray:
    """What bilinear sampling of a CoordNet map with ``cells`` cells gives at label ``positions`` of ``extent``."""
    return np.clip((positions + 0.5) / extent, 0.5 / cells, 1 - 0.5 / cells)


class ConstantNet(nn.Module):
    """Returns a fixed value everywhere (NaN, Inf or huge values make the bad-feature cases)."""

    def __init__(self, value: float = 1.0, channels: int = 4) -> None:
        super().__init__()
        self.value = value
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], self.channels, x.shape[2] // 2, x.shape[3] // 2), self.value)


class FlatNet(nn.Module):
    """A forward with the wrong output shape: (B, d) instead of (B, d, h, w)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class TinyBackbone(nn.Module):
    """A torchvision-style model: returns {"out": logits}; the features come from ``feature_layer`` 'body'."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(torch.relu(self.body(x)))}


def tiny_backbone(num_classes: int = 3) -> nn.Module:
    return TinyBackbone(num_classes)


def crash_once(marker: str) -> nn.Module:
    """A model whose first forward anywhere kills its worker process (the marker file remembers it happened)."""
    return _CrashOnce(marker)


class _CrashOnce(nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os._exit(1)
        return self.conv(x)


def write_folder_dataset(root: str, count: int, size: tuple[int, int], classes: int = 4, seed: int = 0) -> dict:
    """Write a tiny 'folder'-format dataset (random RGB, random masks with an ignored band) and return its spec.

    The last image is almost all ignore (fewer labelled pixels than most samples ask for).
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    height, width = size
    for index in range(count):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.integers(0, classes, (height, width)).astype(np.uint8)
        mask[: height // 8] = 255
        if index == count - 1:
            mask[:] = 255
            mask[height // 2, : width // 4] = 1
        Image.fromarray(image).save(os.path.join(root, "images", f"img{index:03d}.png"))
        Image.fromarray(mask).save(os.path.join(root, "masks", f"img{index:03d}.png"))
    return {
        "name": os.path.basename(root.rstrip("/")),
        "format": "folder",
        "root": root,
        "label_map": {i: i for i in range(classes)},
        "ignore_index": 255,
    }


def expected_rows(spec: dict, pixels_per_image: int) -> int:
    """How many pixels a store of this dataset must hold: per image min(pixels_per_image, labelled pixels)."""
    masks = os.path.join(spec["root"], "masks")
    return sum(
        min(pixels_per_image, int((np.asarray(Image.open(os.path.join(masks, name))) != 255).sum()))
        for name in os.listdir(masks)
    )


class SlowConv(nn.Module):
    """A seeded 1x1 conv whose forward sleeps ``delay`` seconds: extraction slow enough to interrupt on purpose."""

    def __init__(self, delay: float, channels: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.conv.bias.zero_()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(self.delay)
        return torch.relu(self.conv(x))


def slow_conv(delay: float = 0.2, channels: int = 8, seed: int = 0) -> nn.Module:
    return SlowConv(delay, channels, seed)
