"""Loaded models kept by a long-lived worker between shards, so a model is loaded once per worker, not per shard."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch

from otce_ray.models.loading import LoadedModel, load_model
from otce_ray.models.spec import ModelSpec


class ModelCache:
    """At most ``capacity`` loaded models, least recently used evicted; keyed by what determines their weights.

    The key is the spec's fingerprint plus the identity of its files and code (content digests, as the run plan read
    them), so a checkpoint replaced between runs is never served from memory. Thread-safe: two shards of one
    model arriving together load it once.
    """

    def __init__(self, capacity: int = 2) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec, identity: Mapping[str, Any], device: str | torch.device,
            allowed_entrypoints: Sequence[str] | None = None) -> tuple[LoadedModel, bool]:
        """The loaded model and whether this call loaded it (False: it was already in memory); ``identity`` is what
        ``otce_ray.models.identity`` says of its files and code."""
        key = json.dumps([spec.fingerprint(), dict(identity), str(device)], sort_keys=True, default=str)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key], False
            while len(self._models) >= self.capacity:
                self._models.popitem(last=False)
            model = load_model(spec, device, allowed_entrypoints=allowed_entrypoints)
            self._models[key] = model
            return model, True
