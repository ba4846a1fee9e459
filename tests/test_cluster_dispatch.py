"""The dispatch loop and the per-node file cache, on the session's local Ray and a loopback S3."""

from __future__ import annotations

import logging
import os
import time

import boto3
import pytest

from otce_ray import fs
from otce_ray.cluster import Cluster, Tasks, TaskTimeout, drive


def _remote(ray):
    """Task bodies defined here, not at module level, so Ray ships them by value (workers cannot import tests)."""

    def sleep(seconds: float, value: int) -> int:
        time.sleep(seconds)
        return value

    def fail(message: str) -> None:
        raise ValueError(message)

    return ray.remote(sleep), ray.remote(fail)


def test_tasks_respect_their_cap_and_every_call_ends_in_done_or_failed(ray_local):
    remote_sleep, remote_fail = _remote(ray_local)
    running, peak, done, failed = [0], [0], {}, {}

    def submit(index: int):
        def call():
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            return remote_fail.remote("no") if index == 3 else remote_sleep.remote(0.05, index)
        return call

    def on_done(key, value):
        running[0] -= 1
        done[key] = value

    def on_failed(key, error):
        running[0] -= 1
        failed[key] = error

    items = [(index, submit(index), f"task {index}") for index in range(8)]
    stats = drive([Tasks("test", items, lambda: 2, on_done, on_failed)], poll_seconds=0.05)
    assert peak[0] == 2 and stats.peak_in_flight == 2
    assert done == {index: index for index in range(8) if index != 3}
    assert list(failed) == [3] and "no" in str(failed[3])
    assert stats.calls["test"] == 8 and stats.failures["test"] == 1 and stats.stuck == []


def test_a_call_past_its_time_limit_is_cancelled_and_failed_while_the_others_finish(ray_local, caplog):
    remote_sleep, _ = _remote(ray_local)
    done, failed = {}, {}
    items = [("hung", lambda: remote_sleep.remote(600, 7), "the hung task"),
             ("quick", lambda: remote_sleep.remote(0.1, 8), "the quick task")]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="otce_ray"):
        stats = drive([Tasks("test", items, lambda: 2, done.__setitem__, failed.__setitem__)], stuck_seconds=2.0,
                      poll_seconds=0.1)
    assert time.monotonic() - started < 30  # not 600 s: the hung call was cancelled
    assert done == {"quick": 8} and list(failed) == ["hung"] and isinstance(failed["hung"], TaskTimeout)
    assert str(failed["hung"]) == "the hung task: no result after 2 s (cluster.stuck_task_seconds): cancelled"
    assert stats.stuck == [str(failed["hung"])] and stats.failures["test"] == 1 and "the hung task" in caplog.text


def test_the_cluster_view_defaults_every_missing_resource(ray_local):
    view = Cluster().view
    assert view.total("GPU") == 0.0 and view.largest("GPU") == 0.0  # no "GPU" key on this cluster at all
    assert view.total("CPU") == 2.0 and view.slots({"CPU": 1.0, "GPU": 1.0}) == 0
    Cluster().request([{"CPU": 1.0, "GPU": 1.0}])  # no autoscaler here: a harmless hint


def test_an_s3_file_is_fetched_once_per_node_and_again_when_it_changes(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(fs.CACHE_DIR_ENV, str(tmp_path / "cache"))
    s3 = boto3.client("s3")
    uri = f"s3://{s3_bucket}/zoo/model.pt"
    s3.put_object(Bucket=s3_bucket, Key="zoo/model.pt", Body=b"weights v1")
    fetched = []
    original = fs._download
    monkeypatch.setattr(fs, "_download", lambda *args: fetched.append(args[1]) or original(*args))

    first = fs.local_copy(uri)
    assert open(first, "rb").read() == b"weights v1" and fs.local_copy(uri) == first and len(fetched) == 1
    time.sleep(1.1)  # S3 modification times have one-second resolution
    s3.put_object(Bucket=s3_bucket, Key="zoo/model.pt", Body=b"weights v2!")
    second = fs.local_copy(uri)
    assert second != first and open(second, "rb").read() == b"weights v2!" and len(fetched) == 2
    local = tmp_path / "local.pt"
    local.write_bytes(b"x")
    assert fs.local_copy(str(local)) == str(local)  # local files are read where they are
    with pytest.raises(FileNotFoundError, match="model-gone.pt"):
        fs.local_copy(f"s3://{s3_bucket}/zoo/model-gone.pt")


def test_least_recently_used_copies_are_evicted_beyond_the_budget(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(fs.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(fs.CACHE_BYTES_ENV, "250")
    s3 = boto3.client("s3")
    paths = []
    for name in ("a", "b", "c"):
        s3.put_object(Bucket=s3_bucket, Key=f"{name}.pt", Body=bytes(100))
        paths.append(fs.local_copy(f"s3://{s3_bucket}/{name}.pt"))
        time.sleep(0.01)
    assert [p.endswith(n) for p, n in zip(paths, ("a.pt", "b.pt", "c.pt"))] == [True] * 3
    assert [os.path.exists(path) for path in paths] == [False, True, True]


def test_the_s3_region_is_the_configured_one_or_the_buckets_own(monkeypatch):
    asked = []
    monkeypatch.setattr(fs.pafs, "resolve_s3_region", lambda bucket: asked.append(bucket) or "eu-central-1")
    fs.bucket_region.cache_clear()
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert fs.resolve("s3://eu-data/x/y.png")[0].region == "eu-central-1" and asked == ["eu-data"]
    fs.resolve("s3://eu-data/z.png")
    assert asked == ["eu-data"]  # once per bucket
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert fs.resolve("s3://other/x")[0].region == "us-west-2" and asked == ["eu-data"]
    fs.bucket_region.cache_clear()
