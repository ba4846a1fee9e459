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
# Greyscale modes wider than 8 bits (Pillow opens 16-bit greyscale PNG and TIFF as one of these).
_WIDE_GREY = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


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
    """An (H, W, 3) uint8 RGB array; grey or palette images are expanded, alpha is dropped.

    16-bit greyscale images are brought to 8 bits by value / 257 (rounded), so an 8-bit image saved as 16-bit
    (value x 257) reads back as its original; Pillow's own conversion would clip every value above 255 to white.
    (Pillow already reads 16-bit RGB as 8-bit RGB this way.) Floating-point images have no agreed range: refused.
    """
    image = _open(uri)
    if image.mode in _WIDE_GREY:
        values = np.array(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(f"{uri}: {image.mode} image with values outside 0-65535: not an image bit depth "
                               "otce-ray reads (save it as 8- or 16-bit)", uri=uri)
        grey = np.rint(values / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        raise DatasetError(f"{uri}: floating-point image (mode F) has no agreed value range; save it as 8- or "
                           "16-bit", uri=uri)
    return np.array(image.convert("RGB"))


def read_mask(uri: str) -> np.ndarray:
    """The raw (H, W) values of a single-channel mask; a colour mask is refused (its colours are not label ids)."""
    mask = _open(uri)
    if mask.mode not in _MASK_MODES:
        raise DatasetError(f"{uri}: mask has mode {mask.mode}, expected single-channel label values", uri=uri)
    return np.array(mask)
