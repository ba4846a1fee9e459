"""Which images a spec selects: sharding, the seeded max_images subset, the fingerprint and cheap pickling."""

from __future__ import annotations

import os
import pickle

import pytest
from datasets_trees import cityscapes_tree

from otce_ray.datasets import dataset_fingerprint, open_dataset


@pytest.fixture
def spec(tmp_path):
    cityscapes_tree(str(tmp_path), {"aachen": 4, "bremen": 3})
    return {"name": "cs", "format": "cityscapes", "root": str(tmp_path), "split": "train"}


@pytest.mark.parametrize("count", [1, 2, 3, 7, 9])
def test_shards_cover_every_image_exactly_once(spec, count):
    ds = open_dataset(spec)
    shards = [ds.shard(index, count) for index in range(count)]
    ids = [image_id for part in shards for image_id in part.image_ids]
    assert sorted(ids) == ds.image_ids and len(ids) == len(set(ids)) == 7
    assert [len(part) for part in shards] == [len(range(i, 7, count)) for i in range(count)]
    # The spec keys give the same shard as the method, with items that load.
    for index, part in enumerate(shards):
        keyed = open_dataset({**spec, "shard_index": index, "num_shards": count})
        assert keyed.image_ids == part.image_ids
        assert [item.image_id for item in keyed] == part.image_ids


def test_shard_arguments_are_checked(spec):
    ds = open_dataset(spec)
    with pytest.raises(ValueError, match="shard 'shard_index': 2 is out of range for num_shards 2"):
        ds.shard(2, 2)
    with pytest.raises(ValueError, match="'num_shards': expected an integer >= 1, got 0"):
        ds.shard(0, 0)


def test_max_images_is_a_seeded_nested_subset(spec):
    def ids(**keys):
        return open_dataset({**spec, **keys}).image_ids

    every = ids()
    three = ids(max_images=3, seed=1)
    assert len(three) == 3 and three == sorted(three) and set(three) <= set(every)
    assert three == ids(max_images=3, seed=1)  # deterministic
    assert set(three) <= set(ids(max_images=5, seed=1))  # nested
    assert {tuple(ids(max_images=3, seed=s)) for s in range(6)} != {tuple(three)}  # the seed matters
    assert ids(max_images=3) == ids(max_images=3, seed=0)  # seed defaults to 0
    assert ids(max_images=50) == every


def test_fingerprint_follows_content_not_name_shard_or_spelling(spec, monkeypatch):
    base = dataset_fingerprint(spec)
    assert len(base) == 16 and base == dataset_fingerprint(dict(spec))
    assert dataset_fingerprint({**spec, "name": "other", "shard_index": 1, "num_shards": 4}) == base
    assert dataset_fingerprint({**spec, "seed": 0, "on_error": "raise"}) == base  # the defaults, spelt out
    assert dataset_fingerprint({**spec, "seed": 5}) == base  # a seed without max_images selects nothing
    monkeypatch.chdir(spec["root"])
    assert dataset_fingerprint({**spec, "root": "."}) == base
    cities = dataset_fingerprint({**spec, "cities": ["bremen", "aachen"]})
    assert cities == dataset_fingerprint({**spec, "cities": ["aachen", "bremen"]})
    changed = [
        {"root": os.path.join(spec["root"], "x")}, {"split": "val"}, {"cities": ["aachen"]}, {"max_images": 3},
        {"max_images": 3, "seed": 1}, {"on_error": "skip"},
    ]
    prints = {base, cities} | {dataset_fingerprint({**spec, **change}) for change in changed}
    assert len(prints) == 2 + len(changed)


def test_dataset_pickles_cheaply_and_loads_after(spec):
    ds = open_dataset(spec)
    data = pickle.dumps(ds.shard(1, 2))
    assert len(data) < 4096  # file names and a 256-entry lookup, no pixels
    copy = pickle.loads(data)
    assert copy.image_ids == ds.image_ids[1::2]
    assert (copy[0].label == ds[1].label).all() and copy.name == "cs" and copy.num_classes == 19
