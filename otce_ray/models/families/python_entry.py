"""Python entrypoints: ``package.module:function``, called with the spec's ``kwargs``, for any network a user's code
builds.

Importing a module runs its code, so the config's allow-list of module prefixes (``entrypoint_problem``) is checked on
the driver when the config is read and again here, on the worker, before anything is imported. The code is
identified by the module's package: the SHA-256 of its sources when it is the user's code, ``name==version`` when it
is an installed library.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
from typing import TYPE_CHECKING, Any, Sequence

from torch import nn

from otce_ray.models.errors import ModelError
from otce_ray.models.families.family import WEIGHTS, BuildContext, Family, call_factory
from otce_ray.schema import Fields, Pattern, Setting, Text

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec

_MODULE = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
ENTRYPOINT = Pattern(_MODULE + r":[A-Za-z_]\w*", "'package.module:function'")
MODULE = Pattern(_MODULE, "a dotted module name such as 'mycompany.models'")


def entrypoint_problem(entrypoint: str, allowed: Sequence[str] | None) -> str | None:
    """Why a Python entrypoint is outside the allow-list of module prefixes (None: no restriction), or None.

    A module is allowed when it is one of the prefixes or inside one (``a.b`` allows ``a.b`` and ``a.b.c``, not
    ``a.bc``). The driver checks this when it reads the config; workers check it again before importing anything.
    """
    if allowed is None:
        return None
    module = entrypoint.split(":", 1)[0]
    if any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
        return None
    return f"module {module!r} is not under allowed_entrypoints ({', '.join(allowed) or 'none allowed'})"


def _build(spec: ModelSpec, context: BuildContext) -> nn.Module:
    refused = entrypoint_problem(spec.entrypoint, context.allowed_entrypoints)
    if refused:
        raise ModelError(spec.name, f"entrypoint {spec.entrypoint!r} refused: {refused}")
    module_name, _, attribute = spec.entrypoint.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except Exception as error:
        raise ModelError(
            spec.name, f"entrypoint {spec.entrypoint!r} does not import: {type(error).__name__}: {error}"
        ) from error
    return call_factory(spec, f"entrypoint {spec.entrypoint!r}", lambda: factory(**spec.kwargs))


def _code_identity(spec: ModelSpec) -> str:
    return module_identity(spec.entrypoint.partition(":")[0], spec.name)


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


PYTHON = Family(
    "python",
    Fields({
        "entrypoint": Setting(ENTRYPOINT, doc="a function returning the nn.Module, called with kwargs"),
        "feature_layer": Setting(Text(), None, "the module whose output is the feature map (a forward hook)"),
        **WEIGHTS,
    }),
    _build,
    _code_identity,
)
