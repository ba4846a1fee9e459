"""One place that turns a location string (local path or ``s3://bucket/prefix``) into a pyarrow filesystem.

Every reader and writer in otce-ray goes through here so that S3 settings (endpoint, region) are resolved once and
identically on the driver and on Ray workers. ``AWS_ENDPOINT_URL`` (honoured by boto3 too) points both at a
non-AWS endpoint such as MinIO or a moto server; on AWS, the region is the configured one or the bucket's own.
Remote model files are copied to each node once (``local_copy``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import tempfile
import time
from functools import lru_cache
from urllib.parse import urlparse

import pyarrow.fs as pafs


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Join path components of a local path or an S3 URI with '/'."""
    if is_s3(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


@lru_cache(maxsize=None)
def _s3_filesystem(endpoint: str | None, region: str) -> pafs.S3FileSystem:
    kwargs: dict = {"region": region}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
        kwargs["force_virtual_addressing"] = False
    return pafs.S3FileSystem(**kwargs)


@lru_cache(maxsize=None)
def bucket_region(bucket: str) -> str:
    """The AWS region a bucket lives in, asked of S3 once per bucket and process."""
    try:
        return pafs.resolve_s3_region(bucket)
    except OSError as error:
        raise OSError(f"cannot find the region of S3 bucket {bucket!r} ({error}); set AWS_REGION to the bucket's "
                      "region") from error


def s3_filesystem(bucket: str) -> pafs.S3FileSystem:
    """The S3 filesystem for ``bucket``, configured from the environment.

    ``AWS_ENDPOINT_URL`` points at another endpoint (MinIO, a moto server), which takes any region. On AWS itself the
    region is ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` when set, else the bucket's own (never a silent us-east-1:
    requests to the wrong region fail, or cross regions at a cost).
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region is None:
        region = "us-east-1" if endpoint else bucket_region(bucket)
    return _s3_filesystem(endpoint, region)


def dot_segment(uri: str) -> str | None:
    """Why an S3 URI must be refused: a ``.`` or ``..`` segment, which S3 keys keep literally (a listing never finds
    what such a write stored, and a client that normalises it reads or writes outside the prefix), or None."""
    segments = uri[len("s3://"):].split("/")
    if any(segment in (".", "..") for segment in segments):
        return f"S3 URI {uri!r} has a '.' or '..' segment; S3 keys are not paths: give the prefix as it is meant"
    return None


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a local path or ``s3://bucket/key`` URI.

    The returned path is what the filesystem expects: ``bucket/key`` for S3, an absolute path locally. An S3 URI
    with a ``.`` or ``..`` segment is a ValueError (``dot_segment``).
    """
    uri = str(uri)
    if is_s3(uri):
        refused = dot_segment(uri)
        if refused:
            raise ValueError(refused)
        path = uri[len("s3://"):].rstrip("/")
        return s3_filesystem(path.split("/", 1)[0]), path
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


READ_ATTEMPTS = 5  # an S3 read that fails for another reason than a missing object is tried this often
READ_BACKOFF_SECONDS = 0.5  # before the second attempt; doubled before each next one


class TransientReadError(OSError):
    """A read that kept failing (throttling, a dropped connection): not a broken file, so never skipped as one."""


def read_bytes(uri: str) -> bytes:
    """The whole file. An S3 read that fails with anything but a missing object is retried with backoff (pyarrow's
    own retries included, throttling can outlast them); if it still fails it raises ``TransientReadError``."""
    filesystem, path = resolve(uri)
    failure: OSError | None = None
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            time.sleep(READ_BACKOFF_SECONDS * 2 ** (attempt - 1))
        try:
            with filesystem.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as error:
            if not is_s3(uri):
                raise
            failure = error
    raise TransientReadError(f"cannot read {uri} after {READ_ATTEMPTS} attempts: {failure}") from failure


def exists(uri: str) -> bool:
    filesystem, path = resolve(uri)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write a whole object so that readers never see a partial file.

    S3 PUTs are atomic by nature; locally we write a sibling temporary file and rename it into place.
    """
    filesystem, path = resolve(uri)
    parent = posixpath.dirname(path) if is_s3(uri) else os.path.dirname(path)
    if is_s3(uri):
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)
        return
    filesystem.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def delete(uri: str) -> None:
    """Remove one file (local or S3); a file already gone is fine."""
    filesystem, path = resolve(uri)
    try:
        filesystem.delete_file(path)
    except FileNotFoundError:
        pass


def list_stamped(uri: str) -> dict[str, tuple[int, int]]:
    """Every file below a directory, recursively, by '/'-separated path relative to it: (size, modification time in
    ns). On S3 this is the LIST a listing costs anyway; the stamps let a run notice files rewritten or added since.

    Raises FileNotFoundError when the directory does not exist (on S3: when no object has that prefix), so a
    mistyped root is reported instead of looking like an empty dataset.
    """
    filesystem, path = resolve(uri)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    infos = filesystem.get_file_info(selector)
    if not infos and filesystem.get_file_info(path).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such directory: {uri}")
    prefix = path.rstrip("/") + "/"
    return {info.path[len(prefix):]: (info.size, info.mtime_ns or 0) for info in infos
            if info.type == pafs.FileType.File}


def list_files(uri: str) -> list[str]:
    """The sorted relative paths of ``list_stamped``."""
    return sorted(list_stamped(uri))


def s3_etag(uri: str) -> str:
    """The ETag of an S3 object (a hash of its content, from a HEAD request); FileNotFoundError when it is absent."""
    import boto3
    import botocore.exceptions

    bucket, _, key = uri[len("s3://"):].partition("/")
    region = s3_filesystem(bucket).region
    try:
        return boto3.client("s3", region_name=region).head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"no such file: {uri}") from None
        raise OSError(f"cannot reach {uri}: {error}") from error
    except botocore.exceptions.BotoCoreError as error:
        raise OSError(f"cannot reach {uri}: {error}") from error


CACHE_DIR_ENV = "OTCE_RAY_CACHE_DIR"  # where a node keeps its copies of remote files (default: the temp dir)
CACHE_BYTES_ENV = "OTCE_RAY_CACHE_BYTES"  # how much it may keep before evicting the least recently used
DEFAULT_CACHE_BYTES = 20 * 2**30


def local_copy(uri: str) -> str:
    """A path on this machine holding the file at ``uri``: local paths as they are, S3 objects fetched once per node.

    Copies are keyed by the object's URI, size and modification time, so a file replaced at the same URI is fetched
    again, and a lock file makes the Ray workers of one node wait for one download instead of each fetching it (a
    240 MB checkpoint per shard adds up fast). Least recently used copies are evicted beyond ``OTCE_RAY_CACHE_BYTES``.
    Raises FileNotFoundError when the object does not exist.
    """
    if not is_s3(uri):
        return resolve(uri)[1]
    filesystem, path = resolve(uri)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"no such file: {uri}")
    key = hashlib.sha256(f"{uri}\0{info.size}\0{info.mtime_ns}".encode()).hexdigest()[:32]
    folder = os.environ.get(CACHE_DIR_ENV) or os.path.join(tempfile.gettempdir(), "otce-ray-cache")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, f"{key}-{posixpath.basename(path)}")
    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(target):
            _download(filesystem, path, target)
            _evict(folder, keep=target)
        os.utime(target)  # marks it recently used
    return target


def _download(filesystem: pafs.FileSystem, path: str, target: str) -> None:
    tmp = f"{target}.tmp-{os.getpid()}"
    with filesystem.open_input_stream(path) as source, open(tmp, "wb") as sink:
        while chunk := source.read(8 << 20):
            sink.write(chunk)
    os.replace(tmp, target)


def _evict(folder: str, keep: str) -> None:
    """Delete the least recently used copies until the folder fits its budget (the newest copy always stays)."""
    budget = int(os.environ.get(CACHE_BYTES_ENV) or DEFAULT_CACHE_BYTES)
    copies = [os.path.join(folder, name) for name in os.listdir(folder)
              if not name.endswith(".lock") and ".tmp-" not in name]
    stats = {path: os.stat(path) for path in copies if os.path.isfile(path)}
    total = sum(stat.st_size for stat in stats.values())
    for path in sorted(stats, key=lambda p: stats[p].st_mtime):
        if total <= budget:
            break
        if path != keep:
            os.remove(path)  # a reader that has it open keeps reading it
            total -= stats[path].st_size
