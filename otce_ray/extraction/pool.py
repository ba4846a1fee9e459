"""A pool of extraction workers sized to the cluster as it is now: it grows as nodes join and replaces lost workers.

The pool never starts more workers than the cluster can run at once (one while it can run none: that one waits for
resources, which is what an autoscaler acts on), and the capacity the queued work could use is also asked for
directly (``Cluster.request``). A worker is given work only once it has started; workers that are idle with nothing
queued are retired, which frees their GPU or CPU for scoring (and lets an autoscaler scale down). On a machine
without GPUs, extraction and scoring are both CPU-bound, so workers may take every CPU: scoring tasks wait for the
CPUs the retiring workers free, and the total time is the same as with the CPUs split.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator

import ray

from otce_ray.extraction.worker import ShardWorker, concurrency, decode_threads
from otce_ray.cluster.dispatch import Call
from otce_ray.cluster.resources import Cluster, demand


@dataclass(frozen=True)
class WorkerSettings:
    """Resources and size of the pool. ``max_workers`` None: as many as the cluster can run."""

    num_gpus: float = 0.0
    num_cpus: float = 1.0
    max_workers: int | None = None
    decode_threads: int | None = None  # None: see ``worker.decode_threads``

    @property
    def concurrency(self) -> int:
        return concurrency(self.num_gpus)


@dataclass
class Worker:
    index: int
    handle: Any
    ready: bool = False
    busy: int = 0  # shards in flight on it
    model: str | None = None  # the model whose shards it works on: more of them go here first


class WorkerPool:
    def __init__(self, settings: WorkerSettings, cluster: Cluster) -> None:
        self.settings = settings
        self.cluster = cluster
        self.workers: dict[int, Worker] = {}
        self.started = 0
        self._numbers = itertools.count()
        self._actor = ray.remote(ShardWorker).options(
            num_cpus=settings.num_cpus, num_gpus=settings.num_gpus, max_concurrency=settings.concurrency,
            max_restarts=0, scheduling_strategy="SPREAD",
        )

    @property
    def demand(self) -> dict[str, float]:
        return demand(self.settings.num_cpus, self.settings.num_gpus)

    def capacity(self) -> int:
        """Workers the cluster can run at once now (0 while no node can host one)."""
        return self.cluster.view.slots(self.demand)

    def grow(self, work: int) -> list[Call]:
        """Start workers for ``work`` shards waiting or running, up to the cluster's capacity (one when it has none,
        to wait for the autoscaler); returns the calls that tell when each new worker has started."""
        limit = self.settings.max_workers or math.inf
        wanted = int(min(limit, math.ceil(work / self.settings.concurrency)))
        self.cluster.request([self.demand] * wanted)
        target = min(wanted, max(self.capacity(), 1))
        calls = []
        while len(self.workers) < target:
            index = next(self._numbers)
            handle = self._actor.remote(decode_threads(self.settings.num_gpus, self.settings.decode_threads))
            self.workers[index] = Worker(index, handle)
            self.started += 1
            calls.append(Call(("ready", index), handle.__ray_ready__.remote(), f"extraction worker {index}: starting"))
        return calls

    def free(self) -> Iterator[Worker]:
        """Started workers with room for another shard, the least busy first."""
        room = self.settings.concurrency
        ready = [worker for worker in self.workers.values() if worker.ready and worker.busy < room]
        return iter(sorted(ready, key=lambda worker: worker.busy))

    def any_ready(self) -> bool:
        return any(worker.ready for worker in self.workers.values())

    def mark_ready(self, index: int) -> None:
        if index in self.workers:
            self.workers[index].ready = True

    def lose(self, index: int) -> None:
        """Forget a worker that died (its node was lost, or it crashed); ``grow`` replaces it."""
        worker = self.workers.pop(index, None)
        if worker is not None:
            ray.kill(worker.handle, no_restart=True)

    def retire_idle(self) -> None:
        for worker in [w for w in self.workers.values() if w.busy == 0]:
            self.lose(worker.index)

    def shutdown(self) -> None:
        for index in list(self.workers):
            self.lose(index)
        self.cluster.release()


def wait_message(pool: WorkerPool, waited: float) -> str:
    """Why no extraction worker runs yet, in words a user can act on."""
    view = pool.cluster.view
    return (f"extraction: no worker has started after {waited:.0f} s; each asks for "
            f"{pool.settings.num_gpus:g} GPU and {pool.settings.num_cpus:g} CPU, the cluster has "
            f"{view.total('GPU'):g} GPUs and {view.total('CPU'):g} CPUs: waiting for the autoscaler to add nodes "
            f"(on a fixed cluster, lower extraction.num_gpus or num_cpus)")
