"""Painting a scene in a domain's look: palette, texture, windows, outlines, light, fog, blur and sensor noise.

The steps follow a camera's order (surfaces, light, atmosphere, optics, sensor, storage), so each domain parameter
means what it says: ``blur`` softens the fog-covered image, ``noise`` lands on top of everything. A domain's
non-affine shift (:mod:`shifts`) joins the step where it happens; with none the image is v2's, byte for byte.
"""

from __future__ import annotations

import numpy as np

from otce_ray.datasets.synth import shifts
from otce_ray.datasets.synth.domains import Domain
from otce_ray.datasets.synth.scene import ID, Scene
from otce_ray.datasets.synth.textures import texture

_NAME = {label_id: name for name, label_id in ID.items()}
_STEADY = {ID[name] for name in ("road", "sidewalk", "terrain", "sky")}


def render(scene: Scene, domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """The (H, W, 3) uint8 image of ``scene`` as ``domain`` looks; every random choice comes from ``rng``.

    The image is in the scene's geometry except under the ``lens`` shift: warp the labels with
    :func:`shifts.geometry` to match it."""
    height, width = scene.labels.shape
    looks = shifts.painted_as(domain.shift)
    painted = looks[scene.labels]
    image = _instance_colours([int(looks[label]) for label in scene.classes], domain, rng)[scene.instances]
    _shade_sky(image, scene, domain)
    if domain.texture > 0:
        weight, pattern = texture(painted, domain, rng)
        image *= (1.0 + domain.texture * weight * pattern)[..., None]
    image[scene.windows] = 0.2 * image[scene.windows] + 0.8 * np.asarray(domain.palette["window"], np.float32)
    if domain.outline:
        image[_edges(scene.instances)] *= 0.25
    if domain.vignette > 0:
        y, x = np.ogrid[0:height, 0:width]
        radius = ((2 * x + 1 - width) / width) ** 2 + ((2 * y + 1 - height) / height) ** 2
        image *= (1.0 - domain.vignette * radius / 2).astype(np.float32)[..., None]
    exposure = domain.gain * (1.0 + 0.05 * rng.standard_normal())
    image *= np.asarray(domain.tint, np.float32) * np.float32(exposure)
    grey = image.mean(axis=2, keepdims=True)
    image = grey + np.float32(domain.saturation) * (image - grey)
    if domain.fog > 0:
        haze = (domain.fog * scene.depth**1.5)[..., None]
        image = image * (1.0 - haze) + np.asarray(domain.fog_colour, np.float32) * haze
    image = shifts.optics(shifts.gaussian_blur(image, domain.blur), domain.shift)
    if domain.noise > 0:
        image += np.float32(domain.noise) * rng.standard_normal(image.shape, dtype=np.float32)
    image = shifts.sensor(image, domain.shift, rng)
    return shifts.storage(np.clip(np.rint(image), 0, 255).astype(np.uint8), domain.shift)


def _instance_colours(classes: list[int], domain: Domain, rng: np.random.Generator) -> np.ndarray:
    """One colour per instance: the class colour (a car's from the domain's car colours) plus jitter, a third
    as strong for the ground and the sky, which keep a city's identity from frame to frame."""
    base = [
        domain.car_colours[rng.integers(len(domain.car_colours))] if _NAME[label] == "car"
        else domain.palette[_NAME[label]]
        for label in classes
    ]
    spread = np.array([1 / 3 if label in _STEADY else 1.0 for label in classes])[:, None] * domain.colour_jitter
    jitter = rng.standard_normal((len(classes), 3)) * spread
    return np.clip(np.asarray(base) + jitter, 0, 255).astype(np.float32)


def _shade_sky(image: np.ndarray, scene: Scene, domain: Domain) -> None:
    """Sky brightens towards the horizon; game-like skies do it in flat bands."""
    rows = np.clip((np.arange(image.shape[0]) + 0.5) / max(scene.horizon, 1.0), 0.0, 1.0)
    if domain.sky_bands:
        rows = np.floor(rows * domain.sky_bands) / domain.sky_bands
    lift = (0.4 * rows).astype(np.float32)[:, None, None]
    sky = scene.labels == ID["sky"]
    lifted = image * (1.0 - lift) + 255.0 * lift
    image[sky] = lifted[sky]


def _edges(instances: np.ndarray) -> np.ndarray:
    edges = np.zeros(instances.shape, dtype=bool)
    edges[:, :-1] |= instances[:, :-1] != instances[:, 1:]
    edges[:-1, :] |= instances[:-1, :] != instances[1:, :]
    return edges
