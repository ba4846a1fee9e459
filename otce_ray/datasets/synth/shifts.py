"""Non-affine domain shifts: changes of camera, storage or surfaces that no per-channel gain and offset undoes.

The weather conditions (:data:`domains.CONDITIONS`) act on colour almost per channel (gain, tint, saturation, a fog
blend), which z-scoring features per side cancels nearly by construction. These shifts act where that cannot
reach: across neighbouring pixels (blur, noise, compression, resolution), on geometry (lens) or on which
appearance goes with which class (texture swap). Each hooks into the step of the camera's pipeline where it
happens (:func:`render.render` calls them in order): ``painted_as`` (surfaces), ``optics`` (before the sensor
noise), ``sensor``, ``storage`` (on the 8-bit image). Labels stay exact: only ``lens`` moves pixels, and
:func:`geometry` moves the labels with the same map (nearest neighbour). ``lowres`` leaves the labels at full
resolution: they are the scene's truth, which a coarser image shows less sharply.

Strengths are fixed and relative to the image height, so a shift means the same at 64x128 and 96x192.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from otce_ray.datasets.synth.scene import ID

SHIFTS: dict[str, str] = {
    "blur": "defocus: a Gaussian of sigma 1.5 pixels per 64 rows on top of the city's own optics",
    "noise": "a low-light sensor: Poisson shot noise (2 grey levels per electron) plus Gaussian read noise (sd 3)",
    "jpeg": "JPEG compression at quality 15 (Pillow, 4:2:0 chroma)",
    "lowres": "captured at a third of the resolution (box filter), resized back (bilinear); labels unchanged",
    "lens": "barrel distortion (k = 0.3, corners kept, centre magnified 1.3x); labels warped with the image",
    "texture-swap": "road, building, vegetation, terrain and sidewalk painted as the next class in that cycle",
}
BLUR_SIGMA = 1.5 / 64  # of the height
ELECTRON = 2.0  # grey levels per photo-electron (0-255 scale)
READ_NOISE = 3.0
JPEG_QUALITY = 15
LOWRES_FACTOR = 3
BARREL = 0.3
_SWAP_CYCLE = ("road", "building", "vegetation", "terrain", "sidewalk")


def check(shift: str | None) -> None:
    """ValueError unless ``shift`` is None or one of :data:`SHIFTS`."""
    if shift is not None and shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}: expected one of {', '.join(SHIFTS)}")


def painted_as(shift: str | None) -> np.ndarray:
    """Label id -> the label id whose colour and texture it is painted with (identity but for texture-swap)."""
    table = np.arange(256, dtype=np.uint8)
    if shift == "texture-swap":
        for name, look in zip(_SWAP_CYCLE, _SWAP_CYCLE[1:] + _SWAP_CYCLE[:1]):
            table[ID[name]] = ID[look]
    return table


def optics(image: np.ndarray, shift: str | None) -> np.ndarray:
    """The float image after the lens: defocused or distorted."""
    if shift == "blur":
        return gaussian_blur(image, BLUR_SIGMA * image.shape[0])
    if shift == "lens":
        rows, columns = _barrel(*image.shape[:2])
        return _bilinear(image, rows, columns)
    return image


def sensor(image: np.ndarray, shift: str | None, rng: np.random.Generator) -> np.ndarray:
    """The float image with a low-light sensor's signal-dependent noise."""
    if shift != "noise":
        return image
    electrons = rng.poisson(np.clip(image, 0.0, None) / ELECTRON)
    return (electrons * ELECTRON + READ_NOISE * rng.standard_normal(image.shape)).astype(np.float32)


def storage(image: np.ndarray, shift: str | None) -> np.ndarray:
    """The uint8 image as stored: compressed, or at a lower resolution resized back."""
    if shift == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return np.asarray(Image.open(buffer).convert("RGB"))
    if shift == "lowres":
        height, width = image.shape[:2]
        small = Image.fromarray(image).resize(
            (max(1, round(width / LOWRES_FACTOR)), max(1, round(height / LOWRES_FACTOR))), Image.Resampling.BOX)
        return np.asarray(small.resize((width, height), Image.Resampling.BILINEAR))
    return image


def geometry(labels: np.ndarray, shift: str | None) -> np.ndarray:
    """The labels of the shifted image: warped by the lens (nearest neighbour), else unchanged."""
    if shift != "lens":
        return labels
    rows, columns = _barrel(*labels.shape)
    return labels[np.rint(rows).astype(int), np.rint(columns).astype(int)]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding (sigma 0: unchanged)."""
    if sigma <= 0:
        return image
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    kernel /= kernel.sum()
    for axis in (0, 1):
        padding = [(0, 0)] * image.ndim
        padding[axis] = (radius, radius)
        padded = np.pad(image, padding, mode="edge")
        size = image.shape[axis]
        image = sum(weight * padded.take(np.arange(i, i + size), axis=axis) for i, weight in enumerate(kernel))
    return image


@lru_cache(maxsize=8)
def _barrel(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel samples the undistorted image (row, column; inside the image): radius r from the
    centre (1 at the corners) is read at r (1 + k r^2) / (1 + k), so the corners stay, the centre is magnified
    and straight lines bow outwards."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    half_height, half_width = height / 2, width / 2
    radius2 = ((y - half_height) ** 2 + (x - half_width) ** 2) / (half_height**2 + half_width**2)
    factor = (1 + BARREL * radius2) / (1 + BARREL)
    rows = np.clip(half_height + (y - half_height) * factor - 0.5, 0, height - 1)
    columns = np.clip(half_width + (x - half_width) * factor - 0.5, 0, width - 1)
    rows.flags.writeable = columns.flags.writeable = False
    return rows, columns


def _bilinear(image: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) sampled at fractional (rows, columns), bilinearly."""
    r0, c0 = np.floor(rows).astype(int), np.floor(columns).astype(int)
    r1, c1 = np.minimum(r0 + 1, image.shape[0] - 1), np.minimum(c0 + 1, image.shape[1] - 1)
    fr, fc = (rows - r0).astype(np.float32)[..., None], (columns - c0).astype(np.float32)[..., None]
    top = image[r0, c0] * (1 - fc) + image[r0, c1] * fc
    bottom = image[r1, c0] * (1 - fc) + image[r1, c1] * fc
    return top * (1 - fr) + bottom * fr
