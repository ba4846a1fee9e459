"""Extraction on a local multi-node Ray cluster (head + 2 worker nodes with one fake GPU each).

One cluster serves the whole module. Models x datasets end to end: schema, row counts, alignment, determinism,
idempotent reruns and resume, failures recorded per model, worker death retried, S3 stores and datasets.
"""

from __future__ import annotations

import os

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from test_extraction_nets import ConstantNet, CoordNet, expected_fractions, expected_rows, write_folder_dataset

from otce_ray.extraction import extract_model, run_extraction
from otce_ray.store import complete_keys, manifest_uri, part_uri, read_pixels

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PIXELS = 50


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    """The cluster, started after the S3 variables are exported so its workers inherit them."""
    import ray
    from ray.cluster_utils import Cluster

    had_local = ray.is_initialized()  # the session's ray_local fixture: one connection per driver, so pause it
    if had_local:
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 << 20})
    for _ in range(2):
        cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=80 << 20)
    # workers import the helper nets by module name, as the driver does
    ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": TESTS_DIR}}, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        if had_local:  # same settings as conftest's ray_local
            ray.init(address="local", num_cpus=2, object_store_memory=96 << 20, include_dashboard=False,
                     log_to_driver=False)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two models (an alignment oracle in TorchScript, a built-in PSPNet) and two datasets of different sizes."""
    root = tmp_path_factory.mktemp("zoo")
    coord = str(root / "coord.pt")
    torch.jit.script(CoordNet(stride=4)).save(coord)
    models = [
        {"name": "coord", "format": "torchscript", "path": coord},
        {"name": "psp", "format": "builtin", "architecture": "pspnet", "num_classes": 19, "init_seed": 3},
    ]
    datasets = [write_folder_dataset(str(root / "dsA"), 7, (48, 64), seed=1),
                write_folder_dataset(str(root / "dsB"), 5, (40, 56), seed=2)]
    return models, datasets


@pytest.fixture(scope="module")
def extracted(cluster, zoo, tmp_path_factory):
    models, datasets = zoo
    store = str(tmp_path_factory.mktemp("store"))
    summaries = run_extraction(models, {m["name"]: datasets for m in models}, store,
                               pixels_per_image=PIXELS, batch_size=2, num_gpus=0.5, num_shards=3)
    return store, summaries


def _mtimes(store: str) -> dict[str, int]:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(store) for f in fs}


def test_two_models_two_datasets_complete_with_schema_and_counts(extracted, zoo):
    store, summaries = extracted
    models, datasets = zoo
    assert [(s.model, s.dataset, s.status) for s in summaries] == [
        ("coord", "dsA", "ok"), ("coord", "dsB", "ok"), ("psp", "dsA", "ok"), ("psp", "dsB", "ok")]
    for summary in summaries:
        spec = next(d for d in datasets if d["name"] == summary.dataset)
        assert summary.rows == expected_rows(spec, PIXELS) and summary.shards_written == 3
        assert complete_keys(store, summary.dataset, summary.model) == [summary.key]
    schema = pq.read_schema(part_uri(store, "dsA", "psp", summaries[2].key, 0))
    assert schema.names == ["image_id", "row", "col", "label", "features", "logits"]
    assert schema.field("features").type == pa.list_(pa.float16(), 32)
    assert schema.field("logits").type == pa.list_(pa.float16(), 19)
    assert schema.field("label").type == pa.int16()
    pixels = read_pixels(store, "dsB", "psp")
    assert pixels.features.shape == (summaries[3].rows, 32) and pixels.logits.shape[1] == 19
    assert pixels.manifest["pixels_per_image"] == PIXELS and pixels.manifest["num_shards"] == 3
    assert np.isfinite(pixels.features).all()


def test_labels_and_features_are_aligned_with_the_sampled_pixels(extracted, zoo):
    store, _ = extracted
    for spec in zoo[1]:
        pixels = read_pixels(store, spec["name"], "coord")
        height, width = np.asarray(Image.open(os.path.join(spec["root"], "masks", "img000.png"))).shape
        np.testing.assert_allclose(pixels.features[:, 0], expected_fractions(pixels.rows, height, height // 4),
                                   atol=1e-3)  # float16 storage
        np.testing.assert_allclose(pixels.features[:, 1], expected_fractions(pixels.cols, width, width // 4),
                                   atol=1e-3)
        masks = {i: np.asarray(Image.open(os.path.join(spec["root"], "masks", f"{i}.png"))) for i in set(pixels.image_ids)}
        truth = np.array([masks[i][r, c] for i, r, c in zip(pixels.image_ids, pixels.rows, pixels.cols)])
        np.testing.assert_array_equal(pixels.labels, truth)
        assert (truth != 255).all()


def test_rerun_writes_nothing_and_a_partial_store_resumes(extracted, zoo):
    store, _ = extracted
    models, datasets = zoo
    before = _mtimes(store)
    summaries = run_extraction(models, {m["name"]: datasets for m in models}, store,
                               pixels_per_image=PIXELS, batch_size=2, num_gpus=0.5, num_shards=3)
    assert {s.status for s in summaries} == {"cached"} and _mtimes(store) == before

    # as if the job was killed after two of three shards: no manifest, one part missing
    old = read_pixels(store, "dsA", "coord")
    key = summaries[0].key
    os.remove(manifest_uri(store, "dsA", "coord", key))
    os.remove(part_uri(store, "dsA", "coord", key, 1))
    summary = extract_model(models[0], datasets[0], store, pixels_per_image=PIXELS, batch_size=2, num_gpus=0.5,
                            seed=0, num_shards=3)
    assert (summary.status, summary.shards_written, summary.shards_reused) == ("ok", 1, 2)
    after = _mtimes(store)
    assert after.keys() == before.keys()
    rewritten = {path for path in before if after[path] != before[path]}
    assert rewritten == {part_uri(store, "dsA", "coord", key, 1), manifest_uri(store, "dsA", "coord", key)}
    new = read_pixels(store, "dsA", "coord")
    np.testing.assert_array_equal(new.features, old.features)
    np.testing.assert_array_equal(new.rows, old.rows)


def test_results_do_not_depend_on_sharding(extracted, zoo, tmp_path):
    store, _ = extracted
    models, datasets = zoo
    summary = extract_model(models[1], datasets[0], str(tmp_path), pixels_per_image=PIXELS, batch_size=4,
                            num_gpus=1, seed=0, num_shards=1)
    assert summary.status == "ok" and summary.shards_written == 1
    one, three = read_pixels(str(tmp_path), "dsA", "psp"), read_pixels(store, "dsA", "psp")
    # shards interleave images, so compare the same pixels in (image, row, col) order
    order_one = np.lexsort((one.cols, one.rows, one.image_ids.astype(str)))
    order_three = np.lexsort((three.cols, three.rows, three.image_ids.astype(str)))
    for column in ("image_ids", "rows", "cols", "labels"):
        np.testing.assert_array_equal(getattr(one, column)[order_one], getattr(three, column)[order_three])
    # batch size and thread count may change the last bits of a convolution
    np.testing.assert_allclose(one.features[order_one], three.features[order_three], atol=2e-3)


def test_failing_models_are_recorded_and_the_others_go_on(cluster, zoo, tmp_path):
    _, datasets = zoo
    nan_path = str(tmp_path / "nan.pt")
    torch.jit.script(ConstantNet(float("nan"))).save(nan_path)
    models = [
        {"name": "missing", "format": "torchscript", "path": str(tmp_path / "absent.pt")},
        {"name": "nan", "format": "torchscript", "path": nan_path},
        {"name": "noimport", "format": "python", "entrypoint": "not_a_module:build"},
        {"name": "good", "format": "builtin", "architecture": "fcn8s", "num_classes": 4},
        {"name": "bad-spec", "format": "builtin"},
    ]
    summaries = run_extraction(models, {m["name"]: datasets[1:] for m in models}, str(tmp_path / "store"),
                               pixels_per_image=10, num_gpus=0.5, num_shards=2)
    by_model = {s.model: s for s in summaries}
    assert by_model["good"].status == "ok" and complete_keys(str(tmp_path / "store"), "dsB", "good")
    assert by_model["missing"].error.startswith("model 'missing': TorchScript file not found")
    assert by_model["nan"].error.startswith("model 'nan': features contain NaN/Inf on image 'img00")
    assert by_model["noimport"].error.startswith("model 'noimport': entrypoint module 'not_a_module' does not import "
                                                 "on the driver")
    assert by_model["bad-spec"].error == "model 'bad-spec': field 'architecture' is required for format 'builtin'"
    assert by_model["bad-spec"].dataset == "dsB"
    assert by_model["missing"].status == "failed" and by_model["missing"].error.endswith("absent.pt")  # at planning
    assert by_model["nan"].status == "failed" and "dataset 'dsB' shard" in by_model["nan"].error
    for name in ("missing", "nan", "noimport"):
        assert by_model[name].status == "failed" and not complete_keys(str(tmp_path / "store"), "dsB", name)


def test_unreachable_s3_checkpoint_is_recorded(cluster, zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    model = {"name": "far", "format": "builtin", "architecture": "unet", "checkpoint": "s3://zoo/unet.pt"}
    summary = extract_model(model, zoo[1][1], str(tmp_path), pixels_per_image=10, batch_size=2, num_gpus=0.5,
                            seed=0)
    assert summary.status == "failed"
    assert summary.error.startswith("model 'far': cannot reach s3://zoo/unet.pt") and "127.0.0.1:9" in summary.error


def test_a_dying_worker_is_retried_and_recorded_when_retries_run_out(cluster, zoo, tmp_path):
    dataset = zoo[1][1]
    model = {"name": "crashy", "format": "python", "entrypoint": "test_extraction_nets:crash_once",
             "kwargs": {"marker": str(tmp_path / "crashed")}}
    summary = extract_model(model, dataset, str(tmp_path / "a"), pixels_per_image=10, batch_size=2, num_gpus=0.5,
                            seed=0, num_shards=1)
    assert os.path.exists(tmp_path / "crashed")  # the first attempt did kill its worker
    assert summary.status == "ok" and summary.rows == expected_rows(dataset, 10)

    model["kwargs"] = {"marker": str(tmp_path / "crashed-again")}
    summary = extract_model(model, dataset, str(tmp_path / "b"), pixels_per_image=10, batch_size=2, num_gpus=0.5,
                            seed=0, num_shards=1, max_retries=0)
    assert summary.status == "failed" and summary.error.startswith("model 'crashy': shard 0 task lost")


def test_s3_dataset_and_store_through_ray(cluster, zoo, s3_bucket):
    models, datasets = zoo
    s3 = boto3.client("s3")
    local = datasets[1]
    for folder in ("images", "masks"):
        for name in os.listdir(os.path.join(local["root"], folder)):
            s3.upload_file(os.path.join(local["root"], folder, name), s3_bucket, f"data/dsB/{folder}/{name}")
    remote = {**local, "root": f"s3://{s3_bucket}/data/dsB"}
    store = f"s3://{s3_bucket}/stores"
    summary = extract_model(models[0], remote, store, pixels_per_image=PIXELS, batch_size=2, num_gpus=0.5, seed=0,
                            num_shards=2)
    assert summary.status == "ok" and complete_keys(store, "dsB", "coord") == [summary.key]
    pixels = read_pixels(store, "dsB", "coord", sample=100, seed=0)
    assert len(pixels) == 100
    np.testing.assert_allclose(pixels.features[:, 0], expected_fractions(pixels.rows, 40, 10), atol=1e-3)
    again = extract_model(models[0], remote, store, pixels_per_image=PIXELS, batch_size=2, num_gpus=0.5, seed=0,
                          num_shards=2)
    assert again.status == "cached"


def test_more_gpus_per_task_than_the_cluster_has_is_refused(cluster, zoo, tmp_path):
    with pytest.raises(ValueError, match="num_gpus=4 per task, but the largest node of the Ray cluster has 1 GPUs"):
        extract_model(zoo[0][1], zoo[1][1], str(tmp_path), num_gpus=4)


def test_changed_settings_extract_a_store_of_their_own_beside_the_first(cluster, zoo, tmp_path):
    models, datasets = zoo
    first = extract_model(models[1], datasets[1], str(tmp_path), pixels_per_image=10, batch_size=2, num_gpus=0.5,
                          seed=0, num_shards=2)
    second = extract_model(models[1], datasets[1], str(tmp_path), pixels_per_image=20, batch_size=2, num_gpus=0.5,
                           seed=0, num_shards=2)
    assert (second.status, second.shards_written, second.shards_reused) == ("ok", 2, 0)
    assert second.key != first.key and complete_keys(str(tmp_path), "dsB", "psp") == sorted([first.key, second.key])
    assert len(read_pixels(str(tmp_path), "dsB", "psp", key=second.key)) == expected_rows(datasets[1], 20)
    assert len(read_pixels(str(tmp_path), "dsB", "psp", key=first.key)) == expected_rows(datasets[1], 10)


def test_the_entrypoint_allow_list_is_enforced_on_the_workers(cluster, zoo, tmp_path):
    model = {"name": "tiny", "format": "python", "entrypoint": "test_extraction_nets:tiny_backbone",
             "kwargs": {"num_classes": 3}, "feature_layer": "body"}
    refused = extract_model(model, zoo[1][1], str(tmp_path / "a"), pixels_per_image=10, num_gpus=0.5,
                            allowed_entrypoints=["mycompany.models"])
    assert refused.status == "failed"
    assert ("entrypoint 'test_extraction_nets:tiny_backbone' refused: module 'test_extraction_nets' is not under "
            "allowed_entrypoints (mycompany.models)") in refused.error
    allowed = extract_model(model, zoo[1][1], str(tmp_path / "b"), pixels_per_image=10, num_gpus=0.5,
                            allowed_entrypoints=["mycompany.models", "test_extraction_nets"])
    assert allowed.status == "ok"
