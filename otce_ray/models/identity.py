"""What determines a model's features besides its spec: the content of its files and the source of its code.

A rerun may reuse a model's stores and score only if these are unchanged, so they enter the extraction key and the
result's fingerprint. Files are identified by content (SHA-256 locally, the ETag on S3), not by name or
modification time: a checkpoint retrained at the same path is noticed, a file merely copied or touched is not. Code
is identified by its source: the built-in architectures' module, a Python entrypoint's package (its sources
when it is the user's code, its distribution and version when it is an installed library), or a native family's
libraries (``name==version``). A Hugging Face folder is identified by every file in it, a Hub model by the commit
its revision points at.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
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
    files = {}
    for uri, what in _model_files(spec):
        try:
            files[uri] = hub_digest(uri) if uri.startswith(HUB) else file_digest(uri)
        except FileNotFoundError:
            raise ModelError(spec.name, f"{what} not found: {uri}") from None
        except OSError as error:
            raise ModelError(spec.name, f"cannot reach {uri}: {error}") from error
    return {"files": files, "code": code_identity(spec)}


def _model_files(spec: ModelSpec) -> list[tuple[str, str]]:
    """(uri, what it is) of every file the model is read from."""
    if spec.format == "huggingface" and not spec.path.startswith(HUB):
        try:
            names = fs.list_files(spec.path)
        except FileNotFoundError:
            raise ModelError(spec.name, f"save_pretrained folder not found: {spec.path}") from None
        except OSError as error:
            raise ModelError(spec.name, f"cannot reach {spec.path}: {error}") from error
        return [(fs.join(spec.path, name), "file of the save_pretrained folder") for name in names]
    what = {"path": "TorchScript file" if spec.format == "torchscript" else "Hub model", "checkpoint": "checkpoint"}
    return [(getattr(spec, field), what[field]) for field in ("path", "checkpoint") if getattr(spec, field)]


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


def code_identity(spec: ModelSpec) -> str | None:
    if spec.format == "builtin":
        from otce_ray.models import architectures

        return "sha256:" + hashlib.sha256(inspect.getsource(architectures).encode()).hexdigest()
    if spec.format == "python":
        return module_identity(spec.entrypoint.partition(":")[0], spec.name)
    if spec.format in FAMILIES:
        return FAMILIES[spec.format].code_identity(spec.name)
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
