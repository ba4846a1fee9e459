"""Few-shot fine-tuning of one source model on the target, and its evaluation: the ground truth OTCE should predict.

As in the paper (section 2.1 and 3.1): the target model starts from the source weights, the classifier is replaced
when the source and target class counts differ, and the whole network is trained on 20 target images (the ones the
scores saw: :mod:`otce_ray.finetune.split`) under one fixed schedule, then evaluated on other target images
(:mod:`otce_ray.finetune.metrics`).

Finding the classifier: a probe forward on one training image records every ``nn.Conv2d`` that runs; the
classifier is the last one to run whose output has as many channels as the logits and that the logits depend
on (checked through autograd). For the built-in architectures this is ``head.classifier``, the 1x1 conv that
produces the logits; for a Python model it also skips auxiliary heads that run after the main one. It is
replaced by a freshly initialised ``nn.Conv2d`` with the same input channels, kernel, stride, padding and
dilation and the target's class count. When the counts match, the source head is kept: the class ids are taken
to mean the same classes (both Cityscapes train ids, say). A TorchScript model cannot have a submodule replaced:
it fine-tunes when its class count already matches the target's and fails with a clear error otherwise.

Determinism: the seed initialises the new classifier and orders the batches (the target spec's seed picks the
images, so fine-tuning seeds replicate on identical data); training runs under
``torch.use_deterministic_algorithms`` and a fixed thread count, so on CPU the same seed gives the same numbers bit
for bit (tested for every built-in). Ops without a deterministic kernel warn instead of failing: SegNet's
``max_unpool2d`` on CPU (its pooling indices are unique, so its result does not depend on order) and, on CUDA, the
backward of bilinear upsampling, so GPU runs may differ in the last digits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from otce_ray.datasets import Item
from otce_ray.datasets.labels import IGNORE
from otce_ray.finetune.metrics import Evaluation, at_label_size
from otce_ray.finetune.split import TargetSplit
from otce_ray.models import ModelError, ModelSpec, build_module, logits_of, to_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FineTuneSettings:
    """The fixed schedule: Adam at ``lr`` with cosine decay over ``steps`` batches of ``batch_size`` images.

    ``train_images``: None trains on the target's ``max_images`` subset, or on 20 images when it sets none
    (:func:`otce_ray.finetune.split.training_target`). ``seed``: the new classifier's initialisation and the batch
    order, never which images (the target spec's ``seed`` picks those). ``image_draw``: train on a seeded bootstrap
    resample of the training images (:meth:`otce_ray.finetune.split.TargetSplit.redrawn`), so replicates can also
    vary the images drawn. 60 steps (12 passes over 20 images)
    because there the demo zoo's ranking by log-likelihood barely moves with the seed (Spearman 0.99 between seeds
    0 and 1; 0.94 at 30 steps). A tiny built-in (< 45k parameters, 128x256 images) then fine-tunes and scores in
    5-13 s on one CPU core: the 16-model zoo takes 85 s on 2 cores.
    """

    train_images: int | None = None
    eval_images: int = 50
    steps: int = 60
    batch_size: int = 4
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1
    image_draw: int | None = None  # None: train on the images as they are; k: on bootstrap draw k of them

    def __post_init__(self) -> None:
        for key in ("train_images", "eval_images", "steps", "batch_size", "threads"):
            value = getattr(self, key)
            if key == "train_images" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"fine-tuning {key}: expected an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"fine-tuning lr: expected a number > 0, got {self.lr!r}")
        for key in ("seed", "image_draw"):
            value = getattr(self, key)
            if not (key == "image_draw" and value is None) and (not isinstance(value, int) or value < 0):
                raise ValueError(f"fine-tuning {key}: expected an integer >= 0, got {value!r}")


@dataclass(frozen=True)
class FineTuneRecord:
    """One model's ground truth; ``replaced_classifier`` names the swapped head (None when it was kept)."""

    model: str
    miou: float | None = None
    pixel_accuracy: float | None = None
    log_likelihood: float | None = None
    seconds: float = 0.0
    status: str = "ok"
    error: str | None = None
    replaced_classifier: str | None = None


def finetune_model(
    spec: ModelSpec | Mapping[str, Any], split: TargetSplit, settings: FineTuneSettings, device: str = "cpu",
    allowed_entrypoints: Sequence[str] | None = None,
) -> FineTuneRecord:
    """Fine-tune the source model on ``split.train`` and score it on ``split.test``; raises on any failure.

    ``allowed_entrypoints``: the run config's allow-list, checked again here before a Python entrypoint is imported.
    """
    spec = ModelSpec.from_dict(spec)
    where = torch.device(device)
    split = split.redrawn(settings.image_draw)
    with _reproducible(settings, where):
        started = time.perf_counter()  # after the context's one-off import of torch's compiler config (seconds)
        torch.manual_seed(settings.seed)
        module = build_module(spec, where, allowed_entrypoints=allowed_entrypoints)
        for parameter in module.parameters():  # the whole network trains (ScriptModules lack requires_grad_)
            parameter.requires_grad_(True)
        replaced = fit_classifier(spec, module, split.train[0].image[None], split.num_classes, where)
        _train(spec, module, split, settings, where)
        scores = _evaluate(spec, module, split, settings.batch_size, where)
    return FineTuneRecord(spec.name, **scores, seconds=time.perf_counter() - started, replaced_classifier=replaced)


def finetune_or_fail(
    spec: Mapping[str, Any], split: TargetSplit, settings: FineTuneSettings, device: str = "cpu",
    allowed_entrypoints: Sequence[str] | None = None,
) -> FineTuneRecord:
    """:func:`finetune_model` that turns any failure into a failed record, so one bad model never stops a run."""
    started = time.perf_counter()
    try:
        return finetune_model(spec, split, settings, device, allowed_entrypoints)
    except Exception as error:  # noqa: BLE001 - any failure belongs to this model
        name = str(spec.get("name", "?"))
        message = str(error) if isinstance(error, ModelError) else f"model {name!r}: {type(error).__name__}: {error}"
        return FineTuneRecord(name, seconds=time.perf_counter() - started, status="failed", error=message)


def fit_classifier(
    spec: ModelSpec, module: nn.Module, images: np.ndarray, num_classes: int, device: torch.device
) -> str | None:
    """Replace the classifier (see the module docstring) when the model's class count is not ``num_classes``.

    Returns the replaced submodule's name, or None when the source head already fits the target.
    """
    ran: list[tuple[str, torch.Tensor]] = []
    hooks = [
        layer.register_forward_hook(lambda _m, _i, output, name=name: ran.append((name, output)))
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Conv2d)
    ]
    module.eval()
    try:
        logits = _logits(spec, module(to_input(spec, images, device)))
    finally:
        for hook in hooks:
            hook.remove()
    source_classes = logits.shape[1]
    if source_classes == num_classes:
        return None
    if isinstance(module, torch.jit.ScriptModule):
        raise ModelError(
            spec.name,
            f"gives {source_classes} classes but the target has {num_classes}, and a TorchScript model's classifier "
            "cannot be replaced: export it with the target's classes or give it as format 'python'",
        )
    candidates = [(name, output) for name, output in ran if output.shape[1] == source_classes]
    used = torch.autograd.grad(logits.sum(), [o for _, o in candidates], allow_unused=True) if candidates else ()
    feeding = [name for (name, _), gradient in zip(candidates, used) if gradient is not None]
    if not feeding:
        raise ModelError(
            spec.name,
            f"gives {source_classes} classes but the target has {num_classes}, and no nn.Conv2d with "
            f"{source_classes} output channels produces the logits: the classifier to replace cannot be found",
        )
    name = feeding[-1]
    old = module.get_submodule(name)
    new = nn.Conv2d(
        old.in_channels, num_classes, old.kernel_size, old.stride, old.padding, old.dilation,
        bias=old.bias is not None, padding_mode=old.padding_mode,
    )
    module.set_submodule(name, new.to(device=old.weight.device, dtype=old.weight.dtype))
    return name


def _train(
    spec: ModelSpec, module: nn.Module, split: TargetSplit, settings: FineTuneSettings, device: torch.device
) -> None:
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.steps)
    generator = torch.Generator().manual_seed(settings.seed)
    count = len(split.train)
    epochs = math.ceil(settings.steps * settings.batch_size / count)
    order = torch.cat([torch.randperm(count, generator=generator) for _ in range(epochs)]).tolist()
    for step in range(settings.steps):
        batch = [split.train[i] for i in order[step * settings.batch_size : (step + 1) * settings.batch_size]]
        groups = list(_same_size_groups(batch, device))
        pixels = sum(int((labels != IGNORE).sum()) for _, labels in groups)
        loss = sum(
            F.cross_entropy(_forward(spec, module, images, labels, split.num_classes, device), labels,
                            ignore_index=IGNORE, reduction="sum")
            for images, labels in groups
        ) / max(pixels, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


def _evaluate(
    spec: ModelSpec, module: nn.Module, split: TargetSplit, batch_size: int, device: torch.device
) -> dict[str, float]:
    module.eval()
    evaluation = Evaluation(split.num_classes)
    with torch.no_grad():
        for start in range(0, len(split.test), batch_size):
            for images, labels in _same_size_groups(split.test[start : start + batch_size], device):
                evaluation.add(_forward(spec, module, images, labels, split.num_classes, device), labels)
    return evaluation.scores()


def _same_size_groups(items: Sequence[Item], device: torch.device) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """A batch as stacks of images (uint8) and labels (long, on ``device``) of one size each."""
    by_size: dict[tuple[int, ...], list[Item]] = defaultdict(list)
    for item in items:
        by_size[item.image.shape].append(item)
    for group in by_size.values():
        labels = torch.from_numpy(np.stack([item.label for item in group])).to(device).long()
        yield np.stack([item.image for item in group]), labels


def _forward(
    spec: ModelSpec, module: nn.Module, images: np.ndarray, labels: torch.Tensor, num_classes: int,
    device: torch.device,
) -> torch.Tensor:
    """Logits at the labels' resolution, checked to have one channel per target class."""
    logits = _logits(spec, module(to_input(spec, images, device)))
    if logits.shape[1] != num_classes:
        raise ModelError(spec.name, f"gives logits with {logits.shape[1]} channels; the target has {num_classes}")
    return at_label_size(logits.float(), tuple(labels.shape[-2:]))


def _logits(spec: ModelSpec, output: Any) -> torch.Tensor:
    """The logits of a forward, read as ``load_model`` reads them (a bare tensor is features without feature_layer)."""
    logits = None if isinstance(output, torch.Tensor) and not spec.feature_layer else logits_of(output)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise ModelError(
            spec.name,
            "forward gives no (B, C, h, w) logits (a (features, logits) pair, a dict with 'logits' or 'out', or "
            "the output itself when feature_layer is set): fine-tuning needs the model's classifier",
        )
    return logits


@contextlib.contextmanager
def _reproducible(settings: FineTuneSettings, device: torch.device) -> Iterator[None]:
    """Seeded RNG, deterministic algorithms and a fixed thread count, all restored on exit."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    devices = [device.index or 0] if device.type == "cuda" else []
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)
