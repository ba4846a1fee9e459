"""Surface texture: a multiplicative modulation of each pixel's colour, by the class it is painted as.

v2 cities modulate every class with one grain field (smooth plus fine noise), weighted per class. v3 cities give
the surface classes their own pattern (grain, stripes, bricks or speckle, at their own scale): texture that
differs in structure, not only in amplitude, so no per-channel colour map turns one city's look into another's.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from otce_ray.datasets.synth.domains import Domain, Pattern
from otce_ray.datasets.synth.scene import ID

# How strongly the grain modulates each class (vegetation is the busiest, the sky nearly smooth).
WEIGHT = np.full(256, 0.4, dtype=np.float32)
for _name, _weight in {"road": 0.7, "sidewalk": 0.6, "building": 0.6, "vegetation": 1.4, "terrain": 1.0,
                       "sky": 0.1, "ego vehicle": 0.2}.items():
    WEIGHT[ID[_name]] = _weight
GRAIN_CELL = 6  # pixels


def texture(painted: np.ndarray, domain: Domain, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``(weight, pattern)``: the colour is multiplied by ``1 + domain.texture * weight * pattern``.

    ``painted`` holds the label id each pixel is painted as. Every field is drawn whatever the labels, so a frame
    whose classes are painted as others (the texture-swap shift) draws the same fields as the plain frame."""
    height, width = painted.shape
    pattern = grain(rng, height, width, GRAIN_CELL)
    weight = WEIGHT[painted]
    for name, spec in (domain.patterns or {}).items():
        field = _PATTERNS[spec.kind](rng, height, width, spec)
        where = painted == ID[name]
        pattern[where], weight[where] = field[where], spec.strength
    return weight, pattern


def grain(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Smooth noise over about ``cell`` pixels plus fine pixel noise."""
    return 0.6 * _smooth_noise(rng, height, width, cell) + 0.4 * rng.standard_normal((height, width),
                                                                                      dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Unit-variance noise varying over about ``cell`` pixels: a coarse grid, bilinearly upsampled."""
    grid = rng.standard_normal((height // cell + 2, width // cell + 2), dtype=np.float32)
    ys, xs = (np.arange(height) + 0.5) / cell, (np.arange(width) + 0.5) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0).astype(np.float32)[:, None], (xs - x0).astype(np.float32)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy) * np.float32(1.6)  # bilinear mixing shrinks the variance


def _pixels(spec: Pattern, height: int) -> float:
    """The pattern's feature size in pixels: a fraction of the height, so larger frames look the same."""
    return max(2.0, spec.scale * height)


def _grain(rng: np.random.Generator, height: int, width: int, spec: Pattern) -> np.ndarray:
    return grain(rng, height, width, round(_pixels(spec, height)))


def _stripes(rng: np.random.Generator, height: int, width: int, spec: Pattern) -> np.ndarray:
    """Parallel bands (paving, planks, lawn stripes) of period ``scale`` at ``angle``, plus a little grain."""
    y, x = np.ogrid[0:height, 0:width]
    phase = rng.uniform(0.0, 2 * np.pi)
    along = (x * np.cos(spec.angle) + y * np.sin(spec.angle)) * (2 * np.pi / _pixels(spec, height))
    bands = np.sqrt(2) * np.sin(along + phase)
    return (0.9 * bands + 0.3 * rng.standard_normal((height, width))).astype(np.float32)


def _bricks(rng: np.random.Generator, height: int, width: int, spec: Pattern) -> np.ndarray:
    """Courses of bricks or tiles twice as wide as tall, one level each, every other course offset by half a
    brick, with dark joints."""
    size = _pixels(spec, height)
    offset = rng.uniform(0.0, size, 2)
    y, x = np.ogrid[0:height, 0:width]
    rows = (y + offset[0]) / size
    course = np.floor(rows).astype(int)
    columns = (x + offset[1]) / (2 * size) + 0.5 * (course % 2)
    levels = rng.standard_normal((course.max() + 1, int(columns.max()) + 1)).astype(np.float32)
    joints = ((rows % 1.0) * size < 1.0) | ((columns % 1.0) * 2 * size < 1.0)
    return np.where(joints, np.float32(-2.0), levels[course, np.floor(columns).astype(int)])


def _speckle(rng: np.random.Generator, height: int, width: int, spec: Pattern) -> np.ndarray:
    """Sparse blotches (stains, flowers, gravel) about ``scale`` across on a plain ground."""
    blobs = _smooth_noise(rng, height, width, round(_pixels(spec, height)))
    return np.where(blobs > 1.0, np.float32(2.5), np.float32(-0.4))


_PATTERNS: dict[str, Callable[[np.random.Generator, int, int, Pattern], np.ndarray]] = {
    "grain": _grain, "stripes": _stripes, "bricks": _bricks, "speckle": _speckle,
}
PATTERNS: tuple[str, ...] = tuple(_PATTERNS)
