"""Parquet pixel stores: schema and metadata, atomic parts, manifest as completion mark, sampled reads, S3."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from otce_ray.store import (
    StoreError,
    complete_keys,
    manifest_uri,
    missing_parts,
    part_metadata,
    part_uri,
    pixel_table,
    read_manifest,
    read_pixels,
    read_samples,
    set_aside,
    write_manifest,
    write_part,
)
from otce_ray.store.parts import ROW_GROUP_ROWS
from store_cases import columns, write_store


def test_schema_types_and_metadata(tmp_path):
    table = pixel_table(**columns(10), metadata={"key": "abc", "model": "m"}, feature_dtype="float16")
    assert table.schema.field("label").type == pa.int16()
    assert table.schema.field("row").type == pa.int32()
    assert table.schema.field("features").type == pa.list_(pa.float16(), 6)
    assert table.schema.field("logits").type == pa.list_(pa.float16(), 3)
    uri = str(tmp_path / "part-00000.parquet")
    write_part(uri, table)
    assert part_metadata(uri) == {"key": "abc", "model": "m", "feature_exponent": 10, "logit_exponent": 12}
    assert pq.read_table(uri).num_rows == 10
    assert part_metadata(str(tmp_path / "absent.parquet")) is None
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    assert part_metadata(str(tmp_path / "junk.parquet")) is None  # unreadable parts are rewritten, not trusted


def test_write_part_leaves_no_temporary_files(tmp_path):
    write_store(str(tmp_path), [5, 7])
    assert sorted(p.name for p in (tmp_path / "ds" / "m" / "k1").iterdir()) == [
        "_manifest.json", "part-00000.parquet", "part-00001.parquet"]


def test_read_all_pixels_back_in_order(tmp_path):
    total = write_store(str(tmp_path), [300, 200, 250])
    pixels = read_pixels(str(tmp_path), "ds", "m")
    assert len(pixels) == total
    assert pixels.features.dtype == np.float32 and pixels.features.shape == (total, 6)
    np.testing.assert_array_equal(pixels.features[:, 0], np.arange(total))
    expected = np.concatenate([columns(300, seed=0)["labels"], columns(200, seed=1)["labels"],
                               columns(250, seed=2)["labels"]])
    np.testing.assert_array_equal(pixels.labels, expected)
    assert pixels.logits.shape == (total, 3)
    assert pixels.image_ids[0] == "img0000" and pixels.rows[101] == 1 and pixels.cols[101] == 1
    assert read_pixels(str(tmp_path), "ds", "m", with_logits=False).logits is None


def test_sampled_read_is_seeded_uniform_and_exact(tmp_path):
    total = write_store(str(tmp_path), [ROW_GROUP_ROWS + 500, 3 * ROW_GROUP_ROWS, 40], dtype="float16")
    first = read_pixels(str(tmp_path), "ds", "m", sample=1000, seed=3)
    again = read_pixels(str(tmp_path), "ds", "m", sample=1000, seed=3)
    other = read_pixels(str(tmp_path), "ds", "m", sample=1000, seed=4)
    assert len(first) == 1000
    np.testing.assert_array_equal(first.features, again.features)
    assert not np.array_equal(first.features, other.features)
    # every sampled row is the row written at that global index (the first feature holds it)
    index = np.sort(np.random.default_rng(3).choice(total, 1000, replace=False))
    np.testing.assert_array_equal(first.image_ids, np.array([f"img{i // 100:04d}" for i in index], dtype=object))
    np.testing.assert_array_equal(first.rows, index % 100)
    assert read_pixels(str(tmp_path), "ds", "m", sample=10 * total).features.shape == (total, 6)
    with pytest.raises(ValueError, match="sample must be a positive"):
        read_pixels(str(tmp_path), "ds", "m", sample=0)


def test_sampled_read_touches_only_the_row_groups_it_needs(tmp_path, monkeypatch):
    write_store(str(tmp_path), [4 * ROW_GROUP_ROWS])
    read_groups: list[list[int]] = []
    original = pq.ParquetFile.read_row_groups

    def spy(self, row_groups, *args, **kwargs):
        read_groups.append(list(row_groups))
        return original(self, row_groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    pixels = read_pixels(str(tmp_path), "ds", "m", sample=1, seed=0)
    assert len(pixels) == 1 and read_groups == [[int(pixels.features[0, 0]) // ROW_GROUP_ROWS]]


def _assert_same_pixels(got, expected):
    """A sample taken from ``read_samples`` against the same sample read directly: what scoring uses is identical,
    in float32; where each pixel came from is not carried (scoring never needs it)."""
    for field in ("features", "labels", "logits"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field), err_msg=field)
    assert got.features.dtype == np.float32 and (got.logits is None or got.logits.dtype == np.float32)
    assert got.image_ids is None and got.rows is None and got.cols is None


def test_samples_read_together_hold_the_stored_dtype_and_no_provenance(tmp_path):
    store = str(tmp_path)
    write_store(store, [2000, 1000], dtype="float16")
    together = read_samples(store, "ds", "m", [(500, 1), (500, 2)])
    assert together.pixels.features.dtype == np.float16 and together.pixels.image_ids is None
    rows = len(together.pixels)
    width = together.pixels.features.shape[1] + together.pixels.logits.shape[1]
    assert together.nbytes == rows * (2 * width + 8 + 2) + together.held.nbytes  # 2: the row's part exponents


def test_samples_read_together_are_those_read_one_by_one(tmp_path, monkeypatch):
    store = str(tmp_path)
    total = write_store(store, [ROW_GROUP_ROWS + 500, 3 * ROW_GROUP_ROWS, 40])
    samples = [(1000, seed) for seed in range(5)] + [(300, 99)]
    opened: list[str] = []
    original = pq.ParquetFile.__init__

    def spy(self, source, *args, **kwargs):
        opened.append(str(source))
        original(self, source, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", spy)
    together = read_samples(store, "ds", "m", samples)
    assert len(opened) == 3  # each part once, for six samples
    assert len(together.pixels) <= sum(size for size, _ in samples) and together.total == total
    for size, seed in samples:
        _assert_same_pixels(together.sample(size, seed), read_pixels(store, "ds", "m", sample=size, seed=seed))
    with pytest.raises(ValueError, match=r"sample \(size 1000, seed 7\) of .*ds/m/k1 was not among those read"):
        together.sample(1000, 7)
    with pytest.raises(ValueError, match=r"sample \(size 1000000, seed 0\)"):
        together.sample(10**6, 0)  # every row: not held
    assert read_samples(store, "ds", "m", samples, with_logits=False).sample(300, 99).logits is None


def test_samples_as_large_as_the_store_read_it_whole(tmp_path):
    store = str(tmp_path)
    total = write_store(store, [300, 200])
    together = read_samples(store, "ds", "m", [(100, 1), (10 * total, 2)])
    assert together.held is None and len(together.pixels) == total
    _assert_same_pixels(together.sample(100, 1), read_pixels(store, "ds", "m", sample=100, seed=1))
    _assert_same_pixels(together.sample(total, 5), read_pixels(store, "ds", "m"))
    with pytest.raises(StoreError, match="no complete pixel store for model 'm' on dataset 'other'"):
        read_samples(store, "other", "m", [(10, 0)])
    with pytest.raises(ValueError, match="at least one"):
        read_samples(store, "ds", "m", [])


def test_store_without_logits(tmp_path):
    write_store(str(tmp_path), [20], logits=False)
    assert read_pixels(str(tmp_path), "ds", "m").logits is None


def test_completion_is_the_manifest_in_the_keys_folder(tmp_path):
    store = str(tmp_path)
    assert complete_keys(store, "ds", "m") == [] and read_manifest(store, "ds", "m", "k1") is None
    write_part(part_uri(store, "ds", "m", "k1", 0), pixel_table(**columns(5), metadata={"key": "k1"}))
    assert complete_keys(store, "ds", "m") == []  # parts alone never read as complete
    with pytest.raises(StoreError, match=r"no complete pixel store for model 'm' on dataset 'ds' at .*ds/m"):
        read_pixels(store, "ds", "m")
    write_store(store, [5])
    assert complete_keys(store, "ds", "m") == ["k1"] and read_manifest(store, "ds", "m", "k1")["rows"] == 5
    assert len(read_pixels(store, "ds", "m")) == 5 == len(read_pixels(store, "ds", "m", key="k1"))
    with pytest.raises(StoreError, match="no complete pixel store .* for key k2"):
        read_pixels(store, "ds", "m", key="k2")


def test_stores_of_other_settings_live_side_by_side_and_are_never_mixed(tmp_path):
    store = str(tmp_path)
    write_store(store, [30], key="k1")
    write_store(store, [50], key="k2")
    assert complete_keys(store, "ds", "m") == ["k1", "k2"]
    assert len(read_pixels(store, "ds", "m", key="k1")) == 30 and len(read_pixels(store, "ds", "m", key="k2")) == 50
    with pytest.raises(StoreError, match=r"holds complete stores for 2 settings \(k1, k2\): pass key"):
        read_pixels(store, "ds", "m")
    # a part written for other settings in this key's folder (by a writer that ignored the layout) is refused
    os.replace(part_uri(store, "ds", "m", "k2", 0), part_uri(store, "ds", "m", "k1", 0))
    with pytest.raises(StoreError, match=r"cannot read part .*k1/part-00000\.parquet .*written for key 'k2', its "
                                         r"manifest is for 'k1'"):
        read_samples(store, "ds", "m", [(10, 0)], key="k1")


def test_s3_round_trip(s3_bucket):
    store = f"s3://{s3_bucket}/stores/run1"
    total = write_store(store, [120, 80], dtype="float16")
    assert complete_keys(store, "ds", "m") == ["k1"]
    metadata = part_metadata(part_uri(store, "ds", "m", "k1", 1))
    assert metadata == {"key": "k1", "rows": 80, "feature_exponent": 6, "logit_exponent": metadata["logit_exponent"]}
    pixels = read_pixels(store, "ds", "m", sample=50, seed=1)
    assert len(pixels) == 50 and pixels.features.shape == (50, 6)
    np.testing.assert_array_equal(read_pixels(store, "ds", "m").features[:, 0], np.arange(total))


def test_a_corrupt_or_misplaced_manifest_is_an_error_naming_the_file(tmp_path):
    uri = manifest_uri(str(tmp_path), "alpha", "unet", "k1")
    os.makedirs(os.path.dirname(uri))
    with open(uri, "w") as handle:
        handle.write("{not json")
    with pytest.raises(StoreError, match="k1/_manifest.json: not a valid manifest"):
        read_manifest(str(tmp_path), "alpha", "unet", "k1")
    with open(uri, "w") as handle:
        handle.write('{"key": "k9"}')
    with pytest.raises(StoreError, match="a manifest for key 'k9' in the folder of key 'k1'"):
        read_manifest(str(tmp_path), "alpha", "unet", "k1")


def test_a_truncated_part_is_an_error_naming_the_part_and_the_store(tmp_path):
    store = str(tmp_path)
    write_store(store, [300, 200], dataset="ds")
    part = sorted((tmp_path / "ds" / "m" / "k1").glob("part-*.parquet"))[1]
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(StoreError, match=r"pixel store .*ds/m/k1: cannot read part .*part-00001\.parquet ") as caught:
        read_pixels(store, "ds", "m")
    assert caught.value.damaged == str(tmp_path / "ds" / "m" / "k1")  # a run sets it aside and extracts it again
    with pytest.raises(StoreError, match="part-00001.parquet"):
        read_samples(store, "ds", "m", [(100, 1)])


def test_a_sample_can_leave_the_logits_behind(tmp_path):
    store = str(tmp_path)
    write_store(store, [300, 200])
    loaded = read_samples(store, "ds", "m", [(100, 1), (500, 2)], with_logits=True)
    assert loaded.sample(100, 1).logits is not None and loaded.sample(100, 1, with_logits=False).logits is None
    whole = loaded.sample(500, 2, with_logits=False)
    assert whole.logits is None and len(whole.features) == 500


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e6])
def test_float16_parts_keep_features_of_any_magnitude(tmp_path, scale):
    """Each float16 part is stored times a power of two: values of any scale keep float16's relative precision (no
    underflow to zero at 1e-8, no overflow at 1e6), and read back in the model's own units."""
    data = columns(400, seed=3)
    data["features"] = data["features"][:, 1:] * np.float32(scale)  # normal values, no exact integers
    data["logits"] = data["logits"] * np.float32(scale)
    table = pixel_table(**data, metadata={"key": "k"}, feature_dtype="float16")
    write_part(part_uri(str(tmp_path), "ds", "m", "k", 0), table)
    write_manifest(str(tmp_path), "ds", "m", {"key": "k", "feature_dim": 5, "logit_dim": 3, "rows": 400,
                                              "images": 4, "parts": [{"file": "part-00000.parquet", "rows": 400}]})
    pixels = read_pixels(str(tmp_path), "ds", "m")
    for stored, written in ((pixels.features, data["features"]), (pixels.logits, data["logits"])):
        assert stored.dtype == np.float32 and np.count_nonzero(stored) == stored.size
        np.testing.assert_allclose(stored, written, rtol=2**-10, atol=float(np.abs(written).max()) * 2**-24)
    sampled = read_samples(str(tmp_path), "ds", "m", [(100, 5)]).sample(100, 5)
    np.testing.assert_array_equal(sampled.features, read_pixels(str(tmp_path), "ds", "m", sample=100, seed=5).features)


@pytest.mark.parametrize("damage, problem", [
    (lambda manifest: manifest.pop("rows"), r"not a valid manifest \(missing or malformed: rows\)"),
    (lambda manifest: manifest["parts"][0].pop("rows"), r"not a valid manifest \(missing or malformed: parts\[\]\.file/rows\)"),
    (lambda manifest: manifest.update(rows=1), r"its parts count 12 rows, it says 1"),
])
def test_a_manifest_missing_a_field_is_an_error_naming_the_file_and_the_field(tmp_path, damage, problem):
    write_store(str(tmp_path), [5, 7])
    uri = manifest_uri(str(tmp_path), "ds", "m", "k1")
    manifest = json.loads(open(uri).read())
    damage(manifest)
    open(uri, "w").write(json.dumps(manifest))
    with pytest.raises(StoreError, match=re.escape(uri) + ": " + problem) as caught:
        read_manifest(str(tmp_path), "ds", "m", "k1")
    assert caught.value.damaged == os.path.dirname(uri)


def test_a_manifest_is_written_only_over_parts_that_are_in_place(tmp_path):
    write_store(str(tmp_path), [5, 7])
    uri = manifest_uri(str(tmp_path), "ds", "m", "k1")
    manifest = json.loads(open(uri).read())
    os.remove(uri)
    os.remove(part_uri(str(tmp_path), "ds", "m", "k1", 1))
    with pytest.raises(StoreError, match=r"not marked complete: part part-00001.parquet is missing"):
        write_manifest(str(tmp_path), "ds", "m", manifest)
    assert not os.path.exists(uri) and complete_keys(str(tmp_path), "ds", "m") == []
    wrong = {**manifest, "parts": [{**manifest["parts"][0], "rows": 6}], "rows": 6}
    with pytest.raises(StoreError, match=r"part part-00000.parquet holds 5 rows, the manifest counts 6"):
        write_manifest(str(tmp_path), "ds", "m", wrong)


def test_a_damaged_store_set_aside_is_incomplete_and_says_why(tmp_path):
    write_store(str(tmp_path), [5, 7])
    where = os.path.dirname(manifest_uri(str(tmp_path), "ds", "m", "k1"))
    assert missing_parts(where, read_manifest(str(tmp_path), "ds", "m", "k1")) == []
    os.remove(part_uri(str(tmp_path), "ds", "m", "k1", 0))
    assert missing_parts(where, read_manifest(str(tmp_path), "ds", "m", "k1")) == ["part-00000.parquet"]
    set_aside(where, "part part-00000.parquet is missing")
    assert complete_keys(str(tmp_path), "ds", "m") == [] and read_manifest(str(tmp_path), "ds", "m", "k1") is None
    record = json.loads(open(os.path.join(where, "_damaged.json")).read())
    assert record["reason"] == "part part-00000.parquet is missing" and '"rows": 12' in record["manifest"]
