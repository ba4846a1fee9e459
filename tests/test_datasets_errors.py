"""Bad input: each case raises a DatasetError naming the file or the spec key; on_error: skip counts and reports."""

from __future__ import annotations

import logging

import pytest
from datasets_trees import bands, cityscapes_tree, encode, photo, put

from otce_ray.datasets import DatasetError, open_dataset

IMAGE = "leftImg8bit/train/aachen/aachen_000000_000000_leftImg8bit.png"
MASK = "gtFine/train/aachen/aachen_000000_000000_gtFine_labelIds.png"


def cityscapes(root, **keys):
    return {"name": "cs", "format": "cityscapes", "root": str(root), "split": "train", **keys}


@pytest.fixture
def tree(tmp_path):
    cityscapes_tree(str(tmp_path), {"aachen": 2, "bremen": 1})
    return tmp_path


def test_missing_mask_names_image_and_expected_mask(tree):
    (tree / MASK).unlink()
    with pytest.raises(DatasetError, match=f"{IMAGE}: missing mask, expected .*{MASK}"):
        open_dataset(cityscapes(tree))


def test_size_mismatch_names_both_files(tree):
    put(str(tree), MASK, encode(bands((7,), height=5, width=8)))
    ds = open_dataset(cityscapes(tree))
    with pytest.raises(DatasetError, match=f"{MASK}: mask is 8x5 but its image .*{IMAGE} is 8x6"):
        ds[0]


def test_label_value_outside_the_cityscapes_table(tree):
    put(str(tree), MASK, encode(bands((7, 40, 200))))
    with pytest.raises(DatasetError, match=f"{MASK}: mask value\\(s\\) 40, 200 not in the Cityscapes label ids"):
        open_dataset(cityscapes(tree))[0]


def test_label_value_outside_label_map_names_the_key(tmp_path):
    put(str(tmp_path), "images/x.png", encode(photo(0)))
    put(str(tmp_path), "masks/x.png", encode(bands((1, 2, 255))))
    spec = {"name": "f", "format": "folder", "root": str(tmp_path), "label_map": {1: 0, 2: 1}, "ignore_index": 0}
    with pytest.raises(DatasetError, match="masks/x.png: mask value\\(s\\) 255 not in spec key 'label_map' nor 'ignore"):
        open_dataset(spec)[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_image_names_the_file(tree, damage):
    path = tree / IMAGE
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a png at all", "empty": b""}[damage])
    with pytest.raises(DatasetError, match=f"{IMAGE}: unreadable (or truncated )?image") as caught:
        open_dataset(cityscapes(tree))[0]
    assert "object at 0x" not in str(caught.value)  # names the file, not an in-memory buffer


def test_colour_mask_is_refused(tree):
    put(str(tree), MASK, encode(photo(0)))
    with pytest.raises(DatasetError, match=f"{MASK}: mask has mode RGB, expected single-channel"):
        open_dataset(cityscapes(tree))[0]


def test_no_city_matched_names_the_key_and_lists_cities(tree):
    with pytest.raises(DatasetError, match="spec key 'cities': no images for zurich .*cities found: aachen, bremen"):
        open_dataset(cityscapes(tree, cities=["aachen", "zurich"]))


def test_missing_root_or_split_names_the_keys(tree):
    with pytest.raises(DatasetError, match="does not exist \\(check spec keys 'root' and 'split'\\)"):
        open_dataset(cityscapes(tree / "nowhere"))
    (tree / "leftImg8bit" / "val").mkdir()
    with pytest.raises(DatasetError, match="no image named \\*_leftImg8bit.png under .*val \\(spec keys 'root', 'split'"):
        open_dataset(cityscapes(tree, split="val"))


def test_folder_images_sharing_an_id_are_ambiguous(tmp_path):
    put(str(tmp_path), "images/x.png", encode(photo(0)))
    put(str(tmp_path), "images/x.jpg", encode(photo(0), "JPEG"))
    put(str(tmp_path), "masks/x.png", encode(bands((1,))))
    spec = {"name": "f", "format": "folder", "root": str(tmp_path), "label_map": {1: 0}}
    with pytest.raises(DatasetError, match="images/x.png and .*images/x.jpg share the id 'x'"):
        open_dataset(spec)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "spec key 'name': expected a non-empty string"),
        ({"format": "kitti"}, "spec key 'format': expected one of cityscapes, bdd100k, gta5, folder, got 'kitti'"),
        ({"citys": ["aachen"]}, "spec key 'citys' is not a cityscapes dataset key"),
        ({"label_map": {1: 0}}, "spec key 'label_map' is not a cityscapes dataset key"),
        ({"split": None}, "spec key 'split': expected a non-empty string"),
        ({"cities": "aachen"}, "spec key 'cities': expected a non-empty list of city names"),
        ({"max_images": 0}, "spec key 'max_images': expected an integer >= 1, got 0"),
        ({"seed": True}, "spec key 'seed': expected an integer >= 0, got True"),
        ({"on_error": "ignore"}, "spec key 'on_error': expected one of raise, skip"),
        ({"shard_index": 3, "num_shards": 3}, "'shard_index': 3 is out of range for num_shards 3"),
        ({"num_shards": 2}, "'shard_index' and 'num_shards' must be given together"),
    ],
)
def test_bad_spec_names_the_key(tree, change, message):
    with pytest.raises(DatasetError, match=message.replace("(", "\\(")):
        open_dataset(cityscapes(tree, **change))


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "spec key 'label_map' is required for format folder"),
        ({"label_map": {1: 255}}, "spec key 'label_map': entry 1: 255 must map a raw value >= 0 to a class id 0-254"),
        ({"label_map": {"1": 0}}, "spec key 'label_map': entry '1': 0 must map"),
        ({"label_map": {1: 0}, "ignore_index": 1}, "'ignore_index': raw value 1 is also a key of 'label_map'"),
    ],
)
def test_bad_folder_spec_names_the_key(tmp_path, keys, message):
    with pytest.raises(DatasetError, match=message):
        open_dataset({"name": "f", "format": "folder", "root": str(tmp_path), **keys})


def test_skip_counts_and_reports_every_broken_file(tmp_path, caplog):
    root = str(tmp_path)
    cityscapes_tree(root, {"aachen": 4})
    stem = "leftImg8bit/train/aachen/aachen_000000_{:06d}_leftImg8bit.png"
    (tmp_path / "gtFine/train/aachen/aachen_000000_000000_gtFine_labelIds.png").unlink()  # missing mask
    put(root, stem.format(1), b"\x89PNG\r\n\x1a\n truncated")  # unreadable image
    put(root, "gtFine/train/aachen/aachen_000000_000002_gtFine_labelIds.png", encode(bands((7, 99))))  # bad value

    ds = open_dataset(cityscapes(tmp_path, on_error="skip"))
    assert len(ds) == 4  # broken files are only known once loaded
    with caplog.at_level(logging.WARNING, logger="otce_ray.datasets"):
        items = list(ds)

    assert [item.image_id for item in items] == ["aachen/aachen_000000_000003"]
    assert [s.uri for s in ds.skipped] == [
        str(tmp_path / stem.format(0)), str(tmp_path / stem.format(1)),
        str(tmp_path / "gtFine/train/aachen/aachen_000000_000002_gtFine_labelIds.png")]
    assert "missing mask" in ds.skipped[0].reason and "value(s) 99" in ds.skipped[2].reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and warnings[-1].endswith("(3 skipped so far)")
    with pytest.raises(DatasetError, match="missing mask"):
        ds[0]  # indexing never skips: it has to return an item


def test_skip_still_refuses_an_empty_selection(tree):
    with pytest.raises(DatasetError, match="spec key 'cities'"):
        open_dataset(cityscapes(tree, cities=["zurich"], on_error="skip"))

