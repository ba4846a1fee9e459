"""Writing the procedural benchmark to disk (or S3) in the Cityscapes layout, split ``train``.

Each image draws from its own random stream, seeded by (seed, city, frame), and each city's look from the seed
(:func:`otce_ray.datasets.synth.catalogue.city_domain`): a city's images do not depend on which other cities or
how many frames are written, and the same arguments give byte-identical PNG files. Any v2 or v3 city or variant
can be written by name.
"""

from __future__ import annotations

import io
import json
from typing import Sequence

import numpy as np
from PIL import Image

from otce_ray import fs
from otce_ray.datasets.synth import shifts
from otce_ray.datasets.synth.catalogue import city_domain, frame_streams
from otce_ray.datasets.synth.domains import CITY_NAMES, Domain
from otce_ray.datasets.synth.render import render
from otce_ray.datasets.synth.scene import compose

SPLIT = "train"
MANIFEST = "benchmark.json"
MIN_SIDE = 32


def render_frame(
    city: str, frame: int, seed: int, size: tuple[int, int], domain: Domain | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) uint8 and Cityscapes label ids (H, W) uint8 of one frame of ``city`` (a v2 or v3 city or a
    variant, :mod:`catalogue`) in the benchmark of ``seed``. ``domain`` paints the city's frame from the same
    random streams in another domain: a variant of the city (say, more people) whose frames differ from the
    city's only where the changed parameters act."""
    layout_rng, look_rng = frame_streams(city, seed, frame)
    domain = city_domain(city, seed) if domain is None else domain
    scene = compose(domain, layout_rng, *size)
    return render(scene, domain, look_rng), shifts.geometry(scene.labels, domain.shift)


def write_benchmark(
    out: str, cities: int | Sequence[str] = 8, images_per_city: int = 50, size: tuple[int, int] = (128, 256),
    seed: int = 0,
) -> list[str]:
    """Write ``cities`` (a count: the first ones of :data:`CITY_NAMES`, alternating families; or a list of v2 or
    v3 city or variant names) of ``images_per_city`` frames of ``size`` (height, width); return the city names.

    Read it back with ``open_dataset({"format": "cityscapes", "root": out, "split": "train", ...})``; a
    ``benchmark.json`` at ``out`` records the arguments and each city's family, condition and shift (if any).
    """
    names = _check(cities, images_per_city, size, seed)
    for city in names:
        for frame in range(images_per_city):
            image, labels = render_frame(city, frame, seed, size)
            stem = f"{city}_000000_{frame:06d}"
            image_path = fs.join(out, "leftImg8bit", SPLIT, city, f"{stem}_leftImg8bit.png")
            fs.write_bytes_atomic(image_path, png_bytes(image))
            fs.write_bytes_atomic(fs.join(out, "gtFine", SPLIT, city, f"{stem}_gtFine_labelIds.png"), png_bytes(labels))
    manifest = {
        "format": "cityscapes", "split": SPLIT, "seed": seed, "size": list(size), "images_per_city": images_per_city,
        "cities": {city: _record(city_domain(city, seed)) for city in names},
    }
    fs.write_bytes_atomic(fs.join(out, MANIFEST), (json.dumps(manifest, indent=2) + "\n").encode())
    return names


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes with fixed options and no metadata, so that equal arrays give equal files."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _record(domain: Domain) -> dict[str, str]:
    record = {"family": domain.family, "condition": domain.condition}
    return record if domain.shift is None else {**record, "shift": domain.shift}


def _check(cities: int | Sequence[str], images_per_city: int, size: tuple[int, int], seed: int) -> list[str]:
    """The city names to write, once every argument is checked."""
    def whole(value: object) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(images_per_city) or images_per_city < 1:
        raise ValueError(f"images_per_city: expected an integer >= 1, got {images_per_city!r}")
    if len(size) != 2 or not all(whole(side) and side >= MIN_SIDE for side in size):
        raise ValueError(f"size: expected (height, width), both integers >= {MIN_SIDE}, got {size!r}")
    if not whole(seed) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    if whole(cities):
        if not 1 <= cities <= len(CITY_NAMES):
            raise ValueError(f"cities: expected an integer from 1 to {len(CITY_NAMES)} or a list of city names, "
                             f"got {cities!r}")
        return list(CITY_NAMES[:cities])
    if (not isinstance(cities, (list, tuple)) or not cities or not all(isinstance(city, str) for city in cities)
            or len(set(cities)) != len(cities)):
        raise ValueError(f"cities: expected a count or a non-empty list of distinct city names, got {cities!r}")
    for city in cities:
        try:
            city_domain(city, seed)
        except ValueError as error:
            raise ValueError(f"cities: {error}") from None
    return list(cities)
