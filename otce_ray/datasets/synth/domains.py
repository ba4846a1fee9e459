"""The v2 benchmark's cities: each city is a domain with fixed layout statistics and a fixed look.

Two families mirror the paper's inter-dataset setting: ``real-like`` cities (textured, muted, sensor noise,
slight blur, lens vignetting, an ego-vehicle hood like Cityscapes) stand for BDD100K / Cityscapes, ``game-like``
cities (flat shading, saturated colours, dark outlines, no noise, wider roads, bigger objects) stand for GTA5.
Cities alternate families and come in fours per weather/light condition (clear, overcast, dusk, fog), so any
first 4k cities hold two cities of each family under each of k conditions. Within those fixed roles, a city's
parameters (layout statistics, palette, texture, noise, blur, saturation, brightness) are drawn from its family's
ranges by the benchmark seed and the city's position: a new seed is a new benchmark, with the same families and
conditions in the same places. Same-family, same-condition cities are the nearest sources, other-family cities
the farthest.

Seed 0 draws from the stream that every benchmark used before the seed drew cities, so its files are unchanged
(the shipped demo zoo was trained on them). The :class:`Domain` fields added for v3 (:mod:`domains_v3`: camera,
truck and sign shares, texture patterns, a shift) default to what v2 did, so v2 frames stay byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

FAMILIES = ("real-like", "game-like")
CONDITIONS = ("clear", "overcast", "dusk", "fog")
CITY_NAMES = (
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
    "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
)

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Pattern:
    """How one class's surfaces are textured (v3): ``kind`` is one of :data:`textures.PATTERNS`, ``scale`` the
    feature size as a fraction of the image height, ``strength`` multiplies the domain's ``texture`` amplitude,
    ``angle`` orients stripes (radians)."""

    kind: str
    scale: float
    strength: float
    angle: float = 0.0


@dataclass(frozen=True)
class Domain:
    name: str
    family: str  # one of FAMILIES
    condition: str  # one of CONDITIONS
    # Layout: where things are and how many of them.
    horizon: float  # mean horizon row, as a fraction of the image height
    object_scale: float  # size of cars, people, poles and facades relative to the real-like average
    cars: float  # mean count per image (Poisson)
    people: float
    poles: float
    vegetation: float  # share of the skyline that is trees rather than buildings
    road_width: float  # road half-width at the bottom row, as a fraction of the image width
    terrain: float  # grass verge width relative to the road (0: none)
    hood: bool  # ego-vehicle hood at the bottom (Cityscapes id 1, ignored in training)
    # Look: how each class is painted.
    palette: dict[str, RGB]  # base colour of each class name; "car" is the mean of car_colours
    car_colours: tuple[RGB, ...]
    colour_jitter: float  # per-instance colour spread (0-255 scale)
    texture: float  # amplitude of per-class texture (0: flat shading)
    noise: float  # sensor noise standard deviation (0-255 scale)
    blur: float  # optical blur, Gaussian sigma in pixels
    vignette: float  # corner darkening of a real lens
    outline: bool  # dark 1-pixel outlines between instances (cel shading)
    sky_bands: int  # sky gradient quantised to this many bands (0: smooth)
    saturation: float
    gain: float  # overall brightness
    tint: RGB  # colour of the light
    fog: float  # fog density at the farthest depth
    fog_colour: RGB
    # Added for v3; the defaults are the v2 benchmark's, so v2 cities draw and render as before.
    camera_height: float = 1.0  # relative to v2's camera: the ground and all on it look 1/camera_height as big
    fov: float = 1.0  # field of view relative to v2's: skyline, object distances and horizon offset scale by 1/fov
    trucks: float = 0.15  # share of vehicles that are trucks
    signs: float = 0.5  # share of poles carrying a sign (another 0.3 carry a traffic light)
    patterns: Mapping[str, Pattern] | None = None  # per-class texture patterns; None: v2's grain for every class
    shift: str | None = None  # a non-affine shift the frames go through (one of shifts.SHIFTS)


_PALETTES: dict[str, dict[str, RGB]] = {
    "real-like": {
        "road": (88, 86, 92), "sidewalk": (150, 140, 132), "building": (118, 108, 98), "vegetation": (72, 96, 48),
        "terrain": (128, 130, 84), "sky": (176, 196, 214), "person": (70, 58, 60), "truck": (160, 160, 150),
        "pole": (110, 110, 112), "traffic sign": (200, 190, 70), "traffic light": (45, 45, 40),
        "ego vehicle": (28, 28, 32), "window": (60, 66, 74),
    },
    "game-like": {
        "road": (70, 62, 110), "sidewalk": (226, 180, 110), "building": (210, 110, 70), "vegetation": (40, 190, 60),
        "terrain": (170, 220, 60), "sky": (60, 170, 255), "person": (240, 120, 40), "truck": (250, 200, 30),
        "pole": (220, 220, 235), "traffic sign": (255, 240, 0), "traffic light": (20, 20, 20),
        "ego vehicle": (20, 20, 20), "window": (170, 225, 255),
    },
}
_CAR_COLOURS: dict[str, tuple[RGB, ...]] = {
    "real-like": ((40, 40, 45), (180, 182, 185), (120, 34, 32), (42, 52, 80), (150, 150, 140)),
    "game-like": ((230, 30, 30), (30, 90, 240), (250, 210, 20), (30, 200, 90), (240, 240, 240)),
}
# Family traits, then per-city jitter: (low, high) ranges are drawn uniformly per city.
FAMILY_RANGES: dict[str, dict[str, Any]] = {
    "real-like": dict(
        horizon=(0.40, 0.50), object_scale=(0.85, 1.15), cars=(2.0, 4.0), people=(2.0, 4.0), poles=(1.5, 3.0),
        vegetation=(0.2, 0.45), road_width=(0.40, 0.50), terrain=(0.0, 0.3), hood=True, colour_jitter=14.0,
        texture=(0.12, 0.2), noise=(4.0, 8.0), blur=(0.5, 0.9), vignette=0.3, outline=False, sky_bands=0,
        saturation=(0.75, 0.95),
    ),
    "game-like": dict(
        horizon=(0.32, 0.42), object_scale=(1.15, 1.45), cars=(3.0, 6.0), people=(0.5, 2.0), poles=(1.0, 2.5),
        vegetation=(0.4, 0.65), road_width=(0.55, 0.68), terrain=(0.3, 0.6), hood=False, colour_jitter=30.0,
        texture=(0.0, 0.02), noise=(0.0, 0.5), blur=(0.0, 0.0), vignette=0.0, outline=True, sky_bands=4,
        saturation=(1.2, 1.45),
    ),
}
_CONDITION = {
    "clear": dict(gain=1.0, tint=(1.0, 1.0, 1.0), fog=0.0, fog_colour=(210, 215, 225), sky=None, saturation=1.0),
    "overcast": dict(gain=0.88, tint=(0.97, 0.99, 1.03), fog=0.15, fog_colour=(185, 190, 196), sky=(185, 190, 196),
                     saturation=0.85),
    "dusk": dict(gain=0.8, tint=(1.12, 0.95, 0.82), fog=0.1, fog_colour=(230, 150, 90), sky=(240, 150, 90),
                 saturation=1.0),
    "fog": dict(gain=0.95, tint=(1.0, 1.0, 1.0), fog=0.45, fog_colour=(205, 205, 210), sky=(205, 205, 210),
                saturation=0.85),
}
_SEED = 0x5EED


def _parameter_stream(index: int, seed: int) -> np.random.Generator:
    """City ``index``'s draws under benchmark ``seed``; seed 0 keeps the stream of the seed-independent cities."""
    return np.random.default_rng([_SEED, index] if seed == 0 else [_SEED, index, seed])


def _make_domain(index: int, seed: int) -> Domain:
    family = FAMILIES[index % 2]  # alternate families, so any first N cities hold both
    condition = CONDITIONS[(index // 4) % len(CONDITIONS)]  # two cities per family and condition, in a row
    return lit(draw_domain(CITY_NAMES[index], family, FAMILY_RANGES[family], _parameter_stream(index, seed)), condition)


def draw_domain(name: str, family: str, ranges: Mapping[str, Any], rng: np.random.Generator) -> Domain:
    """A clear-weather city of ``family``: every ``(low, high)`` range drawn uniformly from ``rng`` (in the order
    of ``ranges``, other values kept), then the palette jittered, then the brightness."""
    traits = {key: rng.uniform(*value) if isinstance(value, tuple) else value for key, value in ranges.items()}
    palette = {
        label: tuple(float(np.clip(c + rng.normal(0.0, traits["colour_jitter"] / 2), 0, 255)) for c in colour)
        for label, colour in _PALETTES[family].items()
    }
    clear = _CONDITION["clear"]
    return Domain(
        name=name, family=family, condition="clear", palette=palette, car_colours=_CAR_COLOURS[family], **traits,
        gain=rng.uniform(0.93, 1.07), tint=clear["tint"], fog=clear["fog"], fog_colour=clear["fog_colour"],
    )


def lit(domain: Domain, condition: str) -> Domain:
    """``domain`` (a clear-weather one) under the light and weather of ``condition``."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}: expected one of {', '.join(CONDITIONS)}")
    if domain.condition != "clear":
        raise ValueError(f"{domain.name} is already under {domain.condition!r}: only clear cities take a condition")
    light = _CONDITION[condition]
    palette = dict(domain.palette)
    if light["sky"] is not None:
        palette["sky"] = tuple(float(c) for c in light["sky"])
    return replace(
        domain, condition=condition, palette=palette, saturation=domain.saturation * light["saturation"],
        gain=light["gain"] * domain.gain, tint=light["tint"], fog=light["fog"], fog_colour=light["fog_colour"],
    )


@lru_cache(maxsize=None)
def domains(seed: int) -> dict[str, Domain]:
    """Every city's domain in the benchmark of ``seed`` (families and conditions are the same for every seed)."""
    return {name: _make_domain(index, seed) for index, name in enumerate(CITY_NAMES)}


DOMAINS: dict[str, Domain] = domains(0)
CITY_DOMAINS: dict[str, str] = {name: domain.family for name, domain in DOMAINS.items()}
