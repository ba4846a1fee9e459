"""Shared fixtures: a local Ray instance and a real S3 endpoint (moto server on loopback).

Ray and moto are started once per session and stopped at the end; tests that need neither never start them.
"""

from __future__ import annotations

import os
import uuid

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# POT would otherwise import JAX (if installed) and let it grab accelerator memory.
os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1, exported through AWS_* variables so boto3, pyarrow and Ray workers reach it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_VARS}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket for one test; yields its name."""
    import boto3

    name = f"otce-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def ray_local(s3_endpoint):
    """A small local Ray instance shared by the tests that need one; started after the S3 endpoint so that its
    workers inherit the AWS_* variables that point at it."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=96 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
