"""The v3 benchmark: one family of cities that differ in content, non-affine shifts that keep labels exact, and
v2's frames untouched."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth import (
    CITY_NAMES, CITY_NAMES_V3, GAME_CITIES, REAL_CITIES, SHIFTS, city_domain, domains_v3, render_frame, variant,
    write_benchmark,
)
from otce_ray.datasets.synth import shifts
from otce_ray.datasets.synth.domains import Pattern
from otce_ray.datasets.synth.textures import PATTERNS, _PATTERNS
from otce_ray.schema import name_problem

SIZE = (64, 128)
# Cityscapes ids the scenes use: ego vehicle 1, road 7, sidewalk 8, building 11, pole 17, light 19, sign 20,
# vegetation 21, terrain 22, sky 23, person 24, car 26, truck 27.
SCENE_IDS = {1, 7, 8, 11, 17, 19, 20, 21, 22, 23, 24, 26, 27}


def test_every_v2_frame_is_unchanged():
    """Seeds 0 and 3, every v2 city, two frames, two sizes: the digest taken before v3 existed."""
    digest = hashlib.sha256()
    for seed in (0, 3):
        for city in CITY_NAMES:
            for frame in (0, 1):
                for size in (SIZE, (48, 96)):
                    image, labels = render_frame(city, frame, seed, size)
                    digest.update(image.tobytes() + labels.tobytes())
    assert digest.hexdigest() == "343d78e88c47c4efa7171aeadc1537f7a83bc569556de7e97b060d5a9ce006b7"


def test_the_v3_roster_is_one_family_plus_four_game_like_cities_all_clear_and_unshifted():
    cities = domains_v3(0)
    assert list(cities) == list(CITY_NAMES_V3) == list(REAL_CITIES + GAME_CITIES)
    assert len(REAL_CITIES) == 24 and len(GAME_CITIES) == 4 and not set(CITY_NAMES_V3) & set(CITY_NAMES)
    assert {cities[c].family for c in REAL_CITIES} == {"real-like"}
    assert {cities[c].family for c in GAME_CITIES} == {"game-like"}
    assert {(d.condition, d.shift) for d in cities.values()} == {("clear", None)}
    names = [*CITY_NAMES_V3, *(variant(cities["v3-alpha"], "fog", shift).name for shift in SHIFTS)]
    assert all(name_problem(name) is None for name in names)  # folder-safe: stores are keyed by them
    assert domains_v3(0) is cities  # drawn once per seed


def test_v3_frames_depend_only_on_seed_city_and_frame():
    image, labels = render_frame("v3-kappa", 2, 5, SIZE)
    again = render_frame("v3-kappa", 2, 5, SIZE)
    np.testing.assert_array_equal(image, again[0])
    np.testing.assert_array_equal(labels, again[1])
    assert not np.array_equal(image, render_frame("v3-kappa", 3, 5, SIZE)[0])
    assert not np.array_equal(image, render_frame("v3-kappa", 2, 6, SIZE)[0])
    assert not np.array_equal(labels, render_frame("kappa", 2, 5, SIZE)[1])  # its own streams, not v2 kappa's


def test_a_new_seed_draws_new_content_for_every_city():
    first, second = domains_v3(0), domains_v3(1)
    for city in CITY_NAMES_V3:
        changed = {field.name for field in dataclasses.fields(first[city])
                   if getattr(first[city], field.name) != getattr(second[city], field.name)}
        assert {"horizon", "cars", "people", "road_width", "camera_height", "fov", "trucks", "signs",
                "patterns"} <= changed


def _shares(city: str, domain=None, frames: int = 6) -> dict[int, float]:
    labels = np.stack([render_frame(city, frame, 0, SIZE, domain=domain)[1] for frame in range(frames)])
    return {label_id: float((labels == label_id).mean()) for label_id in SCENE_IDS}


def test_real_like_cities_differ_in_what_is_seen_not_only_in_colour():
    cities = [domains_v3(0)[c] for c in REAL_CITIES]
    for field, spread in {"camera_height": 0.5, "fov": 0.35, "road_width": 0.15, "vegetation": 0.4, "cars": 3.0,
                          "people": 3.0, "trucks": 0.2, "signs": 0.3, "object_scale": 0.3}.items():
        values = [getattr(d, field) for d in cities]
        assert max(values) - min(values) > spread, field
    road_kinds = {d.patterns["road"].kind for d in cities}
    assert road_kinds == set(PATTERNS)  # every pattern kind paves some city's road
    shares = [_shares(city, frames=3) for city in REAL_CITIES]
    for label_id in (7, 11, 21, 23, 26):  # road, building, vegetation, sky, car
        values = [s[label_id] for s in shares]
        assert max(values) > 2 * min(values), label_id


def test_camera_height_and_field_of_view_move_label_shares():
    base = domains_v3(0)["v3-gamma"]
    low, high = (_shares("v3-gamma", dataclasses.replace(base, camera_height=h)) for h in (0.7, 1.5))
    assert low[7] > 1.6 * high[7]  # a higher camera sees a narrower road...
    assert low[26] + low[24] > 2 * (high[26] + high[24])  # ...and smaller cars and people
    narrow, wide = (_shares("v3-gamma", dataclasses.replace(base, fov=f)) for f in (0.75, 1.4))
    assert wide[23] > narrow[23] + 0.06  # a wider field of view shrinks the skyline: more sky
    assert abs(wide[7] - narrow[7]) < 0.03  # the flat road looks the same through any focal length


def _affine_residual(plain: np.ndarray, shifted: np.ndarray) -> float:
    """RMS residual (grey levels) of the best per-channel gain-and-offset map from ``plain`` to ``shifted``."""
    residuals = []
    for channel in range(3):
        x, y = plain[..., channel].ravel().astype(float), shifted[..., channel].ravel().astype(float)
        design = np.stack([x, np.ones_like(x)], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
        residuals.append(y - design @ coefficients)
    return float(np.sqrt(np.mean(np.square(residuals))))


@pytest.mark.parametrize("city", ["v3-beta", "v3-kappa", "alpha"])
def test_shifts_are_not_per_channel_affine_and_a_gain_and_tint_change_is(city):
    base = city_domain(city, 0)
    relit = dataclasses.replace(base, gain=base.gain * 0.8, tint=(1.1, 0.95, 0.85))
    for frame in range(2):
        plain = render_frame(city, frame, 0, SIZE)[0]
        affine = _affine_residual(plain, render_frame(city, frame, 0, SIZE, domain=relit)[0])
        assert affine < 2.0  # rounding, and the sensor noise that the gain does not scale
        for shift in SHIFTS:
            residual = _affine_residual(plain, render_frame(f"{city}.{shift}", frame, 0, SIZE)[0])
            assert residual > max(5.0, 3 * affine), shift


@pytest.mark.parametrize("shift", list(SHIFTS))
def test_shifts_keep_labels_exact_and_valid(shift):
    for city in ("v3-delta", "v3-game-beta"):
        plain = render_frame(city, 1, 0, SIZE)[1]
        labels = render_frame(f"{city}.{shift}", 1, 0, SIZE)[1]
        assert set(np.unique(labels).tolist()) <= SCENE_IDS
        if shift == "lens":  # the only shift that moves pixels: labels are the plain ones, resampled
            assert 0.05 < (labels != plain).mean() < 0.5 and set(np.unique(labels)) <= set(np.unique(plain))
        else:
            np.testing.assert_array_equal(labels, plain)


def _within_class_spread(image: np.ndarray, labels: np.ndarray) -> float:
    pixels, ids = image.reshape(-1, 3).astype(float), labels.ravel()
    return sum(float(((pixels[ids == i] - pixels[ids == i].mean(0)) ** 2).sum()) for i in np.unique(ids)) / ids.size


def test_lens_moves_labels_with_the_image():
    for city in ("v3-alpha", "v3-delta", "beta"):
        plain_image, plain_labels = render_frame(city, 0, 0, SIZE)
        image, labels = render_frame(f"{city}.lens", 0, 0, SIZE)
        aligned = _within_class_spread(image, labels)
        assert aligned < 1.25 * _within_class_spread(plain_image, plain_labels)
        assert _within_class_spread(image, plain_labels) > 1.5 * aligned  # the unwarped labels no longer fit
    # Every label edge lands where the image edge does: warp a checkerboard image that is its own label map.
    y, x = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    board = np.where((y // 8 + x // 8) % 2 == 0, 7, 11).astype(np.uint8)
    warped_image = shifts.optics(board[..., None].astype(np.float32), "lens")[..., 0]
    warped_labels = shifts.geometry(board, "lens")
    assert (warped_labels != board).mean() > 0.3  # the squares moved...
    assert (np.abs(warped_image - warped_labels) < 2).all()  # ...and each pixel is nearer its own label's value


def test_texture_swap_paints_each_surface_class_as_another():
    table = shifts.painted_as("texture-swap")
    surfaces = [7, 8, 11, 21, 22]  # road, sidewalk, building, vegetation, terrain
    assert sorted(table[surfaces]) == surfaces and all(table[i] != i for i in surfaces)
    others = [i for i in range(256) if i not in surfaces]
    np.testing.assert_array_equal(table[others], others)
    np.testing.assert_array_equal(shifts.painted_as(None), np.arange(256))


def test_variants_round_trip_by_name_and_bad_names_are_refused():
    city = domains_v3(2)["v3-theta"]
    for condition, shift in (("fog", None), ("clear", "lens"), ("dusk", "jpeg")):
        made = variant(city, condition, shift)
        assert city_domain(made.name, 2) == made and (made.condition, made.shift) == (condition, shift)
    foggy = render_frame("v3-theta.fog", 0, 2, SIZE)
    assert np.array_equal(foggy[1], render_frame("v3-theta", 0, 2, SIZE)[1])  # weather does not move things
    assert not np.array_equal(foggy[0], render_frame("v3-theta", 0, 2, SIZE)[0])
    assert city_domain("alpha.noise", 0).shift == "noise"  # v2 cities take shifts too
    for bad in ("v3-theta.clear", "v3-theta.lens.fog", "v3-theta.blur.noise", "v3-nowhere", "epsilon.fog",
                "v3-theta.sepia"):
        with pytest.raises(ValueError):
            city_domain(bad, 0)
    with pytest.raises(ValueError, match="already shifted"):
        variant(variant(city, shift="blur"), shift="noise")


def test_patterns_are_finite_unit_scale_fields():
    rng = np.random.default_rng(0)
    for kind in PATTERNS:
        field = _PATTERNS[kind](rng, *SIZE, Pattern(kind, scale=0.1, strength=1.0, angle=0.5))
        assert field.shape == SIZE and np.isfinite(field).all() and 0.4 < field.std() < 2.0, kind


def test_write_benchmark_takes_city_names_and_reads_back(tmp_path):
    names = ["v3-alpha", "v3-alpha.jpeg", "v3-game-alpha", "gamma.dusk.lens"]
    assert write_benchmark(str(tmp_path), names, images_per_city=2, size=SIZE, seed=3) == names
    manifest = json.loads((tmp_path / "benchmark.json").read_text())
    assert manifest["cities"] == {
        "v3-alpha": {"family": "real-like", "condition": "clear"},
        "v3-alpha.jpeg": {"family": "real-like", "condition": "clear", "shift": "jpeg"},
        "v3-game-alpha": {"family": "game-like", "condition": "clear"},
        "gamma.dusk.lens": {"family": "real-like", "condition": "dusk", "shift": "lens"},
    }
    ds = open_dataset({"name": "v3", "format": "cityscapes", "root": str(tmp_path), "split": "train",
                       "cities": ["v3-alpha.jpeg"]})
    assert ds.image_ids == [f"v3-alpha.jpeg/v3-alpha.jpeg_000000_{frame:06d}" for frame in range(2)]
    np.testing.assert_array_equal(ds[1].image, render_frame("v3-alpha.jpeg", 1, 3, SIZE)[0])


@pytest.mark.parametrize(("cities", "message"), [
    (["v3-alpha", "v3-nowhere"], "cities: unknown city 'v3-nowhere'"),
    (["v3-alpha", "v3-alpha"], "cities: expected a count or a non-empty list of distinct city names"),
    ([], "cities: expected a count or a non-empty list"),
])
def test_write_benchmark_refuses_bad_city_lists_before_writing(tmp_path, cities, message):
    with pytest.raises(ValueError, match=message):
        write_benchmark(str(tmp_path), cities, images_per_city=1, size=SIZE)
    assert not any(tmp_path.iterdir())
