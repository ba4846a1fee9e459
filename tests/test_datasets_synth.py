"""The procedural benchmark: byte-identical for a seed, readable as Cityscapes, families that really differ."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from otce_ray.cli import main
from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth import (
    CITY_DOMAINS, CITY_NAMES, DOMAINS, FAMILIES, domains, render_frame, write_benchmark,
)

SMALL = dict(cities=2, images_per_city=3, size=(64, 128))


def files(root) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_gives_byte_identical_files_in_the_cityscapes_layout(tmp_path):
    assert write_benchmark(str(tmp_path / "a"), **SMALL) == ["alpha", "beta"]
    write_benchmark(str(tmp_path / "b"), **SMALL)
    first, second = files(tmp_path / "a"), files(tmp_path / "b")

    assert first == second
    stems = [f"{city}/{city}_000000_{frame:06d}" for city in ("alpha", "beta") for frame in range(3)]
    assert sorted(first) == sorted(
        ["benchmark.json"]
        + [f"leftImg8bit/train/{stem}_leftImg8bit.png" for stem in stems]
        + [f"gtFine/train/{stem}_gtFine_labelIds.png" for stem in stems]
    )
    manifest = json.loads(first["benchmark.json"])
    assert manifest["cities"] == {"alpha": {"family": "real-like", "condition": "clear"},
                                  "beta": {"family": "game-like", "condition": "clear"}}


def test_seed_changes_images_and_frames_do_not_depend_on_benchmark_size(tmp_path):
    write_benchmark(str(tmp_path / "big"), **SMALL)
    write_benchmark(str(tmp_path / "one"), cities=1, images_per_city=1, size=(64, 128))
    write_benchmark(str(tmp_path / "other"), **{**SMALL, "seed": 1})
    name = "leftImg8bit/train/alpha/alpha_000000_000000_leftImg8bit.png"
    big, one, other = (files(tmp_path / d) for d in ("big", "one", "other"))
    assert one[name] == big[name] != other[name]


def test_a_new_seed_draws_new_cities_in_the_same_roles_and_seed_0_keeps_its_frames():
    first, second = domains(0), domains(1)
    assert DOMAINS is first and domains(1) is second  # drawn once per seed
    for city in CITY_NAMES:
        assert (first[city].family, first[city].condition) == (second[city].family, second[city].condition)
    changed = {field.name for field in dataclasses.fields(first["gamma"])
               if getattr(first["gamma"], field.name) != getattr(second["gamma"], field.name)}
    assert {"horizon", "cars", "people", "texture", "noise", "palette", "gain"} <= changed
    # Seed 0's cities are those of the benchmarks written before seeds drew cities (the shipped zoo's).
    image, labels = render_frame("gamma", 3, 0, (64, 128))
    digest = hashlib.sha256(image.tobytes() + labels.tobytes()).hexdigest()
    assert digest == "1cad396c10ce4468fdffaead6644c48733f99ffc97ce188af00a1bf93fd6e528"


def test_a_variant_domain_keeps_the_frame_streams():
    base = domains(0)["iota"]
    crowded = dataclasses.replace(base, people=base.people * 4, cars=base.cars * 3)
    _, plain = render_frame("iota", 0, 0, (64, 128))
    _, busy = render_frame("iota", 0, 0, (64, 128), domain=crowded)
    assert (busy == 24).sum() > (plain == 24).sum()  # Cityscapes id 24: person
    np.testing.assert_array_equal(render_frame("iota", 0, 0, (64, 128), domain=base)[1], plain)


def test_benchmark_reads_back_with_the_cityscapes_reader(tmp_path):
    write_benchmark(str(tmp_path), **SMALL)
    ds = open_dataset({"name": "synth", "format": "cityscapes", "root": str(tmp_path), "split": "train",
                       "cities": ["beta"]})
    assert ds.image_ids == [f"beta/beta_000000_{frame:06d}" for frame in range(3)]
    item = ds[0]
    assert item.image.shape == (64, 128, 3) and item.label.shape == (64, 128)
    image, labels = render_frame("beta", 0, 0, (64, 128))
    np.testing.assert_array_equal(item.image, image)
    assert set(np.unique(item.label)) <= set(range(19)) | {255}


def test_scenes_hold_the_street_classes():
    seen = set()
    for city in CITY_NAMES[:4]:
        for frame in range(4):
            seen |= set(np.unique(render_frame(city, frame, 0, (128, 256))[1]).tolist())
    # Cityscapes ids: road 7, sidewalk 8, building 11, pole 17, light 19, sign 20, vegetation 21, terrain 22,
    # sky 23, person 24, car 26, truck 27, and the ego-vehicle hood 1 (ignored).
    assert {7, 8, 11, 17, 20, 21, 22, 23, 24, 26} <= seen and seen <= {1, 7, 8, 11, 17, 19, 20, 21, 22, 23, 24, 26, 27}


def _family_traits(city: str) -> tuple[float, float, float]:
    """Mean saturation, median horizontal pixel step inside the road, share of ignored (hood) pixels."""
    saturation, step, hood = [], [], []
    for frame in range(3):
        image, labels = render_frame(city, frame, 0, (64, 128))
        pixels = image.astype(np.float32)
        top, bottom = pixels.max(axis=2), pixels.min(axis=2)
        saturation.append(float(((top - bottom) / np.maximum(top, 1)).mean()))
        road = (labels[:, 1:] == 7) & (labels[:, :-1] == 7)
        step.append(float(np.median(np.abs(np.diff(pixels, axis=1)).sum(axis=2)[road])))
        hood.append(float((labels == 1).mean()))
    return float(np.mean(saturation)), float(np.mean(step)), float(np.mean(hood))


def test_families_differ_in_colour_texture_and_layout():
    traits = {city: _family_traits(city) for city in CITY_NAMES[:8]}
    real = [traits[c] for c in traits if CITY_DOMAINS[c] == "real-like"]
    game = [traits[c] for c in traits if CITY_DOMAINS[c] == "game-like"]
    assert len(real) == len(game) == 4 and set(CITY_DOMAINS.values()) == set(FAMILIES)
    for (real_city, game_city) in zip(CITY_NAMES[0:8:2], CITY_NAMES[1:8:2]):  # pairs under the same light
        assert DOMAINS[real_city].condition == DOMAINS[game_city].condition
        assert traits[game_city][0] > traits[real_city][0] + 0.15  # game-like: saturated
    assert min(t[1] for t in real) > 3 * max(t[1] for t in game)  # real-like: textured and noisy
    assert min(t[2] for t in real) > 0.02 and max(t[2] for t in game) == 0  # real-like: an ego-vehicle hood
    assert [DOMAINS[c].condition for c in CITY_NAMES[:8]] == ["clear"] * 4 + ["overcast"] * 4
    assert {DOMAINS[c].condition for c in CITY_NAMES} == {"clear", "overcast", "dusk", "fog"}


def test_cli_writes_the_benchmark(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["synth", "--out", str(out), "--cities", "3", "--images-per-city", "2", "--size", "48x96",
                 "--seed", "4"]) == 0
    assert "gamma: real-like, clear" in capsys.readouterr().out
    assert len(list(out.glob("leftImg8bit/train/*/*_leftImg8bit.png"))) == 6
    assert files(out) == files(_written(tmp_path / "direct", cities=3, images_per_city=2, size=(48, 96), seed=4))


def _written(root, **arguments):
    write_benchmark(str(root), **arguments)
    return root


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"cities": 0}, "cities: expected an integer from 1 to 24"),
        ({"cities": 25}, "cities: expected an integer from 1 to 24"),
        ({"images_per_city": 0}, "images_per_city: expected an integer >= 1"),
        ({"size": (16, 128)}, "size: expected \\(height, width\\), both integers >= 32"),
        ({"seed": -1}, "seed: expected an integer >= 0"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_benchmark(str(tmp_path), **arguments)
    assert not any(tmp_path.iterdir())


def test_cli_rejects_a_malformed_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path), "--size", "128"])
    assert exit_info.value.code == 2 and "expected HEIGHTxWIDTH" in capsys.readouterr().err
