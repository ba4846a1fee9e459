"""The dataset spec is derived from the layouts' declarations: every key says whether it decides content, the
fingerprint hashes exactly those keys, and fingerprints stay what they were when a key list was kept by hand (pixel
stores already written are keyed by them)."""

from __future__ import annotations

import pytest

from otce_ray.datasets import class_names, dataset_fingerprint, spec as dataset_spec
from otce_ray.datasets.layouts import LAYOUTS
from otce_ray.datasets.spec import CONTENT_KEYS, DATASET, SHARD


def _declared() -> list[tuple[str, str, object]]:
    """(where, key, setting) of every key a dataset spec may hold."""
    found = [("common", key, setting) for key, setting in DATASET.common.items()]
    found += [("shard", key, setting) for key, setting in SHARD.settings.items()]
    return found + [(fmt, key, setting) for fmt, fields in DATASET.formats.items()
                    for key, setting in fields.settings.items()]


def test_every_dataset_key_declares_whether_it_decides_content():
    undeclared = [f"{where}.{key}" for where, key, setting in _declared() if setting.content not in (True, False)]
    assert not undeclared, f"declare content=True or content=False for {undeclared}"


def test_a_key_declared_by_several_layouts_decides_content_alike():
    flags: dict[str, set] = {}
    for _, key, setting in _declared():
        flags.setdefault(key, set()).add(setting.content)
    assert {key: seen for key, seen in flags.items() if len(seen) > 1} == {}


def test_the_spec_and_the_fingerprint_are_derived_from_the_layouts():
    assert tuple(DATASET.formats) == tuple(LAYOUTS)
    assert all(DATASET.formats[fmt] is layout.fields for fmt, layout in LAYOUTS.items())
    declared = {key for _, key, setting in _declared() if setting.content}
    assert set(CONTENT_KEYS) == declared and "name" not in declared


def test_a_content_key_declared_later_changes_no_existing_fingerprint(monkeypatch):
    """A new layout's key is hashed only where it is set: the other formats' stores stay valid."""
    spec = {"name": "g", "format": "gta5", "root": "/data/gta5"}
    before = dataset_fingerprint(spec)
    monkeypatch.setattr(dataset_spec, "CONTENT_KEYS", (*CONTENT_KEYS, "variant"))
    assert dataset_fingerprint(spec) == before


@pytest.mark.parametrize(("spec", "fingerprint"), [
    ({"name": "cs", "format": "cityscapes", "root": "/data/cityscapes", "split": "val",
      "cities": ["frankfurt", "lindau", "frankfurt"]}, "a44f454f939c7367"),
    ({"name": "cs", "format": "cityscapes", "root": "s3://bucket/cityscapes/", "split": "train"}, "16ce075db912bcff"),
    ({"name": "f", "format": "folder", "root": "/data/folder", "label_map": {7: 0, 3: 1, 26: 2}, "ignore_index": 0},
     "554c8bb7c63d7ef1"),
    ({"name": "f", "format": "folder", "root": "/data/folder", "label_map": {1: 0}}, "9a7eb4a1311b7fc1"),
    ({"name": "g", "format": "gta5", "root": "/data/gta5", "max_images": 500, "seed": 3}, "9b6e506bd4fb85ae"),
    ({"name": "g", "format": "gta5", "root": "/data/gta5", "seed": 3}, "9ee2080b0e824069"),
    ({"name": "b", "format": "bdd100k", "root": "s3://bucket/bdd", "split": "val", "on_error": "skip"},
     "c181e5e5cdd07c17"),
])
def test_fingerprints_are_those_existing_pixel_stores_are_keyed_by(spec, fingerprint):
    assert dataset_fingerprint(spec) == fingerprint


def test_each_layout_names_its_classes():
    assert class_names("cityscapes")[0] == "road" and len(class_names("bdd100k")) == len(class_names("gta5")) == 19
    assert class_names("folder") == {}
