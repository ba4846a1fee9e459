"""Writing the procedural benchmark to disk (or S3) in the Cityscapes layout, split ``train``.

Each image draws from its own random stream, seeded by (seed, city, frame), and each city's look from the seed
(:func:`otce_ray.datasets.synth.domains.domains`): a city's images do not depend on how many cities or frames are
written, and the same arguments give byte-identical PNG files.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from otce_ray import fs
from otce_ray.datasets.synth.domains import CITY_NAMES, Domain, domains
from otce_ray.datasets.synth.render import render
from otce_ray.datasets.synth.scene import compose

SPLIT = "train"
MANIFEST = "benchmark.json"
MIN_SIDE = 32


def render_frame(
    city: str, frame: int, seed: int, size: tuple[int, int], domain: Domain | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and Cityscapes label ids (H, W) uint8 of one frame of ``city`` in the benchmark of
    ``seed``. ``domain`` paints the city's frame from the same random streams in another domain: a variant of the
    city (say, more people) whose frames differ from the city's only where the changed parameters act."""
    layout_rng, look_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, CITY_NAMES.index(city), frame]).spawn(2)
    )
    domain = domains(seed)[city] if domain is None else domain
    scene = compose(domain, layout_rng, *size)
    return render(scene, domain, look_rng), scene.labels


def write_benchmark(
    out: str, cities: int = 8, images_per_city: int = 50, size: tuple[int, int] = (128, 256), seed: int = 0
) -> list[str]:
    """Write ``cities`` cities (the first ones of :data:`CITY_NAMES`, alternating families) of
    ``images_per_city`` frames of ``size`` (height, width); return the city names.

    Read it back with ``open_dataset({"format": "cityscapes", "root": out, "split": "train", ...})``; a
    ``benchmark.json`` at ``out`` records the arguments and each city's family and condition.
    """
    _check(cities, images_per_city, size, seed)
    names = list(CITY_NAMES[:cities])
    for city in names:
        for frame in range(images_per_city):
            image, labels = render_frame(city, frame, seed, size)
            stem = f"{city}_000000_{frame:06d}"
            image_path = fs.join(out, "leftImg8bit", SPLIT, city, f"{stem}_leftImg8bit.png")
            fs.write_bytes_atomic(image_path, png_bytes(image))
            fs.write_bytes_atomic(fs.join(out, "gtFine", SPLIT, city, f"{stem}_gtFine_labelIds.png"), png_bytes(labels))
    manifest = {
        "format": "cityscapes", "split": SPLIT, "seed": seed, "size": list(size), "images_per_city": images_per_city,
        "cities": {city: {"family": domains(seed)[city].family, "condition": domains(seed)[city].condition}
                   for city in names},
    }
    fs.write_bytes_atomic(fs.join(out, MANIFEST), (json.dumps(manifest, indent=2) + "\n").encode())
    return names


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes with fixed options and no metadata, so that equal arrays give equal files."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _check(cities: int, images_per_city: int, size: tuple[int, int], seed: int) -> None:
    def whole(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(cities) or not 1 <= cities <= len(CITY_NAMES):
        raise ValueError(f"cities: expected an integer from 1 to {len(CITY_NAMES)}, got {cities!r}")
    if not whole(images_per_city) or images_per_city < 1:
        raise ValueError(f"images_per_city: expected an integer >= 1, got {images_per_city!r}")
    if len(size) != 2 or not all(whole(side) and side >= MIN_SIDE for side in size):
        raise ValueError(f"size: expected (height, width), both integers >= {MIN_SIDE}, got {size!r}")
    if not whole(seed) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
