"""Decoding image and mask files into arrays, with errors that name the file.

Pillow decodes lazily, so a truncated file would otherwise fail (or, with LOAD_TRUNCATED_IMAGES, silently
yield grey pixels) far from where it was opened; here every file is fully decoded on the spot.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from otce_ray import fs
from otce_ray.datasets.errors import DatasetError

# Single-channel modes whose pixel values are the raw labels ("P": palette indices, as in GTA5 masks).
_MASK_MODES = {"L", "P", "I", "I;16", "I;16B", "I;16L"}


def _open(uri: str) -> Image.Image:
    """A decoded image; ``DatasetError`` (skippable under ``on_error: skip``) for a missing or broken file only: a read
    that keeps failing (``fs.TransientReadError``) is raised as it is, and fails the model instead of shrinking the
    dataset in silence."""
    try:
        data = fs.read_bytes(uri)
    except fs.TransientReadError:
        raise
    except OSError as error:
        raise DatasetError(f"{uri}: cannot read file ({error})", uri=uri) from error
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:  # its message names an in-memory buffer, not the file
        raise DatasetError(f"{uri}: unreadable image (not a format Pillow can decode)", uri=uri) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{uri}: unreadable or truncated image ({error})", uri=uri) from error
    return image


def read_image(uri: str) -> np.ndarray:
    """An (H, W, 3) uint8 RGB array; grey or palette images are expanded, alpha is dropped."""
    return np.array(_open(uri).convert("RGB"))


def read_mask(uri: str) -> np.ndarray:
    """The raw (H, W) values of a single-channel mask; a colour mask is refused (its colours are not label ids)."""
    mask = _open(uri)
    if mask.mode not in _MASK_MODES:
        raise DatasetError(f"{uri}: mask has mode {mask.mode}, expected single-channel label values", uri=uri)
    return np.array(mask)
