"""Turn a ``ModelSpec`` into a ready network that maps uint8 images to ``(features, logits)``.

Every failure is raised as ``ModelError`` naming the model and the cause (missing or corrupt file, entrypoint that
does not import, checkpoint that is not weights-only or does not fit, forward with the wrong output), so a run can
record it against that model and go on with the others. Files are read through ``otce_ray.fs`` (local or S3).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otce_ray.models.errors import ModelError
from otce_ray.models.families import FAMILIES, BuildContext
from otce_ray.models.families.family import first_line, read_file
from otce_ray.models.spec import ModelSpec


@dataclass(frozen=True)
class ModelOutput:
    features: torch.Tensor  # (B, d, h, w) float32
    logits: torch.Tensor | None  # (B, C, h', w') float32, or None when the model gives none


class LoadedModel:
    """A network in eval mode on its device, with the spec's input normalisation and output checks.

    ``bf16`` runs the forward under bf16 autocast on the model's device; ``channels_last`` hands the network its
    inputs channels-last (``load_model`` stores its weights so): both as ``load_model`` decides them.
    """

    def __init__(
        self, spec: ModelSpec, module: nn.Module, device: torch.device, feature_layer: nn.Module | None,
        feature_layer_name: str | None = None, *, bf16: bool = False, channels_last: bool = False,
    ) -> None:
        self.spec = spec
        self.feature_layer_name = feature_layer_name or spec.feature_layer
        self.device = device
        self.bf16 = bf16
        self.channels_last = channels_last
        self._module = module
        self.parameter_count = sum(parameter.numel() for parameter in module.parameters())  # the leaderboard's params
        self._captured: list[torch.Tensor] = []
        if feature_layer is not None:
            feature_layer.register_forward_hook(lambda _m, _i, output: self._captured.append(output))
        self._uses_hook = feature_layer is not None
        self._lock = threading.Lock()  # one forward at a time: shards decoding side by side share one model

    def __call__(self, images: np.ndarray, *, synchronize: bool = False) -> ModelOutput:
        """Run a batch of (B, H, W, 3) uint8 images (under bf16 autocast when ``bf16``).

        ``synchronize`` waits for the device to finish, so that a caller timing the forward pass times all of it.
        """
        x = to_input(self.spec, images, self.device, channels_last=self.channels_last)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with self._lock, torch.inference_mode(), autocast:
            self._captured.clear()
            try:
                output = self._module(x)
            except Exception as error:  # a crash inside user code is that model's failure
                raise ModelError(self.spec.name, f"forward failed: {type(error).__name__}: {error}") from error
            result = self._split(output, batch=x.shape[0])
            if synchronize and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        return result

    def _split(self, output: Any, batch: int) -> ModelOutput:
        if self._uses_hook:
            if len(self._captured) != 1 or not isinstance(self._captured[0], torch.Tensor):
                raise ModelError(
                    self.spec.name,
                    f"feature_layer {self.feature_layer_name!r} must run once per forward and return a tensor",
                )
            features, logits = self._captured[0], logits_of(output)
        elif isinstance(output, torch.Tensor):
            features, logits = output, None
        elif isinstance(output, (tuple, list)) and len(output) == 2:
            features, logits = output
        elif isinstance(output, Mapping) and "features" in output:
            features, logits = output["features"], logits_of(output)
        else:
            raise ModelError(
                self.spec.name,
                f"forward returned {_describe(output)}; expected a feature map, a (features, logits) tuple "
                "or a dict with 'features' (or set feature_layer)",
            )
        _check_map(self.spec.name, "features", features, batch)
        if logits is not None:
            _check_map(self.spec.name, "logits", logits, batch)
            logits = logits.float()
        return ModelOutput(features.float(), logits)


def load_model(spec: ModelSpec | Mapping[str, Any], device: str | torch.device = "cpu", *,
               allowed_entrypoints: Sequence[str] | None = None, bf16: bool | None = None,
               channels_last: bool | None = None) -> LoadedModel:
    """Load the network a spec describes, once, in eval mode on ``device`` (see ``build_module``).

    How it runs there (None: as on a card when ``device`` is CUDA, plain float32 otherwise):

    - ``bf16``: the forward under bf16 autocast (None: on CUDA, unless the spec's ``autocast`` is off). Tensor cores
      run bf16 several times faster than float32, and features are sampled and stored in float16 anyway; on a CPU
      bf16 is slower on most cores, so it is left off.
    - ``channels_last``: 4-D weights and inputs in the channels-last layout (None: on CUDA), the one cuDNN's
      tensor-core convolutions take without transposing every activation; layers without 4-D tensors ignore it.
    """
    spec = ModelSpec.from_dict(spec)
    device = torch.device(device)
    on_card = device.type == "cuda"
    channels_last = on_card if channels_last is None else channels_last
    module = build_module(spec, device, allowed_entrypoints=allowed_entrypoints).eval()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    name = feature_layer_name(spec, module)
    return LoadedModel(spec, module, device, _feature_layer(spec, module, name), name,
                       bf16=on_card and spec.autocast if bf16 is None else bf16, channels_last=channels_last)


def build_module(spec: ModelSpec | Mapping[str, Any], device: str | torch.device = "cpu", *,
                 allowed_entrypoints: Sequence[str] | None = None) -> nn.Module:
    """The spec's bare network with its weights on ``device``, left in the mode it was built or saved in.

    ``load_model`` wraps it for inference; fine-tuning trains it directly. A Python entrypoint outside
    ``allowed_entrypoints`` (module prefixes; None: any) is refused before anything is imported: the config's
    allow-list is checked again here, on the worker, where the code would run.
    """
    spec = ModelSpec.from_dict(spec)
    device = torch.device(device)
    module = FAMILIES[spec.format].build(spec, BuildContext(device, allowed_entrypoints))
    if spec.checkpoint:
        _load_checkpoint(spec, module)
    return module.to(device)


def to_input(spec: ModelSpec, images: np.ndarray, device: torch.device, *, channels_last: bool = False) -> torch.Tensor:
    """(B, H, W, 3) uint8 images -> the (B, 3, H', W') float batch the network takes: ``mean``/``std``, ``size``.

    For a CUDA device the uint8 batch is first copied into page-locked (pinned) host memory, from which the copy to
    the card runs asynchronously: the host goes on queueing the normalisation and the forward pass instead of
    waiting for the transfer. (torch's pinned-memory cache keeps the buffer until the copy is done.)
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ModelError(spec.name, f"expected images of shape (B, H, W, 3), got {images.shape}")
    host = torch.from_numpy(np.ascontiguousarray(images))
    if device.type == "cuda":
        host = host.pin_memory()
    x = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if spec.size is not None and tuple(x.shape[-2:]) != spec.size:
        x = F.interpolate(x, size=spec.size, mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


_UNREADABLE = "cannot be read (corrupt, or not a PyTorch checkpoint)"


def _load_checkpoint(spec: ModelSpec, module: nn.Module) -> None:
    data = read_file(spec, "checkpoint", spec.checkpoint)
    state = _read_safetensors(spec, data) if spec.checkpoint.endswith(SAFETENSORS) else _unpickle(spec, data)
    state = state_dict_of(state)
    if state is None:
        raise ModelError(spec.name, f"checkpoint {spec.checkpoint} holds no state dict of tensors")
    state = FAMILIES[spec.format].checkpoint_state(module, state)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:600]
        raise ModelError(
            spec.name, f"checkpoint {spec.checkpoint} does not match the architecture: {detail}"
        ) from error


SAFETENSORS = ".safetensors"


def _read_safetensors(spec: ModelSpec, data: io.BytesIO) -> Mapping[str, torch.Tensor]:
    """A safetensors file holds tensors only (no code), so it needs no weights-only guard."""
    try:
        from safetensors.torch import load
    except ImportError as error:
        raise ModelError(spec.name, f"checkpoint {spec.checkpoint} needs the safetensors package: {error}") from None
    try:
        return load(data.getvalue())
    except Exception as error:
        raise ModelError(spec.name, f"checkpoint {spec.checkpoint} {_UNREADABLE}: {first_line(error)}") from error


def _unpickle(spec: ModelSpec, data: io.BytesIO) -> Any:
    try:
        state = torch.load(data, map_location="cpu", weights_only=not spec.allow_unsafe_pickle)
    except pickle.UnpicklingError as error:
        raise ModelError(spec.name, f"checkpoint {spec.checkpoint} {unpickling_problem(error)}") from error
    except Exception as error:
        raise ModelError(spec.name, f"checkpoint {spec.checkpoint} {_UNREADABLE}: {first_line(error)}") from error
    return state


def state_dict_of(state: Any) -> Mapping[str, torch.Tensor] | None:
    """Accept a bare state dict or the common wrappers ``{"state_dict": ...}`` / ``{"model": ...}``."""
    if isinstance(state, Mapping) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state:
                return state_dict_of(state[key])
    return None


def feature_layer_name(spec: ModelSpec, module: nn.Module) -> str | None:
    """The module whose output is the feature map: the spec's ``feature_layer``, else its family's default (None:
    the forward's own output gives the features)."""
    return spec.feature_layer or FAMILIES[spec.format].default_feature_layer(spec, module)


def _feature_layer(spec: ModelSpec, module: nn.Module, name: str | None) -> nn.Module | None:
    if not name:
        return None
    try:
        return module.get_submodule(name)
    except AttributeError:
        names = [name for name, _ in module.named_modules() if name][:20]
        raise ModelError(
            spec.name, f"feature_layer {name!r} is not a submodule; some submodules: {names}"
        ) from None


def logits_of(output: Any) -> torch.Tensor | None:
    """The logits in a forward's output: the tensor itself, a dict's 'logits'/'out', or a pair's second item."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return output.get("logits", output.get("out"))
    if isinstance(output, (tuple, list)) and len(output) == 2:
        return output[1]
    return None


def _check_map(model: str, what: str, value: Any, batch: int) -> None:
    if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[0] != batch or value.shape[1] < 1:
        raise ModelError(model, f"forward returned {what} {_describe(value)}; expected a tensor ({batch}, d, h, w)")
    if not value.is_floating_point():
        raise ModelError(model, f"forward returned {what} of dtype {value.dtype}; expected floating point")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"of shape {tuple(value.shape)}"
    if isinstance(value, Mapping):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"


def unpickling_problem(error: BaseException) -> str:
    """Why a weights-only load failed, in words for the user: refused because the file would run code (naming what
    it would call, never suggesting the unsafe retry torch's own message suggests), or unreadable."""
    text = str(error)
    called = re.search(r"GLOBAL ([\w.]+)", text)
    if called:
        return (f"refused: this checkpoint would run code when unpickled (it calls {called.group(1)}); a weights-only "
                "file holds tensors only. Load it with allow_unsafe_pickle: true only if you trust who made it")
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return f"{_UNREADABLE}: {(detail.group(1) if detail else lines[0] if lines else type(error).__name__)[:200]}"


