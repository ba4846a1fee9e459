"""What determines a model's features besides its spec: the content of its files and the source of its code.

A rerun may reuse a model's stores and score only if these are unchanged, so they enter the extraction key and the
result's fingerprint. Files are identified by content (SHA-256 locally, the ETag on S3), not by name or
modification time: a checkpoint retrained at the same path is noticed, a file merely copied or touched is not. Which
files and what code identify a model is its family's to say (``Family.files``, ``Family.code_identity``): the
built-in architectures' source, a Python entrypoint's package (its sources when it is the user's code, its
distribution and version when it is an installed library), a native family's libraries (``name==version``) and
adapter. A Hugging Face folder is identified by every file in it, a Hub model by the commit its revision points at.
"""

from __future__ import annotations

import hashlib
from typing import Any

from otce_ray import fs
from otce_ray.models.families import FAMILIES
from otce_ray.models.families.huggingface import HUB, hub_commit
from otce_ray.models.errors import ModelError
from otce_ray.models.spec import ModelSpec

CHUNK = 8 << 20


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """``{"files": {uri: content digest}, "code": what identifies its code}``; ModelError naming a file or module
    that cannot be found or reached."""
    family = FAMILIES[spec.format]
    files = {}
    for uri, what in family.files(spec):
        try:
            files[uri] = hub_digest(uri) if uri.startswith(HUB) else file_digest(uri)
        except FileNotFoundError:
            raise ModelError(spec.name, f"{what} not found: {uri}") from None
        except OSError as error:
            raise ModelError(spec.name, f"cannot reach {uri}: {error}") from error
    return {"files": files, "code": family.code_identity(spec)}


def hub_digest(uri: str) -> str:
    """The commit a Hub model's revision points at (asked of the Hub: OSError where it cannot be reached)."""
    try:
        return "hub:" + hub_commit(uri)
    except ImportError as error:
        raise OSError(f"huggingface_hub is not installed: {error}") from error
    except Exception as error:  # the Hub client's errors (offline, unknown repo) have no common base but Exception
        raise OSError(f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
                      ) from error


def file_digest(uri: str) -> str:
    """The content digest of a local file (SHA-256) or an S3 object (its ETag)."""
    if fs.is_s3(uri):
        return "etag:" + fs.s3_etag(uri)
    digest = hashlib.sha256()  # read every time: a cache keyed by size and mtime would miss a retrained file
    with open(fs.resolve(uri)[1], "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()
