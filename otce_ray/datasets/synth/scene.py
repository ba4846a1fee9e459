"""Street-scene layouts: a perspective road with sidewalks and verges, a skyline of facades and trees, and
cars, trucks, people, poles, signs and lights standing on the ground, painted far to near.

The output is geometry only (Cityscapes label ids, an instance map and a depth proxy); how it looks is decided
by :mod:`render`. Domains change the layout statistics here: horizon height, object scale, class frequencies, and
the camera. A flat, straight street looks the same through any focal length at a given row below the horizon,
so the field of view acts on what is not the ground: a wider one puts objects nearer the horizon (smaller),
shrinks the skyline and pulls the horizon towards the image centre. A higher camera makes the ground and
everything standing on it look smaller at the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from cityscapesscripts.helpers.labels import name2label

from otce_ray.datasets.synth.domains import Domain

# Cityscapes label ids, looked up by name in the official table.
ID = {name: name2label[name].id for name in (
    "sky", "road", "sidewalk", "terrain", "building", "vegetation", "car", "truck", "person", "pole",
    "traffic sign", "traffic light", "ego vehicle",
)}

Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u, v) in [0, 1] across the box -> inside?


@dataclass
class Scene:
    labels: np.ndarray  # (H, W) uint8 Cityscapes label ids
    instances: np.ndarray  # (H, W) int32 index into classes
    classes: list[int]  # label id of each instance
    depth: np.ndarray  # (H, W) float32, 0 = at the camera, 1 = at the horizon
    horizon: float  # row of the horizon
    windows: np.ndarray  # (H, W) bool, window panes on facades


def _box(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.ones(np.broadcast(u, v).shape, dtype=bool)


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1


def _car(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v >= 0.4) | ((u > 0.18) & (u < 0.82))  # body plus a narrower cabin on top


def _truck(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v >= 0.3) | (u > 0.3)  # cargo box with a lower cab


def _person(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    head = ((u - 0.5) / 0.28) ** 2 + ((v - 0.09) / 0.09) ** 2 <= 1
    body = (v >= 0.17) & (np.abs(u - 0.5) < np.where(v < 0.6, 0.45, 0.3))
    return head | body


@dataclass(frozen=True)
class _Thing:
    """An object to paint, in image coordinates (box may stick out of the image)."""

    label: int
    top: float
    bottom: float
    left: float
    right: float
    depth: float
    ground: float  # row where it stands: things are painted by increasing ground row (far first)
    shape: Shape = _box


class _Canvas:
    def __init__(self, height: int, width: int):
        self.labels = np.zeros((height, width), dtype=np.uint8)
        self.instances = np.zeros((height, width), dtype=np.int32)
        self.depth = np.ones((height, width), dtype=np.float32)
        self.classes: list[int] = []

    def fill(self, label: int, where: np.ndarray, depth: np.ndarray | float) -> None:
        """Paint a whole-image mask (stuff: sky, ground, facades) as one new instance."""
        self._paint((slice(None), slice(None)), where, label, depth[where] if isinstance(depth, np.ndarray) else depth)

    def draw(self, thing: _Thing) -> None:
        """Paint an object's shape inside its box, clipped to the image."""
        height, width = self.labels.shape
        y0, y1 = max(0, round(thing.top)), min(height, round(thing.bottom))
        x0, x1 = max(0, round(thing.left)), min(width, round(thing.right))
        if y1 <= y0 or x1 <= x0:
            return
        v = ((np.arange(y0, y1) + 0.5 - thing.top) / (thing.bottom - thing.top))[:, None]
        u = ((np.arange(x0, x1) + 0.5 - thing.left) / (thing.right - thing.left))[None, :]
        depth = max(0.0, thing.depth)  # standing below the frame (narrow field of view): at the camera
        self._paint((slice(y0, y1), slice(x0, x1)), thing.shape(u, v), thing.label, depth)

    def _paint(self, region: tuple[slice, slice], inside: np.ndarray, label: int, depth: np.ndarray | float) -> None:
        self.instances[region][inside] = len(self.classes)
        self.classes.append(label)
        self.labels[region][inside] = label
        self.depth[region][inside] = depth


@dataclass(frozen=True)
class _Street:
    """The ground plane: a point at row y, column x is ``t = (y - horizon) / (H - horizon)`` of the way from the
    horizon to the camera, and the street edges are straight lines through the vanishing point."""

    height: int
    width: int
    horizon: float
    vanish: float  # column of the vanishing point
    road: float  # half-widths at the bottom row, in pixels: road, + sidewalk, + verge
    walk: float
    verge: float
    zoom: float  # focal length relative to v2's (1 / fov)
    scale: float  # size of things standing on the ground relative to v2's (object scale / camera height)

    def row(self, t: float) -> float:
        return self.horizon + t * (self.height - self.horizon)


def compose(domain: Domain, rng: np.random.Generator, height: int, width: int) -> Scene:
    """One scene of ``domain``: every random choice comes from ``rng``."""
    road = domain.road_width * width * rng.uniform(0.85, 1.15) / domain.camera_height
    zoom = 1.0 / domain.fov
    horizon = float(np.clip(domain.horizon + rng.normal(0.0, 0.03), 0.2, 0.7))
    street = _Street(
        height, width,
        horizon=height * (horizon * zoom + 0.5 * (1.0 - zoom)),  # the offset from the centre scales with zoom
        vanish=width * (0.5 + rng.normal(0.0, 0.06)),
        road=road, walk=road * rng.uniform(0.25, 0.4), verge=road * domain.terrain * rng.uniform(0.7, 1.3),
        zoom=zoom, scale=domain.object_scale / domain.camera_height,
    )
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    canvas = _Canvas(height, width)
    canvas.fill(ID["sky"], np.ones((height, width), dtype=bool), 1.0)
    _skyline(canvas, street, domain, rng, y)
    t = np.clip((y - street.horizon) / (height - street.horizon), 0.0, 1.0)
    ahead = np.abs(x - street.vanish)
    ground = y > street.horizon
    for label, reach in (("terrain", street.road + street.walk + street.verge),
                         ("sidewalk", street.road + street.walk), ("road", street.road)):
        canvas.fill(ID[label], ground & (ahead < t * reach), 1.0 - t)
    things = [
        *_cars(street, domain, rng), *_people(street, domain, rng), *_poles(street, domain, rng),
    ]
    for thing in sorted(things, key=lambda thing: thing.ground):  # stable: a sign stays after its pole
        canvas.draw(thing)
    if domain.hood:
        canvas.draw(_Thing(ID["ego vehicle"], height * 0.9, height * 1.12, width * 0.05, width * 0.95, 0.0, height,
                           _ellipse))
    windows = _windows(canvas, street, domain, y, x)
    return Scene(canvas.labels, canvas.instances, canvas.classes, canvas.depth, street.horizon, windows)


def _skyline(canvas: _Canvas, street: _Street, domain: Domain, rng: np.random.Generator, y: np.ndarray) -> None:
    """Facades and tree crowns side by side from the left edge to the right, taller near the image edges."""
    height, width = canvas.labels.shape
    left = 0
    while left < width:
        span = max(2, round(width * rng.uniform(0.05, 0.16) * domain.object_scale * street.zoom))
        right = min(width, left + span)
        near = min(1.0, abs((left + right) / 2 - street.vanish) / (width / 2))  # 0 at the vanishing point
        columns = np.zeros((height, width), dtype=bool)
        columns[:, left:right] = True
        if rng.random() < domain.vegetation:
            top = street.horizon - height * rng.uniform(0.1, 0.28) * (0.4 + 0.6 * near) * street.zoom
            u = (np.arange(left, right) + 0.5 - (left + right) / 2) / (span / 2)
            crown = top + (street.horizon - top) * 0.4 * u**2  # a dome
            canvas.fill(ID["vegetation"], columns & (y >= np.pad(crown, (left, width - right))), 1.0 - 0.6 * near)
        else:
            top = street.horizon - height * rng.uniform(0.12, 0.5) * (0.3 + 0.7 * near) * street.zoom
            canvas.fill(ID["building"], columns & (y >= top), 1.0 - 0.6 * near)
        left = right


def _windows(canvas: _Canvas, street: _Street, domain: Domain, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A grid of window panes on facade pixels, its pitch set by the domain's object scale and the zoom."""
    period = max(3.0, canvas.labels.shape[0] / 16 * domain.object_scale * street.zoom)
    grid = ((y - street.horizon) % period < period * 0.5) & (x % period < period * 0.5)
    return grid & (canvas.labels == ID["building"])


def _distances(rng: np.random.Generator, mean_count: float, zoom: float) -> list[float]:
    """Where a Poisson number of objects stand, as t (0 at the horizon, 1 at the bottom row; beyond 1 when a
    narrow field of view puts them below the frame, their tops still in view)."""
    return [float(rng.uniform(0.12, 1.0)) * zoom for _ in range(rng.poisson(mean_count))]


def _cars(street: _Street, domain: Domain, rng: np.random.Generator) -> list[_Thing]:
    things = []
    for t in _distances(rng, domain.cars, street.zoom):
        truck = rng.random() < domain.trucks
        centre = street.vanish + t * street.road * rng.uniform(-0.75, 0.75)
        span = t * street.width * 0.2 * street.scale * rng.uniform(0.85, 1.15) * (1.3 if truck else 1.0)
        tall = span * (0.85 if truck else 0.55)
        bottom = street.row(t)
        things.append(_Thing(ID["truck" if truck else "car"], bottom - tall, bottom, centre - span / 2,
                             centre + span / 2, 1.0 - t, bottom, _truck if truck else _car))
    return things


def _people(street: _Street, domain: Domain, rng: np.random.Generator) -> list[_Thing]:
    things = []
    for t in _distances(rng, domain.people, street.zoom):
        side = rng.choice((-1.0, 1.0))
        centre = street.vanish + side * t * (street.road + street.walk * rng.uniform(0.2, 0.8))
        tall = t * street.height * 0.32 * street.scale * rng.uniform(0.85, 1.15)
        bottom = street.row(t)
        things.append(_Thing(ID["person"], bottom - tall, bottom, centre - tall * 0.18, centre + tall * 0.18,
                             1.0 - t, bottom, _person))
    return things


def _poles(street: _Street, domain: Domain, rng: np.random.Generator) -> list[_Thing]:
    """Poles at the outer sidewalk edge, most carrying a sign or a traffic light on the road side."""
    things = []
    for t in _distances(rng, domain.poles, street.zoom):
        side = rng.choice((-1.0, 1.0))
        centre = street.vanish + side * t * (street.road + street.walk * 0.85)
        bottom = street.row(t)
        top = bottom - t * street.height * 0.85 * street.scale
        half = max(0.6, t * street.width * 0.006 * street.scale)
        things.append(_Thing(ID["pole"], top, bottom, centre - half, centre + half, 1.0 - t, bottom))
        size = t * street.width * 0.045 * street.scale
        mount = rng.random()
        if mount < domain.signs:
            middle = centre - side * size * 0.6
            things.append(_Thing(ID["traffic sign"], top, top + size, middle - size / 2, middle + size / 2,
                                 1.0 - t, bottom, _ellipse))
        elif mount < domain.signs + 0.3:
            things.append(_Thing(ID["traffic light"], top, top + size * 1.2, centre - size * 0.22,
                                 centre + size * 0.22, 1.0 - t, bottom))
    return things
