"""Every model format as one ``Family`` (``family.Family``), in one registry: ``FAMILIES``. A family declares its own
spec keys (``models.spec.MODEL`` is derived from them) and says how its network is built, which files and code
identify it, which layer gives its features by default and which checkpoint entries it takes.

A new format is one module declaring its ``Family`` and one entry below (a native one: an adapter module and a
``native`` record). Heavy libraries are imported only when a model of their family is built, so configs are checked
and other formats run without them.
"""

from otce_ray.models.families.builtin import BUILTIN
from otce_ray.models.families.family import BuildContext, Family
from otce_ray.models.families.native import HUGGINGFACE, SMP, TORCHVISION
from otce_ray.models.families.python_entry import PYTHON
from otce_ray.models.families.torchscript import TORCHSCRIPT

FAMILIES: dict[str, Family] = {family.format: family for family in (
    TORCHSCRIPT, PYTHON, BUILTIN, HUGGINGFACE, TORCHVISION, SMP,
)}

__all__ = ["FAMILIES", "BuildContext", "Family"]
