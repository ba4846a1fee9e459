"""The built-in architectures (``models.architectures``): the demo zoo's tiny nets, randomly initialised from
``init_seed`` unless a checkpoint is given. Their code is the architectures module, identified by its source."""

from __future__ import annotations

import hashlib
import inspect
from typing import TYPE_CHECKING

from torch import nn

from otce_ray.models import architectures
from otce_ray.models.families.family import INIT_SEED, NUM_CLASSES, WEIGHTS, BuildContext, Family, call_factory, seeded
from otce_ray.schema import Fields, Options, Setting

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec


def _build(spec: ModelSpec, context: BuildContext) -> nn.Module:
    with seeded(spec.init_seed):  # untrained built-ins are reproducible across workers
        return call_factory(
            spec,
            f"architecture {spec.architecture!r}",
            lambda: architectures.build_architecture(spec.architecture, num_classes=spec.num_classes, **spec.kwargs),
        )


def _code_identity(spec: ModelSpec) -> str:
    return "sha256:" + hashlib.sha256(inspect.getsource(architectures).encode()).hexdigest()


BUILTIN = Family(
    "builtin",
    Fields({
        "architecture": Setting(Options(tuple(architectures.ARCHITECTURES)), doc="a built-in network"),
        "num_classes": NUM_CLASSES,
        "init_seed": INIT_SEED,
        **WEIGHTS,
    }),
    _build,
    _code_identity,
)
