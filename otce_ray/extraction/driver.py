"""The Ray shell around ``run_shard``: (model, dataset) stores as jobs of shards, routed to extraction workers.

Work is planned per (model, dataset) pair from a dataset listed once (``plan_store``). A pair whose store is complete
for the same settings is not touched; otherwise each shard becomes one call to a worker of the ``WorkerPool``, with
the exact files of that shard. Shards are routed model by model: a worker first takes more shards of the model it
holds, so a model is loaded once per worker, and a free worker always has work while any shard is left (no chunk
barrier). A shard whose worker dies is retried on another worker; a model that fails is recorded with its error,
its remaining shards are dropped, and the others go on. The manifest is written last, by the driver.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import ray

from otce_ray.cluster.dispatch import Call
from otce_ray.cluster.resources import check_gpus
from otce_ray.datasets import SegmentationDataset
from otce_ray.extraction.pool import Worker, WorkerPool, WorkerSettings, wait_message
from otce_ray.extraction.shard import ExtractionRequest, ShardResult
from otce_ray.models import ModelError, ModelSpec
from otce_ray.models.identity import model_identity
from otce_ray.store import FEATURE_DTYPES, read_manifest, write_manifest
from otce_ray.store.layout import part_name

logger = logging.getLogger("otce_ray")
IMAGES_PER_SHARD = 32  # default shard size: a few minutes of GPU work at most, so a retry loses little
RESOURCE_WAIT_SECONDS = 3600.0  # queued shards fail when no worker could start for this long
WAIT_REPORT_SECONDS = 60.0
# How a call ends when its worker (or the node under it) is gone: the shard is retried on another worker.
LOST_WORKER = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError)


@dataclass
class ExtractionSummary:
    """Outcome of one (model, dataset) pair: ``status`` is "ok", "cached" (already complete) or "failed".

    ``timings`` sums the shards' phase seconds (see ``ShardResult``); ``model_loads`` counts the loads it caused.
    """

    model: str
    dataset: str
    status: str
    rows: int = 0
    images: int = 0
    shards_written: int = 0
    shards_reused: int = 0
    seconds: float = 0.0
    error: str | None = None
    key: str | None = None
    skipped_files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    model_loads: int = 0
    feature_dim: int | None = None
    logit_dim: int | None = None
    started_at: float | None = None  # wall clock (epoch seconds) of its first shard's dispatch, and of its last result
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StorePlan:
    """One (model, dataset) store to fill: what decides its content, and the files of each of its shards."""

    request: ExtractionRequest
    shards: tuple[SegmentationDataset, ...]

    @property
    def model(self) -> str:
        return self.request.model.name


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


def plan_store(
    spec: ModelSpec,
    dataset: SegmentationDataset,
    store: str,
    *,
    pixels_per_image: int,
    seed: int,
    num_shards: int | None,
    feature_dtype: str,
    model_identity: Mapping[str, Any],
    dataset_fingerprint: str,
    allowed_entrypoints: Sequence[str] | None = None,
) -> StorePlan | ExtractionSummary:
    """The plan for one pair, or its final summary when its store is already complete for the same settings."""
    try:
        if len(dataset) == 0:
            raise ValueError(f"dataset {dataset.name!r} has no images")
        shards = min(len(dataset), num_shards or math.ceil(len(dataset) / IMAGES_PER_SHARD))
        request = ExtractionRequest(
            model=spec, dataset=dataset.name, dataset_fingerprint=dataset_fingerprint, store=store,
            pixels_per_image=pixels_per_image, seed=seed, num_shards=shards, feature_dtype=feature_dtype,
            model_identity=dict(model_identity),
            allowed_entrypoints=None if allowed_entrypoints is None else tuple(allowed_entrypoints),
        )
        manifest = read_manifest(store, dataset.name, spec.name, request.key)
        if manifest is not None:
            return ExtractionSummary(
                spec.name, dataset.name, "cached", manifest["rows"], manifest["images"], 0, len(manifest["parts"]),
                key=request.key, feature_dim=manifest.get("feature_dim"), logit_dim=manifest.get("logit_dim"),
            )
    except Exception as error:  # noqa: BLE001 - this pair fails, the run goes on
        return ExtractionSummary(spec.name, dataset.name, "failed", error=describe(spec.name, error))
    return StorePlan(request, tuple(dataset.shard(index, shards) for index in range(shards)))


def describe(model: str, error: BaseException) -> str:
    """An error as recorded against a model: a ModelError already names it."""
    return str(error) if isinstance(error, ModelError) else f"model {model!r}: {type(error).__name__}: {error}"


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
            shards.extend((job, shard) for shard in range(len(job.shards)))
            job.queued += len(job.shards)
            self._queued += len(job.shards)

    def idle(self) -> bool:
        return self._queued == 0 and not self._manifests

    def start(self) -> list[Call]:
        calls = self._write_manifests()
        calls += self.pool.grow(self._queued + self._running) if self._queued else []
        self._check_waiting()
        for worker in self.pool.free():
            while self._queued and worker.busy < self.pool.settings.concurrency:
                calls.append(self._send(worker, *self._take(worker.model)))
        if not self._queued and not self._running:
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
            cause = getattr(error, "cause", None) or error
            summary.status, summary.error = "failed", f"model {summary.model!r}: cannot write manifest: {cause}"
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
        if isinstance(error, LOST_WORKER):
            self.pool.lose(index)
            job.attempts[shard] += 1
            if job.attempts[shard] <= self.max_retries and job.error is None:
                logger.warning("model %r: shard %d of %r lost with its worker (%s); retrying (%d/%d)", job.model,
                               shard, job.request.dataset, type(error).__name__, job.attempts[shard], self.max_retries)
                self._requeue(job, shard)
                return
            message = f"model {job.model!r}: shard {shard} task lost: {type(error).__name__}: {error}"
        else:
            message = f"model {job.model!r}: shard {shard} of {job.request.dataset!r}: {type(error).__name__}: {error}"
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
        complete = len(job.results) == len(job.shards)
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
    """A finished job's summary, and the manifest to write when all its shards succeeded."""
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
        started_at=job.started,
        finished_at=job.finished,
    )
    if job.error:
        return summary, None
    first = results[0]
    parts = [{"file": part_name(r.shard), "shard": r.shard, "rows": r.rows, "images": r.images} for r in results]
    body = request.metadata(first.feature_dim, first.logit_dim, summary.images, summary.rows, parts=parts)
    return summary, {"store": request.store, "body": body}


def run_extraction(
    model_specs: Sequence[ModelSpec | Mapping[str, Any]],
    dataset_specs_per_model: Mapping[str, Sequence[Mapping[str, Any]]],
    store: str,
    *,
    pixels_per_image: int = 1000,
    batch_size: int = 8,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    seed: int = 0,
    num_shards: int | None = None,
    max_workers: int | None = None,
    max_retries: int = 3,
    feature_dtype: str = "float16",
    decode_threads: int | None = None,
    allowed_entrypoints: Sequence[str] | None = None,
) -> list[ExtractionSummary]:
    """Fill ``{store}/{dataset}/{model}`` for every model and each of its datasets; one summary per pair, in order.

    Each dataset is listed once. ``num_shards`` None splits each dataset into shards of about ``IMAGES_PER_SHARD``
    images; ``max_workers`` None runs as many workers as the cluster can; ``allowed_entrypoints`` (module prefixes)
    restricts the Python entrypoints workers may import. Never raises for a bad model or dataset.
    """
    from otce_ray.cluster import Cluster, drive
    from otce_ray.datasets import open_datasets

    if pixels_per_image < 1 or batch_size < 1 or num_gpus < 0 or max_retries < 0:
        raise ValueError("pixels_per_image and batch_size must be >= 1, num_gpus and max_retries >= 0")
    if feature_dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature_dtype must be one of {sorted(FEATURE_DTYPES)}, got {feature_dtype!r}")
    if not ray.is_initialized():
        ray.init()
    cluster = Cluster()
    check_gpus(num_gpus, cluster.view.largest("GPU"), "extraction.num_gpus")
    datasets = open_datasets(spec for specs in dataset_specs_per_model.values() for spec in specs)
    planned: list[StorePlan | ExtractionSummary] = []
    for entry in model_specs:
        name = entry.name if isinstance(entry, ModelSpec) else _name_of(entry)
        wanted = [_name_of(spec) for spec in dataset_specs_per_model.get(name, ())]
        try:
            spec = ModelSpec.from_dict(entry)
            identity = model_identity(spec)
        except ValueError as error:
            planned.extend(ExtractionSummary(name, dataset, "failed", error=describe(name, error))
                           for dataset in wanted or ["-"])
            continue
        for dataset_name in wanted:
            dataset = datasets[dataset_name]
            if isinstance(dataset, Exception):
                planned.append(ExtractionSummary(name, dataset_name, "failed", error=f"model {name!r}: {dataset}"))
                continue
            planned.append(plan_store(spec, dataset, store, pixels_per_image=pixels_per_image, seed=seed,
                                      num_shards=num_shards, feature_dtype=feature_dtype, model_identity=identity,
                                      dataset_fingerprint=dataset.fingerprint,
                                      allowed_entrypoints=allowed_entrypoints))
    done: dict[tuple[str, str], ExtractionSummary] = {}
    pool = WorkerPool(WorkerSettings(num_gpus, num_cpus, max_workers, decode_threads), cluster)
    jobs = ExtractionJobs(pool, batch_size=batch_size, max_retries=max_retries,
                          on_store=lambda summary: done.__setitem__((summary.model, summary.dataset), summary))
    jobs.add(plan for plan in planned if isinstance(plan, StorePlan))
    try:
        drive([jobs])
    finally:
        pool.shutdown()
    return [plan if isinstance(plan, ExtractionSummary) else done[(plan.model, plan.request.dataset)]
            for plan in planned]


def extract_model(model_spec: ModelSpec | Mapping[str, Any], dataset_spec: Mapping[str, Any], store: str,
                  **options: Any) -> ExtractionSummary:
    """Extract one model on one dataset into ``store`` (see ``run_extraction`` for the options)."""
    spec = ModelSpec.from_dict(model_spec)
    return run_extraction([spec], {spec.name: [dataset_spec]}, store, **options)[0]


def _name_of(entry: Any) -> str:
    """The 'name' of a model or dataset entry, even a malformed one, for its summary."""
    return str(entry.get("name", "?")) if isinstance(entry, Mapping) else "?"
