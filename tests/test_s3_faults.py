"""S3 that misbehaves: throttled reads are retried, and a read that keeps failing fails its model instead of being
skipped like a broken file. A proxy in front of the moto server answers 503 SlowDown to the GETs it is told to."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import boto3
import pytest
from test_extraction_nets import write_folder_dataset

from otce_ray import fs
from otce_ray.datasets import open_dataset
from otce_ray.extraction import ExtractionRequest, run_shard
from otce_ray.models import ModelSpec

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request '
             b"rate.</Message></Error>")


class FlakyProxy(ThreadingHTTPServer):
    """Forwards every request to ``upstream``; a GET whose path holds a key of ``failures`` gets a 503 while that
    key's count lasts (-1: forever)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urlparse(upstream).netloc
        self.failures: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def should_fail(self, method: str, path: str) -> bool:
        with self.lock:
            for pattern, left in self.failures.items():
                if method == "GET" and pattern in path and left != 0:
                    self.failures[pattern] = left - 1 if left > 0 else left
                    self.failed[pattern] = self.failed.get(pattern, 0) + 1
                    return True
        return False


class _Forward(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        server: FlakyProxy = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if server.should_fail(self.command, self.path):
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOW_DOWN)))
            self.end_headers()
            self.wfile.write(SLOW_DOWN)
            return
        connection = http.client.HTTPConnection(server.upstream)
        connection.request(self.command, self.path, body=body or None, headers=dict(self.headers))
        reply = connection.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        # a HEAD's answer has no body but says how long the object is
        self.send_header("Content-Length", reply.getheader("Content-Length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward


@pytest.fixture
def flaky(s3_endpoint, s3_bucket, tmp_path, monkeypatch):
    """A folder dataset of 4 images in the bucket, read through the proxy; backoff cut to keep the test quick."""
    local = write_folder_dataset(str(tmp_path / "ds"), count=4, size=(24, 32))
    s3 = boto3.client("s3")
    for folder in ("images", "masks"):
        for path in sorted((tmp_path / "ds" / folder).iterdir()):
            s3.upload_file(str(path), s3_bucket, f"ds/{folder}/{path.name}")
    proxy = FlakyProxy(s3_endpoint)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setattr(fs, "READ_BACKOFF_SECONDS", 0.01)
    try:
        yield proxy, {**local, "root": f"s3://{s3_bucket}/ds", "on_error": "skip"}
    finally:
        proxy.shutdown()


def test_a_throttled_read_is_retried_until_it_succeeds(flaky):
    proxy, spec = flaky
    dataset = open_dataset(spec)
    proxy.failures["images/img001.png"] = 6  # more than pyarrow's own retries
    items = list(dataset)
    assert [item.image_id for item in items] == ["img000", "img001", "img002", "img003"]
    assert dataset.skipped == [] and proxy.failed["images/img001.png"] == 6


def test_a_read_that_keeps_failing_fails_the_model_instead_of_shrinking_the_dataset(flaky, tmp_path):
    proxy, spec = flaky
    dataset = open_dataset(spec)
    proxy.failures["masks/img002.png"] = -1
    with pytest.raises(fs.TransientReadError, match=r"cannot read s3://.*masks/img002\.png after 5 attempts"):
        list(dataset)
    assert dataset.skipped == []  # on_error: skip is for broken files, not for a flaky store
    request = ExtractionRequest(model=ModelSpec.from_dict({"name": "u", "format": "builtin", "architecture": "unet"}),
                                dataset="ds", dataset_fingerprint="fp", store=str(tmp_path / "store"),
                                pixels_per_image=10, seed=0, num_shards=1)
    result = run_shard(request, 0, open_dataset(spec), batch_size=2)
    assert result.status == "failed"
    assert "TransientReadError" in result.error and "masks/img002.png after 5 attempts" in result.error
