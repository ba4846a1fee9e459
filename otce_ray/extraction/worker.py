"""The extraction worker: a Ray actor that keeps its models loaded and extracts shard after shard.

Following Ray's batch-inference pattern, the model is loaded once per worker, not once per shard, and model files are
fetched once per node (``otce_ray.fs.local_copy``). A worker runs two shards at a time: while one runs its forward
passes, the other's images are read and decoded, so the accelerator does not wait for the next shard to start. The
forward passes themselves take turns (``LoadedModel`` holds a lock). The class is plain Python; the pool wraps it
with ``ray.remote``.
"""

from __future__ import annotations

import torch

from otce_ray.datasets import SegmentationDataset
from otce_ray.extraction.shard import DECODE_THREADS, ExtractionRequest, ShardResult, run_shard
from otce_ray.models.cache import ModelCache

CONCURRENT_SHARDS = 2  # one decoding while the other computes
MODELS_KEPT = 2  # the model being finished and the next one, at a model boundary


class ShardWorker:
    def __init__(self, decode_threads: int = DECODE_THREADS) -> None:
        self._models = ModelCache(MODELS_KEPT)
        self._decode_threads = decode_threads
        self._device = "cuda" if torch.cuda.is_available() else "cpu"

    def extract(self, request: ExtractionRequest, shard: int, images: SegmentationDataset,
                batch_size: int) -> ShardResult:
        return run_shard(request, shard, images, batch_size, models=self._models,
                         decode_threads=self._decode_threads, device=self._device)
