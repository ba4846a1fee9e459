"""Training a built-in net from scratch on one city's images: shared by ``jobs/train_zoo.py`` and the validation
harness (``otce_ray.validation``)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from otce_ray.datasets import Item
from otce_ray.datasets.labels import IGNORE
from otce_ray.finetune.metrics import at_label_size
from otce_ray.models import ModelSpec, build_module, logits_of, to_input

# The shipped zoo's schedule (jobs/train_zoo.py); ``steps`` may be overridden per call.
TRAINING: dict[str, Any] = {"steps": 150, "batch_size": 8, "optimizer": "adam", "lr": 0.01, "schedule": "cosine"}
CPU = torch.device("cpu")


def train(spec: ModelSpec, items: list[Item], training: Mapping[str, Any] = TRAINING) -> torch.nn.Module:
    """Fit a randomly initialised built-in (``spec.init_seed``) to one city's images: cross-entropy on the 19 train
    ids (255 ignored), Adam with cosine decay, batches drawn with replacement from the same seed."""
    module = build_module(spec).train()
    images = to_input(spec, np.stack([item.image for item in items]), CPU)
    labels = torch.from_numpy(np.stack([item.label for item in items])).long()
    optimizer = torch.optim.Adam(module.parameters(), lr=training["lr"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, training["steps"])
    generator = torch.Generator().manual_seed(spec.init_seed)
    for _ in range(training["steps"]):
        batch = torch.randint(0, len(items), (training["batch_size"],), generator=generator)
        logits = at_label_size(logits_of(module(images[batch])), tuple(labels.shape[-2:]))
        loss = F.cross_entropy(logits, labels[batch], ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return module.eval()
