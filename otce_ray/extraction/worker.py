"""The extraction worker: a Ray actor that keeps its models loaded and extracts shard after shard.

Following Ray's batch-inference pattern, the model is loaded once per worker, not once per shard, and model files are
fetched once per node (``otce_ray.fs.local_copy``). A GPU worker runs two shards at a time: while one runs its
forward passes, the other's images are read and decoded by a few threads, so the accelerator does not wait for the
next shard to start (the forward passes take turns: ``LoadedModel`` holds a lock). A CPU worker's forward pass needs
the very cores decoding would use, so it runs one shard at a time with one image decoded ahead: on 2 cores that is
what measured fastest (docs/performance.md). The class is plain Python; the pool wraps it with ``ray.remote``.
"""

from __future__ import annotations

import numpy as np
import torch

from otce_ray.datasets import SegmentationDataset
from otce_ray.extraction.shard import ExtractionRequest, ShardResult, run_shard
from otce_ray.models.cache import ModelCache
from otce_ray.store import pixel_table
from otce_ray.store.parts import part_bytes

MODELS_KEPT = 2  # the model being finished and the next one, at a model boundary


def concurrency(num_gpus: float) -> int:
    """Shards a worker runs at once: two on a GPU (one decoding while the other computes), one on CPUs."""
    return 2 if num_gpus > 0 else 1


def decode_threads(num_gpus: float, configured: int | None) -> int:
    """Threads decoding ahead of the forward pass: the configured number, else 4 on a GPU and 1 on CPUs."""
    return configured if configured is not None else (4 if num_gpus > 0 else 1)


class ShardWorker:
    def __init__(self, decode_threads: int) -> None:
        self._models = ModelCache(MODELS_KEPT)
        self._decode_threads = decode_threads
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        _warm_up_writer()

    def extract(self, request: ExtractionRequest, shard: int, images: SegmentationDataset,
                batch_size: int) -> ShardResult:
        return run_shard(request, shard, images, batch_size, models=self._models,
                         decode_threads=self._decode_threads, device=self._device)


def _warm_up_writer() -> None:
    """Serialise a one-row part: Parquet's first write in a process costs about 0.4 s of one-time set-up, which
    would otherwise land on the first shard (the worker is not given work before its constructor returns)."""
    one = np.zeros((1, 1), dtype=np.float32)
    table = pixel_table(np.array(["warm-up"], dtype=object), np.zeros(1, np.int32), np.zeros(1, np.int32),
                        np.zeros(1, np.int16), one, one, {"key": "warm-up"})
    part_bytes(table)
