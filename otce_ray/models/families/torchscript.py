"""TorchScript: a scripted or traced module, loaded onto its device. The file holds the code as well as the weights,
so its content digest identifies both."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from otce_ray.models.errors import ModelError
from otce_ray.models.families.family import BuildContext, Family, first_line, read_file
from otce_ray.schema import Fields, Location, Setting

if TYPE_CHECKING:
    from otce_ray.models.spec import ModelSpec

WHAT = "TorchScript file"


def _build(spec: ModelSpec, context: BuildContext) -> nn.Module:
    data = read_file(spec, WHAT, spec.path)
    try:
        with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript; it is still a supported zoo format
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(data, map_location=context.device)
    except Exception as error:
        raise ModelError(spec.name, f"{spec.path} is not a loadable TorchScript file: {first_line(error)}") from error


def _files(spec: ModelSpec) -> list[tuple[str, str]]:
    return [(spec.path, WHAT)]


TORCHSCRIPT = Family(
    "torchscript", Fields({"path": Setting(Location("file"), doc="a scripted or traced module")}), _build, files=_files,
)
