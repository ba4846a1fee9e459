"""Source models: specs from the run config, loading (TorchScript, Python entrypoint, built-ins), tiny zoo nets."""

from otce_ray.models.architectures import ARCHITECTURES, build_architecture
from otce_ray.models.loading import LoadedModel, ModelOutput, build_module, load_model, logits_of, to_input
from otce_ray.models.spec import ModelError, ModelSpec

__all__ = [
    "ARCHITECTURES",
    "LoadedModel",
    "ModelError",
    "ModelOutput",
    "ModelSpec",
    "build_architecture",
    "build_module",
    "load_model",
    "logits_of",
    "to_input",
]
