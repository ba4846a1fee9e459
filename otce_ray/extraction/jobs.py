"""Extraction as a source of the dispatch loop: shards routed to the worker pool, results gathered per store.

Shards are routed model by model: a worker first takes more shards of the model it holds, so a model is loaded once
per worker, and a free worker always has work while any shard is left (no chunk barrier). A shard whose worker dies
is retried on another worker; a model that fails is recorded with its error and its remaining shards are dropped,
the others go on. When a store's shards are all in, its manifest is written by a tiny task (no CPU asked) and the
store's summary handed to ``on_store``; a plan of some shards only (``StorePlan.extract``, a racing stage) hands its
summary over when those are in, and writes no manifest.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import ray

from otce_ray.cluster.dispatch import Call, TaskTimeout, one_line
from otce_ray.datasets import SegmentationDataset
from otce_ray.extraction.planning import ExtractionSummary, StorePlan
from otce_ray.extraction.pool import Worker, WorkerPool, wait_message
from otce_ray.extraction.shard import ExtractionRequest, ShardResult
from otce_ray.store import write_manifest
from otce_ray.store.layout import part_name

logger = logging.getLogger("otce_ray")
RESOURCE_WAIT_SECONDS = 3600.0  # queued shards fail when no worker could start for this long
WAIT_REPORT_SECONDS = 60.0
# How a call ends when its worker (or the node under it) is gone: the shard is retried on another worker.
LOST_WORKER = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError)


@dataclass(eq=False)
class StoreJob:
    """A store being filled: its plan and what its shards gave back so far."""

    plan: StorePlan
    results: dict[int, ShardResult] = field(default_factory=dict)
    attempts: Counter = field(default_factory=Counter)
    error: str | None = None
    queued: int = 0
    running: int = 0
    started: float | None = None  # time.time() of the first dispatch and of the last result
    finished: float = 0.0

    @property
    def request(self) -> ExtractionRequest:
        return self.plan.request

    @property
    def shards(self) -> tuple[SegmentationDataset, ...]:
        return self.plan.shards

    @property
    def model(self) -> str:
        return self.plan.model


class ExtractionJobs:
    """The extraction work of a run, as a source of the dispatch loop (``otce_ray.cluster.drive``).

    ``on_store`` is called once per job with its summary, as soon as the job is finished (its manifest written).
    """

    name = "extraction"

    def __init__(
        self,
        pool: WorkerPool,
        *,
        batch_size: int,
        max_retries: int = 3,
        resource_wait_seconds: float = RESOURCE_WAIT_SECONDS,
        on_store: Callable[[ExtractionSummary], None],
    ) -> None:
        self.pool = pool
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.resource_wait_seconds = resource_wait_seconds
        self.on_store = on_store
        self._queue: OrderedDict[str, deque[tuple[StoreJob, int]]] = OrderedDict()  # model -> its queued shards
        self._queued = 0
        self._running = 0
        self._waiting_since: float | None = None
        self._reported_at = 0.0
        self._failed_starts = 0
        self._manifests: list[tuple[ExtractionSummary, dict[str, Any]]] = []
        # no CPU asked: a PUT may run anywhere, on the head too, and never waits behind extraction or scoring
        self._write_manifest = ray.remote(write_manifest).options(num_cpus=0, max_retries=3, retry_exceptions=True)

    def add(self, plans: Iterable[StorePlan]) -> None:
        for job in map(StoreJob, plans):
            shards = self._queue.setdefault(job.model, deque())
            shards.extend((job, shard) for shard in job.plan.todo)
            job.queued += len(job.plan.todo)
            self._queued += len(job.plan.todo)

    def idle(self) -> bool:
        return self._queued == 0 and not self._manifests

    def start(self) -> list[Call]:
        calls = self._write_manifests()
        calls += self.pool.grow(self._queued + self._running) if self._queued else []
        self._check_waiting()
        for worker in self.pool.free():
            while self._queued and worker.busy < self.pool.settings.concurrency:
                calls.append(self._send(worker, *self._take(worker.model)))
        if not self._queued:  # idle workers free their CPU or GPU for scoring, even while other shards still run
            self.pool.retire_idle()
        return calls

    def done(self, key: tuple, value: Any) -> None:
        if key[0] == "ready":
            self.pool.mark_ready(key[1])
            self._failed_starts = 0
            return
        if key[0] == "manifest":
            self.on_store(key[1])
            return
        _, index, job, shard = key
        self._release(index, job)
        self._record(job, value)

    def failed(self, key: tuple, error: BaseException) -> None:
        if key[0] == "manifest":
            summary = key[1]
            logger.warning("model %r: manifest of %r not written: %s", summary.model, summary.dataset, error)
            summary.status = "failed"
            summary.error = f"model {summary.model!r}: cannot write manifest: {one_line(error)}"
            self.on_store(summary)
            return
        if key[0] == "ready":  # never started: its node went away, it was retired, or it cannot be built
            self.pool.lose(key[1])
            self._failed_starts += 1
            if self._failed_starts > self.max_retries and self._queued:
                self._fail_queued(f"extraction workers fail to start: {type(error).__name__}: {error}")
            return
        _, index, job, shard = key
        self._release(index, job)
        if isinstance(error, TaskTimeout):  # a hung forward: its worker is killed (and replaced), its model fails
            self.pool.lose(index)
            self._record(job, ShardResult(shard, "failed", error=f"model {job.model!r}: {error}"))
            return
        if isinstance(error, LOST_WORKER):
            self.pool.lose(index)
            job.attempts[shard] += 1
            if job.attempts[shard] <= self.max_retries and job.error is None:
                logger.warning("model %r: shard %d of %r lost with its worker (%s); retrying (%d/%d)", job.model,
                               shard, job.request.dataset, type(error).__name__, job.attempts[shard], self.max_retries)
                self._requeue(job, shard)
                return
            message = f"model {job.model!r}: shard {shard} task lost: {one_line(error)}"
        else:
            logger.warning("model %r: shard %d of %r failed: %s", job.model, shard, job.request.dataset, error)
            message = f"model {job.model!r}: shard {shard} of {job.request.dataset!r}: {one_line(error)}"
        self._record(job, ShardResult(shard, "failed", error=message))

    # --- queue ------------------------------------------------------------------------------------------------------

    def _send(self, worker: Worker, job: StoreJob, shard: int) -> Call:
        worker.model, worker.busy = job.model, worker.busy + 1
        job.running += 1
        self._running += 1
        job.started = job.started or time.time()
        ref = worker.handle.extract.remote(job.request, shard, job.shards[shard], self.batch_size)
        return Call(("shard", worker.index, job, shard), ref, f"extraction of model {job.model!r} on "
                    f"{job.request.dataset!r}, shard {shard + 1}/{len(job.shards)} (worker {worker.index})")

    def _take(self, model: str | None) -> tuple[StoreJob, int]:
        """The next shard for a worker holding ``model``: one of that model's if any is queued, else the oldest."""
        name = model if model in self._queue else next(iter(self._queue))
        shards = self._queue[name]
        job, shard = shards.popleft()
        if not shards:
            del self._queue[name]
        job.queued -= 1
        self._queued -= 1
        return job, shard

    def _requeue(self, job: StoreJob, shard: int) -> None:
        if job.model not in self._queue:
            self._queue[job.model] = deque()
            self._queue.move_to_end(job.model, last=False)
        self._queue[job.model].appendleft((job, shard))
        job.queued += 1
        self._queued += 1

    def _release(self, index: int, job: StoreJob) -> None:
        worker = self.pool.workers.get(index)
        if worker is not None:
            worker.busy -= 1
        job.running -= 1
        self._running -= 1

    def _drop_model(self, model: str, reason: str) -> None:
        """Drop the queued shards of a failed model; each of its jobs ends with the first error."""
        dropped = {}
        for job, _ in self._queue.pop(model, ()):
            job.queued -= 1
            self._queued -= 1
            job.error = job.error or reason
            dropped[id(job)] = job
        for job in dropped.values():
            self._maybe_finish(job)

    def _fail_queued(self, reason: str) -> None:
        logger.error(reason)
        for model in list(self._queue):
            self._drop_model(model, reason)

    def _check_waiting(self) -> None:
        """Warn while queued shards have no started worker; give up after ``resource_wait_seconds``."""
        if not self._queued or self.pool.any_ready():
            self._waiting_since = None
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since, self._reported_at = now, now
            return
        waited = now - self._waiting_since
        if waited >= self.resource_wait_seconds:
            self._fail_queued(wait_message(self.pool, waited) + "; gave up")
        elif now - self._reported_at >= WAIT_REPORT_SECONDS:
            self._reported_at = now
            logger.warning(wait_message(self.pool, waited))

    # --- results ----------------------------------------------------------------------------------------------------

    def _record(self, job: StoreJob, result: ShardResult) -> None:
        job.results[result.shard] = result
        job.finished = time.time()
        if result.status == "failed" and job.error is None:
            job.error = result.error
            self._drop_model(job.model, f"not extracted: {result.error}")
        self._maybe_finish(job)

    def _maybe_finish(self, job: StoreJob) -> None:
        complete = len(job.results) == len(job.plan.todo)
        if job.running or job.queued or not (complete or job.error) or job.finished < 0:
            return
        job.finished = job.finished or time.time()
        summary, manifest = summarise(job)
        job.finished = -1.0  # reported: never again
        if manifest is None:
            self.on_store(summary)
        else:  # its store is complete once the manifest is written
            self._manifests.append((summary, manifest))

    def _write_manifests(self) -> list[Call]:
        """The manifests of finished stores, each written by a tiny task, so the loop never waits on a PUT."""
        calls = []
        while self._manifests:
            summary, manifest = self._manifests.pop()
            ref = self._write_manifest.remote(manifest["store"], summary.dataset, summary.model, manifest["body"])
            calls.append(Call(("manifest", summary), ref, f"manifest of model {summary.model!r} on {summary.dataset!r}"))
        return calls


def summarise(job: StoreJob) -> tuple[ExtractionSummary, dict[str, Any] | None]:
    """A finished job's summary, and the manifest to write when all the store's shards succeeded."""
    request = job.request
    results = [job.results[shard] for shard in sorted(job.results)]
    timings: Counter = Counter()
    for result in results:
        timings.update(result.timings)
    written = [r for r in results if r.status != "failed"]
    summary = ExtractionSummary(
        request.model.name,
        request.dataset,
        "failed" if job.error else "ok",
        rows=sum(r.rows for r in results),
        images=sum(r.images for r in results),
        shards_written=sum(r.status == "written" for r in results),
        shards_reused=sum(r.status == "skipped" for r in results),
        seconds=max(0.0, job.finished - (job.started or job.finished)),
        error=job.error,
        key=request.key,
        skipped_files=[entry for r in results for entry in r.skipped_files],
        timings={phase: round(seconds, 4) for phase, seconds in timings.items()},
        model_loads=sum(r.model_loads for r in results),
        feature_dim=written[0].feature_dim if written else None,
        logit_dim=written[0].logit_dim if written else None,
        params=next((r.params for r in written if r.params is not None), None),
        started_at=job.started,
        finished_at=job.finished,
    )
    if job.error or job.plan.extract is not None:  # failed, or partial (a racing stage): no manifest
        return summary, None
    first = results[0]
    parts = [{"file": part_name(r.shard), "shard": r.shard, "rows": r.rows, "images": r.images} for r in results]
    body = request.metadata(first.feature_dim, first.logit_dim, summary.images, summary.rows, parts=parts,
                            params=summary.params)
    return summary, {"store": request.store, "body": body}
