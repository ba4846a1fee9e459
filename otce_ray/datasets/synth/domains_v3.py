"""The v3 benchmark's cities: many cities of one family that differ in what is seen, not only in colour.

In v2 a "same family" indicator alone out-predicts every metric, and a city's look is mostly a per-channel affine
map of its family's, which per-side z-scoring cancels. v3 is built for a single-family intra experiment like the
paper's Cityscapes one: 24 real-like cities ``v3-alpha`` ... ``v3-omega``, all in clear weather, unshifted, whose
palettes vary as little as v2's but whose content varies widely: layout (road width, vegetation against
buildings, terrain), class frequencies (cars, people, poles, trucks, signs), object scale, camera height and
field of view, and texture (each surface class has its own pattern kind and scale). Four game-like cities
``v3-game-alpha`` ... ``v3-game-delta`` (v2's game-like traits, v3's camera and texture draws) serve an
inter-family experiment. Weather and the non-affine shifts are applied as variants (:mod:`catalogue`).

The ``v3-`` prefix keeps every v3 name apart from v2's cities (the validation keys pixel stores by dataset
name); the parameters are drawn from their own streams, so v3 never changes a v2 frame.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from otce_ray.datasets.synth.domains import CITY_NAMES, FAMILY_RANGES, Domain, Pattern, draw_domain
from otce_ray.datasets.synth.textures import PATTERNS

REAL_CITIES = tuple(f"v3-{name}" for name in CITY_NAMES)
GAME_CITIES = tuple(f"v3-game-{name}" for name in CITY_NAMES[:4])
CITY_NAMES_V3 = REAL_CITIES + GAME_CITIES
SURFACES = ("road", "sidewalk", "building", "vegetation", "terrain")  # classes with a drawn texture pattern

# New v3 draws for both families: the camera and the less frequent classes.
_CAMERA = {"camera_height": (0.65, 1.6), "fov": (0.7, 1.4), "trucks": (0.0, 0.45), "signs": (0.15, 0.7)}
_FAMILY_V3 = {
    "real-like": {
        **FAMILY_RANGES["real-like"],
        # Content ranges far wider than v2's real-like ones; the look's ranges stay v2's.
        "horizon": (0.36, 0.52), "object_scale": (0.7, 1.35), "cars": (0.5, 7.0), "people": (0.3, 7.0),
        "poles": (0.5, 4.5), "vegetation": (0.05, 0.8), "road_width": (0.28, 0.6), "terrain": (0.0, 0.7),
        "texture": (0.12, 0.3),
        **_CAMERA,
    },
    "game-like": {**FAMILY_RANGES["game-like"], **_CAMERA},
}
_SEED_V3 = 0x5EED3


def _make_domain(index: int, seed: int) -> Domain:
    name = CITY_NAMES_V3[index]
    family = "real-like" if name in REAL_CITIES else "game-like"
    rng = np.random.default_rng([_SEED_V3, index, seed])
    domain = draw_domain(name, family, _FAMILY_V3[family], rng)
    patterns = {
        surface: Pattern(kind=PATTERNS[rng.integers(len(PATTERNS))], scale=rng.uniform(0.04, 0.2),
                         strength=rng.uniform(0.4, 1.6), angle=rng.uniform(0.0, np.pi))
        for surface in SURFACES
    }
    return replace(domain, patterns=patterns)


@lru_cache(maxsize=None)
def domains_v3(seed: int) -> dict[str, Domain]:
    """Every v3 city's domain in the benchmark of ``seed``: 24 real-like then 4 game-like, all clear and unshifted
    (their roles are the same for every seed, their parameters are the seed's)."""
    return {name: _make_domain(index, seed) for index, name in enumerate(CITY_NAMES_V3)}
