"""What determines a model's features besides its spec: the content of its files and the source of its code.

A rerun may reuse a model's stores and score only if these are unchanged, so they enter the extraction key and the
result's fingerprint. Files are identified by content (SHA-256 locally, the ETag on S3), not by name or
modification time: a checkpoint retrained at the same path is noticed, a file merely copied or touched is not. Code
is identified by its source: the built-in architectures' module, or a Python entrypoint's package (its sources
when it is the user's code, its distribution and version when it is an installed library).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
from typing import Any

from otce_ray import fs
from otce_ray.models.spec import ModelError, ModelSpec

CHUNK = 8 << 20


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """``{"files": {uri: content digest}, "code": what identifies its code}``; ModelError naming a file or module
    that cannot be found or reached."""
    files = {}
    for field in ("path", "checkpoint"):
        uri = getattr(spec, field)
        if not uri:
            continue
        what = "checkpoint" if field == "checkpoint" else "TorchScript file"
        try:
            files[uri] = file_digest(uri)
        except FileNotFoundError:
            raise ModelError(spec.name, f"{what} not found: {uri}") from None
        except OSError as error:
            raise ModelError(spec.name, f"cannot reach {uri}: {error}") from error
    return {"files": files, "code": code_identity(spec)}


def file_digest(uri: str) -> str:
    """The content digest of a local file (SHA-256) or an S3 object (its ETag)."""
    if fs.is_s3(uri):
        return "etag:" + fs.s3_etag(uri)
    digest = hashlib.sha256()  # read every time: a cache keyed by size and mtime would miss a retrained file
    with open(fs.resolve(uri)[1], "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def code_identity(spec: ModelSpec) -> str | None:
    if spec.format == "builtin":
        from otce_ray.models import architectures

        return "sha256:" + hashlib.sha256(inspect.getsource(architectures).encode()).hexdigest()
    if spec.format == "python":
        return module_identity(spec.entrypoint.partition(":")[0], spec.name)
    return None  # a TorchScript file holds its code: its digest covers it


def module_identity(module: str, model: str) -> str:
    """An installed library's ``name==version``, or the SHA-256 of the sources of the user's package."""
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None and not found.submodule_search_locations:
        raise ModelError(model, f"entrypoint module {module!r} does not import on the driver (its code is "
                                "fingerprinted there, so a changed module is never mistaken for the old one)")
    distributions = importlib.metadata.packages_distributions().get(top)
    if distributions and _installed(found):
        name = distributions[0]
        return f"{name}=={importlib.metadata.version(name)}"
    return "sha256:" + _sources_digest(tuple(found.submodule_search_locations or ()) or (found.origin,))


def _installed(spec: Any) -> bool:
    """Whether a module lives in site-packages (a library) rather than the user's working tree."""
    locations = list(spec.submodule_search_locations or ()) or [spec.origin]
    return all("site-packages" in str(location) or "dist-packages" in str(location) for location in locations)


def _sources_digest(locations: tuple[str, ...]) -> str:
    """The SHA-256 of every .py file of a module or package, in a stable order."""
    digest = hashlib.sha256()
    for location in locations:
        paths = [location] if os.path.isfile(location) else sorted(
            os.path.join(folder, name) for folder, _, names in os.walk(location) for name in names
            if name.endswith(".py"))
        for path in paths:
            digest.update(os.path.relpath(path, os.path.dirname(location)).encode() + b"\0")
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()
