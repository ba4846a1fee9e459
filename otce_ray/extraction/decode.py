"""Images decoded ahead of the forward pass by a few threads, so the model does not wait for files to decode.

A Cityscapes PNG takes tens of milliseconds to read and decode on one core, about a forward pass per image of a
large model on a GPU at reduced resolution; one thread one batch ahead leaves the GPU waiting. Pillow and S3 reads
release the GIL, so a small thread pool keeps ``lookahead`` images in flight. Items come back in dataset order,
broken files are handled by the dataset's ``on_error`` policy in that order, and the time spent decoding (in the
threads) and waiting for a decoded image (in the caller) are both recorded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

from otce_ray.datasets import DatasetError, Item, SegmentationDataset

PHASES = ("load", "decode", "decode_wait", "forward", "sample", "write")


class Stopwatch:
    """Seconds spent per phase of one shard's extraction; safe to add to from several threads."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            self.seconds[phase] += seconds

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - start)


def decoded(dataset: SegmentationDataset, *, threads: int, lookahead: int, stopwatch: Stopwatch) -> Iterator[Item]:
    """The dataset's items in order, each decoded by one of ``threads`` threads up to ``lookahead`` items ahead."""

    def load(sample) -> tuple[Item, float]:
        start = time.perf_counter()
        return dataset.load(sample), time.perf_counter() - start

    samples = iter(dataset.samples)
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="otce-decode")
    pending: deque[tuple[object, Future]] = deque()

    def submit() -> None:
        sample = next(samples, None)
        if sample is not None:
            pending.append((sample, pool.submit(load, sample)))

    try:
        for _ in range(max(1, lookahead)):
            submit()
        while pending:
            sample, future = pending.popleft()
            submit()
            try:
                with stopwatch.measure("decode_wait"):
                    item, seconds = future.result()
            except DatasetError as error:
                dataset.skip_or_raise(sample, error)
                continue
            stopwatch.add("decode", seconds)
            yield item
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
