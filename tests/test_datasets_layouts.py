"""Each layout read from a tiny tree with the exact file naming; label mapping against the official table."""

from __future__ import annotations

import io

import numpy as np
from datasets_trees import CITYSCAPES_BANDS, TRAIN_BANDS, H, W, bands, cityscapes_tree, encode, photo, put
from PIL import Image

from otce_ray.datasets import open_dataset


def test_cityscapes_reads_pairs_maps_ids_and_ignores_decoys(tmp_path):
    ids = cityscapes_tree(str(tmp_path), {"aachen": 2, "bremen": 1})
    put(str(tmp_path), "leftImg8bit/val/aachen/aachen_000001_000000_leftImg8bit.png", encode(photo(5)))

    ds = open_dataset({"name": "cs", "format": "cityscapes", "root": str(tmp_path), "split": "train"})

    assert ds.name == "cs" and ds.num_classes == 19
    assert ds.image_ids == ids == [
        "aachen/aachen_000000_000000", "aachen/aachen_000000_000001", "bremen/bremen_000000_000000"]
    item = ds[1]
    assert item.image_id == "aachen/aachen_000000_000001"
    assert item.image.dtype == np.uint8 and item.image.shape == (6, 8, 3)
    np.testing.assert_array_equal(item.image, photo(1))
    # Official table: id 7 road -> 0, id 26 car -> 13, id 0 unlabeled -> 255.
    np.testing.assert_array_equal(item.label, bands(TRAIN_BANDS))
    assert [it.image_id for it in ds] == ids


def test_cityscapes_maps_every_official_id():
    from cityscapesscripts.helpers.labels import id2label

    from otce_ray.datasets.labels import cityscapes_lookup

    raw = np.arange(34, dtype=np.uint8).reshape(1, 34)
    mapped = cityscapes_lookup().apply(raw, "ids")
    expected = [id2label[i].trainId if 0 <= id2label[i].trainId < 19 else 255 for i in range(34)]
    assert mapped.tolist() == [expected]
    assert mapped[0, 7] == 0 and mapped[0, 26] == 13 and mapped[0, 0] == 255 and mapped[0, 33] == 18


def test_cityscapes_selects_cities(tmp_path):
    cityscapes_tree(str(tmp_path), {"aachen": 2, "bremen": 1, "cologne": 2})
    spec = {"name": "cs", "format": "cityscapes", "root": str(tmp_path), "split": "train",
            "cities": ["cologne", "bremen"]}
    assert open_dataset(spec).image_ids == [
        "bremen/bremen_000000_000000", "cologne/cologne_000000_000000", "cologne/cologne_000000_000001"]


def test_bdd100k_reads_jpg_images_with_train_id_masks(tmp_path):
    root = str(tmp_path)
    for stem in ("7d2f7975-e0c1c5a7", "0a0a0b1a-7c39d841"):
        put(root, f"images/10k/val/{stem}.jpg", encode(photo(0), "JPEG"))
        put(root, f"labels/sem_seg/masks/val/{stem}.png", encode(bands((0, 18, 255))))
    put(root, "labels/sem_seg/colormaps/val/7d2f7975-e0c1c5a7.png", encode(photo(1)))

    ds = open_dataset({"name": "bdd", "format": "bdd100k", "root": root, "split": "val"})

    assert ds.image_ids == ["0a0a0b1a-7c39d841", "7d2f7975-e0c1c5a7"] and ds.num_classes == 19
    item = ds[0]
    assert item.image.shape == (6, 8, 3)  # JPEG is lossy: only the shape is exact
    np.testing.assert_array_equal(item.label, bands((0, 18, 255)))


def test_gta5_reads_palette_masks_as_cityscapes_ids(tmp_path):
    root = str(tmp_path)
    mask = Image.frombytes("P", (W, H), bands(CITYSCAPES_BANDS).tobytes())  # GTA5 ships palette ("P") PNGs
    mask.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    put(root, "images/00001.png", encode(photo(3)))
    put(root, "labels/00001.png", buffer.getvalue())

    ds = open_dataset({"name": "gta", "format": "gta5", "root": root})

    assert ds.image_ids == ["00001"]
    np.testing.assert_array_equal(ds[0].label, bands(TRAIN_BANDS))


def test_folder_pairs_by_stem_with_label_map_and_ignore_index(tmp_path):
    root = str(tmp_path)
    put(root, "images/scene_b.jpg", encode(photo(0), "JPEG"))
    put(root, "images/sub/scene_a.png", encode(photo(1)))
    put(root, "masks/scene_b.png", encode(bands((10, 20, 99))))
    put(root, "masks/sub/scene_a.tif", encode(bands((20, 20, 10)), "TIFF"))
    put(root, "notes.txt", b"ignored")

    spec = {"name": "f", "format": "folder", "root": root, "label_map": {10: 0, 20: 4}, "ignore_index": 99}
    ds = open_dataset(spec)

    assert ds.image_ids == ["scene_b", "sub/scene_a"]
    assert ds.num_classes == 5
    np.testing.assert_array_equal(ds[0].label, bands((0, 4, 255)))
    np.testing.assert_array_equal(ds[1].label, bands((4, 4, 0)))
    np.testing.assert_array_equal(ds[1].image, photo(1))


def test_folder_reads_16_bit_masks(tmp_path):
    root = str(tmp_path)
    put(root, "images/x.png", encode(photo(0)))
    put(root, "masks/x.png", encode(np.where(bands((0, 1)) == 0, 300, 1000).astype(np.uint16)))

    ds = open_dataset({"name": "f", "format": "folder", "root": root, "label_map": {300: 1, 1000: 2}})

    np.testing.assert_array_equal(ds[0].label, bands((1, 2)))
