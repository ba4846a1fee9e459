"""Reading a dataset tree from S3 (a moto server on 127.0.0.1) gives exactly what the local copy gives."""

from __future__ import annotations

import numpy as np
import pytest
from datasets_trees import cityscapes_tree

from otce_ray.datasets import DatasetError, open_dataset


def test_cityscapes_tree_on_s3_reads_like_local(s3_bucket, tmp_path):
    cities = {"aachen": 2, "bremen": 1}
    cityscapes_tree(f"s3://{s3_bucket}/cs", cities)
    cityscapes_tree(str(tmp_path), cities)
    spec = {"name": "cs", "format": "cityscapes", "split": "train", "cities": ["aachen"]}

    remote = open_dataset({**spec, "root": f"s3://{s3_bucket}/cs/"})
    local = open_dataset({**spec, "root": str(tmp_path)})

    assert remote.image_ids == local.image_ids == ["aachen/aachen_000000_000000", "aachen/aachen_000000_000001"]
    for got, want in zip(remote, local):
        assert got.image_id == want.image_id
        np.testing.assert_array_equal(got.image, want.image)
        np.testing.assert_array_equal(got.label, want.label)


def test_missing_s3_prefix_names_the_root(s3_bucket):
    with pytest.raises(DatasetError, match=f"directory s3://{s3_bucket}/nothing/leftImg8bit/train does not exist"):
        open_dataset({"name": "cs", "format": "cityscapes", "root": f"s3://{s3_bucket}/nothing", "split": "train"})


def test_synth_writes_to_s3_and_reads_back(s3_bucket):
    from otce_ray.datasets.synth import render_frame, write_benchmark

    root = f"s3://{s3_bucket}/synth"
    write_benchmark(root, cities=1, images_per_city=2, size=(32, 64))
    ds = open_dataset({"name": "synth", "format": "cityscapes", "root": root, "split": "train"})
    assert ds.image_ids == ["alpha/alpha_000000_000000", "alpha/alpha_000000_000001"]
    image, _ = render_frame("alpha", 1, 0, (32, 64))
    np.testing.assert_array_equal(ds[1].image, image)
