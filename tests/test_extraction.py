"""Extraction without Ray: pixel sampling, aligned bilinear feature sampling, one shard end to end, bad outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_extraction_nets import ConstantNet, CoordNet, expected_fractions, write_folder_dataset

from otce_ray.datasets import open_dataset
from otce_ray.extraction import ExtractionRequest, extract_pixels, pixel_rng, run_shard, sample_map, sample_pixels
from otce_ray.extraction.decode import PHASES
from otce_ray.models import ModelError, ModelSpec, load_model
from otce_ray.models.cache import ModelCache
from otce_ray.store import part_metadata, part_uri


def read_part(uri: str):
    return pq.read_table(uri).replace_schema_metadata(None)


@dataclass(frozen=True)
class _Item:
    image: np.ndarray
    label: np.ndarray
    image_id: str


def _items(count: int, size=(40, 56), seed: int = 0) -> list[_Item]:
    rng = np.random.default_rng(seed)
    items = []
    for index in range(count):
        label = rng.integers(0, 3, size).astype(np.uint8)
        label[:5] = 255
        items.append(_Item(rng.integers(0, 256, (*size, 3), dtype=np.uint8), label, f"im{index}"))
    return items


def _scripted(tmp_path, module: torch.nn.Module, name: str = "m") -> dict:
    path = str(tmp_path / f"{name}.pt")
    torch.jit.script(module).save(path)
    return {"name": name, "format": "torchscript", "path": path}


def test_sample_pixels_is_uniform_over_labelled_pixels_and_seeded():
    label = np.full((30, 40), 255, dtype=np.uint8)
    label[10:20, 5:35] = 2
    rows, cols = sample_pixels(label, 100, pixel_rng(0, "a"))
    assert len(rows) == 100 and len(set(zip(rows, cols))) == 100
    assert (label[rows, cols] == 2).all()
    again = sample_pixels(label, 100, pixel_rng(0, "a"))
    np.testing.assert_array_equal(rows, again[0])
    assert not np.array_equal(rows * 40 + cols, np.add(*sample_pixels(label, 100, pixel_rng(0, "b"))))
    assert not np.array_equal(rows, sample_pixels(label, 100, pixel_rng(1, "a"))[0])
    assert np.all(np.diff(rows * 40 + cols) > 0)  # row-major order


def test_sample_pixels_takes_all_when_fewer_and_none_when_all_ignored():
    label = np.full((8, 8), 255, dtype=np.uint8)
    label[3, 2:5] = 0
    rows, cols = sample_pixels(label, 10, pixel_rng(0, "x"))
    assert list(zip(rows, cols)) == [(3, 2), (3, 3), (3, 4)]
    assert len(sample_pixels(np.full((4, 4), 255), 10, pixel_rng(0, "x"))[0]) == 0
    with pytest.raises(ValueError, match=r"label must be \(H, W\)"):
        sample_pixels(np.zeros((2, 2, 2)), 1, pixel_rng(0, "x"))


def test_sample_pixels_is_close_to_uniform():
    label = np.zeros((10, 10), dtype=np.uint8)
    counts = np.zeros(100)
    for image in range(2000):
        rows, cols = sample_pixels(label, 10, pixel_rng(0, str(image)))
        counts[rows * 10 + cols] += 1
    assert counts.min() > 140 and counts.max() < 260  # expected 200 each


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_sample_map_recovers_positions_whatever_the_stride(stride):
    height, width = 64, 96
    features, _ = CoordNet(stride)(torch.zeros(1, 3, height, width))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    sampled = sample_map(features[0], rows, cols, (height, width)).numpy()
    # a linear ramp is reproduced exactly by bilinear sampling, and held constant within half a cell of the border
    np.testing.assert_allclose(sampled[:, 0], expected_fractions(rows, height, height // stride), atol=1e-6)
    np.testing.assert_allclose(sampled[:, 1], expected_fractions(cols, width, width // stride), atol=1e-6)
    interior = (rows >= stride) & (rows < height - stride)
    np.testing.assert_allclose(sampled[interior, 0] * height - 0.5, rows[interior], atol=1e-4)


def test_extract_pixels_aligns_features_and_logits_with_labels_under_resize(tmp_path):
    spec = {**_scripted(tmp_path, CoordNet(stride=4)), "size": [20, 28]}  # the model sees half-size inputs
    items = _items(3)  # labels are 40 x 56
    columns = extract_pixels(load_model(spec), items, pixels_per_image=60, batch_size=2, seed=0)
    assert columns.features.shape == (180, 2) and columns.logits.shape == (180, 2) and columns.images == 3
    for values, cells in ((columns.features, (5, 7)), (columns.logits, (2, 3))):  # strides 4 and 8 of 20 x 28
        np.testing.assert_allclose(values[:, 0], expected_fractions(columns.rows, 40, cells[0]), atol=1e-6)
        np.testing.assert_allclose(values[:, 1], expected_fractions(columns.cols, 56, cells[1]), atol=1e-6)
    by_id = {item.image_id: item for item in items}
    assert all(by_id[i].label[r, c] == lab for i, r, c, lab in
               zip(columns.image_ids, columns.rows, columns.cols, columns.labels))


def test_extract_pixels_is_deterministic_and_batch_independent():
    spec = {"name": "b", "format": "builtin", "architecture": "pspnet", "num_classes": 3}
    items = _items(5) + _items(2, size=(32, 48), seed=1)  # two image sizes in one shard
    one = extract_pixels(load_model(spec), items, pixels_per_image=40, batch_size=1, seed=3)
    four = extract_pixels(load_model(spec), items, pixels_per_image=40, batch_size=4, seed=3)
    np.testing.assert_array_equal(one.rows, four.rows)
    np.testing.assert_array_equal(one.labels, four.labels)
    np.testing.assert_allclose(one.features, four.features, atol=1e-5)
    reseeded = extract_pixels(load_model(spec), items, pixels_per_image=40, batch_size=4, seed=4)
    assert not np.array_equal(one.rows, reseeded.rows)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_feature_values_are_named(tmp_path, value):
    model = load_model(_scripted(tmp_path, ConstantNet(value), "const"))
    with pytest.raises(ModelError, match="^model 'const': features contain NaN/Inf on image 'im0'"):
        extract_pixels(model, _items(2), pixels_per_image=10, batch_size=2, seed=0)
    # any finite magnitude is fine: parts are stored scaled (tests/test_store.py)
    extract_pixels(load_model(_scripted(tmp_path, ConstantNet(1e6), "big")), _items(2), pixels_per_image=10,
                   batch_size=2, seed=0)


def _request(tmp_path, model: dict, dataset: dict, num_shards: int = 2) -> ExtractionRequest:
    return ExtractionRequest(
        model=ModelSpec.from_dict(model), dataset=dataset["name"], dataset_fingerprint="fp",
        store=str(tmp_path / "store"), pixels_per_image=30, seed=0, num_shards=num_shards,
    )


def _shard(dataset: dict, index: int, count: int = 2):
    return open_dataset(dataset).shard(index, count)


def test_run_shard_writes_once_then_skips(tmp_path):
    dataset = write_folder_dataset(str(tmp_path / "dsA"), count=5, size=(24, 32))
    request = _request(tmp_path, {"name": "u", "format": "builtin", "architecture": "unet", "num_classes": 4},
                       dataset)
    result = run_shard(request, 1, _shard(dataset, 1), batch_size=2)
    assert result.status == "written" and result.images == 2 and result.feature_dim == 32 and result.logit_dim == 4
    assert result.model_loads == 1 and set(result.timings) == set(PHASES)
    assert result.timings["forward"] > 0 and result.timings["decode"] > 0 and result.timings["write"] > 0
    uri = part_uri(request.store, "dsA", "u", request.key, 1)
    metadata = part_metadata(uri)
    assert metadata["key"] == request.key and metadata["shard"] == 1 and metadata["rows"] == result.rows
    assert metadata["feature_layer"] == "output" and metadata["pixels_per_image"] == 30
    mtime = os.stat(uri).st_mtime_ns
    assert run_shard(request, 1, _shard(dataset, 1), batch_size=2).status == "skipped"
    assert os.stat(uri).st_mtime_ns == mtime
    changed = _request(tmp_path, {"name": "u", "format": "builtin", "architecture": "unet", "num_classes": 4,
                                  "init_seed": 1}, dataset)
    assert changed.key != request.key and run_shard(changed, 1, _shard(dataset, 1), batch_size=2).status == "written"


def test_a_worker_loads_each_model_once_and_shards_match_a_fresh_load(tmp_path):
    dataset = write_folder_dataset(str(tmp_path / "dsA"), count=6, size=(24, 32))
    spec = {"name": "u", "format": "builtin", "architecture": "unet", "num_classes": 4}
    request = _request(tmp_path, spec, dataset, num_shards=3)
    models = ModelCache(capacity=1)
    loads = [run_shard(request, shard, _shard(dataset, shard, 3), 2, models=models).model_loads for shard in range(3)]
    assert loads == [1, 0, 0]
    cached = read_part(part_uri(request.store, "dsA", "u", request.key, 2))
    fresh = _request(tmp_path / "fresh", spec, dataset, num_shards=3)
    assert run_shard(fresh, 2, _shard(dataset, 2, 3), 2).model_loads == 1
    assert read_part(part_uri(fresh.store, "dsA", "u", fresh.key, 2)).equals(cached)


def test_run_shard_reports_failures_instead_of_raising(tmp_path):
    dataset = write_folder_dataset(str(tmp_path / "dsB"), count=3, size=(24, 32))
    missing = _request(tmp_path, {"name": "gone", "format": "torchscript", "path": str(tmp_path / "x.pt")}, dataset)
    result = run_shard(missing, 0, _shard(dataset, 0), batch_size=2)
    assert result.status == "failed"
    assert result.error.startswith("model 'gone': TorchScript file not found") and "dataset 'dsB' shard 0/2" in result.error
    view = _shard(dataset, 0)  # listed, then a file of the shard disappears before the worker reads it
    os.remove(view.samples[0].image_uri)
    result = run_shard(_request(tmp_path, {"name": "u", "format": "builtin", "architecture": "unet"}, dataset), 0,
                       view, 2)
    assert result.status == "failed" and result.error.startswith("model 'u': dataset 'dsB' shard 0/2: DatasetError")
    assert view.samples[0].image_uri in result.error
