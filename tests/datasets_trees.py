"""Tiny dataset trees in each layout, written with literal file names (not the readers' own naming code).

Shared by the tests/test_datasets_*.py modules; every writer takes a root that is a local path or an s3:// URI.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from otce_ray import fs

H, W = 6, 8
# Cityscapes label ids in three vertical bands: road (id 7 -> train 0), car (26 -> 13), unlabeled (0 -> 255).
CITYSCAPES_BANDS = (7, 26, 0)
TRAIN_BANDS = (0, 13, 255)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def photo(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def bands(values: tuple[int, ...], height: int = H, width: int = W) -> np.ndarray:
    """A mask of len(values) vertical bands, left to right."""
    columns = np.array_split(np.arange(width), len(values))
    mask = np.zeros((height, width), dtype=np.uint8)
    for value, cols in zip(values, columns):
        mask[:, cols] = value
    return mask


def put(root: str, path: str, data: bytes) -> str:
    uri = fs.join(root, path)
    fs.write_bytes_atomic(uri, data)
    return uri


def cityscapes_tree(root: str, cities: dict[str, int], split: str = "train") -> list[str]:
    """Cityscapes layout with decoy files the reader must ignore; returns the image ids written."""
    ids = []
    for city, count in cities.items():
        for frame in range(count):
            stem = f"{city}_000000_{frame:06d}"
            put(root, f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", encode(photo(frame)))
            put(root, f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", encode(bands(CITYSCAPES_BANDS)))
            put(root, f"gtFine/{split}/{city}/{stem}_gtFine_color.png", encode(photo(99)))
            put(root, f"gtFine/{split}/{city}/{stem}_gtFine_polygons.json", b"{}")
            ids.append(f"{city}/{stem}")
    return sorted(ids)
