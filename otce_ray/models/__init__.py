"""Source models: specs from the run config, loading (TorchScript, Python entrypoint, built-ins, the native formats of
Hugging Face, torchvision and smp), tiny zoo nets."""

from otce_ray.models.architectures import ARCHITECTURES, build_architecture
from otce_ray.models.families import FAMILIES
from otce_ray.models.loading import (
    LoadedModel,
    ModelOutput,
    build_module,
    feature_layer_name,
    load_model,
    logits_of,
    to_input,
)
from otce_ray.models.errors import ModelError
from otce_ray.models.spec import ModelSpec

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "LoadedModel",
    "ModelError",
    "ModelOutput",
    "ModelSpec",
    "build_architecture",
    "build_module",
    "feature_layer_name",
    "load_model",
    "logits_of",
    "to_input",
]
