"""Scoring as a source of the dispatch loop: per model, one loader task per store, K repeat tasks, one baselines task.

A model enters when its stores are complete. Its first dispatched task starts its loader tasks (each reads its store
once, for all of the model's tasks; see ``otce_ray.pipeline.tasks``), its tasks take their samples from those
objects, and when its result is recorded the driver lets go of them. Two bounds keep the cluster healthy however
many models a run has: tasks in flight (twice the CPUs up now, or the configured cap) and the bytes of loaded
pixels held in the object store at once (``RESIDENT_FRACTION`` of it, estimated from each store's manifest before
its loaders start; a model larger than the budget alone still runs, alone). Every result is recorded as soon as it is
known (``output/results/{model}.json``, written by a tiny task so the loop never waits on storage), so a crash
loses nothing finished.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import ray

from otce_ray.cluster import Call, Cluster, one_line
from otce_ray.config import RunConfig
from otce_ray.extraction import ExtractionSummary
from otce_ray.leaderboard import ModelResult, record_result
from otce_ray.pipeline.plan import Resources
from otce_ray.leaderboard.results import WARNING_CHARS
from otce_ray.pipeline.tasks import score_baselines, store_reads
from otce_ray.scoring.repeat import RepeatRecord, score_repeat
from otce_ray.store import StoreError, read_samples, set_aside

logger = logging.getLogger("otce_ray")
BASELINES_TASK = "baselines"  # the task key of a model's baseline metrics; repeats are keyed by their index
RESIDENT_FRACTION = 0.5  # of the cluster's object store, for loaded pixels (the rest: task results, spilling slack)
LABEL_BYTES = 8  # int64 labels, per row
EXPONENT_BYTES = 2  # the feature and logit exponents of the row's part (int8 each)
FEATURE_BYTES = {"float16": 2, "float32": 4}


@dataclass(eq=False)
class ScoredModel:
    """One model on its way to a result record for one target (``output``: that target's run's output)."""

    spec: Mapping[str, Any]
    fingerprint: str
    target: str
    output: str
    stores: dict[str, ExtractionSummary] = field(default_factory=dict)  # dataset -> its store's summary
    records: dict[int, RepeatRecord] = field(default_factory=dict)
    metrics: dict[str, float] | None = None  # None until the baselines task (if any) returns
    baseline_warnings: list[str] = field(default_factory=list)
    error: str | None = None
    pixels: tuple[Any, Any] | None = None  # refs to its source and target pixels while its tasks run
    resident_bytes: int = 0
    tasks: deque = field(default_factory=deque)  # task keys not yet dispatched

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def extract_seconds(self) -> float:
        return sum(summary.seconds for summary in self.stores.values())


def in_flight_cap(config: RunConfig, resources: Resources, cluster: Cluster) -> int:
    """Repeat tasks in flight at most: ``scoring.max_in_flight``, or twice what the cluster runs at once now."""
    if config.scoring.max_in_flight:
        return config.scoring.max_in_flight
    return max(1, 2 * cluster.view.slots({"CPU": 1.0, "GPU": resources.scoring_gpus}))


def repeat_task(resources: Resources) -> Any:
    """The repeat unit as a Ray task with the run's resources (``score_repeat``: a repeat's record comes back)."""
    return ray.remote(score_repeat).options(num_cpus=1, num_gpus=resources.scoring_gpus, max_retries=2)


class ScoringJobs:
    """The scoring work of a run. ``expect`` announces models still being extracted, ``ready`` hands one over."""

    name = "scoring"

    def __init__(self, config: RunConfig, resources: Resources, cluster: Cluster,
                 on_result: Callable[[ScoredModel, ModelResult], None]) -> None:
        self.config = config
        self.resources = resources
        self.cluster = cluster
        self.on_result = on_result
        self._repeat = repeat_task(resources)
        self._baselines = ray.remote(score_baselines).options(num_cpus=1, num_gpus=resources.scoring_gpus,
                                                              max_retries=2)
        self._load = ray.remote(read_samples).options(num_cpus=1, max_retries=2)
        self._tasks = [*range(config.otce.repeats), *([BASELINES_TASK] if config.baselines.names() else [])]
        # result records are written by tiny tasks (no CPU asked), so the loop never waits on a PUT
        self._write = ray.remote(record_result).options(num_cpus=0, max_retries=3, retry_exceptions=True)
        self._records: list[tuple[ScoredModel, ModelResult]] = []
        self._queue: deque[ScoredModel] = deque()
        self._expected = 0
        self._in_flight = 0
        self.resident = 0
        self.peak_resident = 0

    # --- intake -----------------------------------------------------------------------------------------------------

    def expect(self, count: int) -> None:
        self._expected += count

    def ready(self, model: ScoredModel) -> None:
        """A model whose stores are all complete (or that failed on the way: it is recorded at once)."""
        self._expected -= 1
        if model.error is not None:
            self.finish(model)
            return
        model.tasks.extend(self._tasks)
        self._queue.append(model)

    # --- the dispatch-loop source -----------------------------------------------------------------------------------

    def idle(self) -> bool:
        return not self._queue and self._expected == 0 and not self._records

    def start(self) -> list[Call]:
        calls = [Call(("record", model, result), self._write.remote(model.output, result),
                      f"result record of model {model.name!r}") for model, result in self._records]
        self._records.clear()
        cap = self._cap()
        while self._queue and self._in_flight < cap:
            model = self._queue[0]
            if model.pixels is None and not self._admit(model):
                break
            task = model.tasks.popleft()
            if not model.tasks:
                self._queue.popleft()
            calls.append(self._submit(model, task))
        return calls

    def done(self, key: tuple, value: Any) -> None:
        if key[0] == "record":
            self.on_result(key[1], key[2])
            return
        self._in_flight -= 1
        self._collect(*key[1:], value)

    def failed(self, key: tuple, error: BaseException) -> None:
        if key[0] == "record":  # retried already: the model is scored, but its record is lost (logged, not reused)
            logger.error("model %r: its result record could not be written: %s", key[1].name, error)
            self.on_result(key[1], dataclasses.replace(key[2], status="failed",
                                                       error=f"record not written: {one_line(error)}"))
            return
        self._in_flight -= 1
        _, model, task = key
        cause = getattr(error, "cause", None) or error
        logger.warning("model %r: task %s failed: %s", model.name, task, error)  # the whole error, traceback too
        if task == BASELINES_TASK:  # the metrics are NaN, the model still has its OTCE
            note = f"baselines failed, all NaN: {one_line(error)}"[:WARNING_CHARS]
            self._collect(model, task, {"metrics": dict.fromkeys(self.config.baselines.names(), math.nan),
                                        "warnings": [note]})
        elif model.error is None:
            step = "reading its pixels" if isinstance(cause, StoreError) else f"scoring repeat {task}"
            model.error = f"model {model.name!r}: {step} failed: {one_line(error)}"
            if isinstance(cause, StoreError) and cause.damaged:
                set_aside(cause.damaged, str(cause))
                model.error += "; the store is set aside: the next run extracts it again"
            if model in self._queue:
                self._queue.remove(model)
            self.finish(model)

    def _collect(self, model: ScoredModel, task: int | str, value: Any) -> None:
        if model.error is not None:
            return  # already recorded as failed; later repeats are moot
        if task == BASELINES_TASK:
            model.metrics = value["metrics"]
            model.baseline_warnings = list(value["warnings"])
        else:
            model.records[task] = value
        waiting_for_metrics = model.metrics is None and BASELINES_TASK in self._tasks
        if len(model.records) == self.config.otce.repeats and not waiting_for_metrics:
            self.finish(model)

    # --- internals --------------------------------------------------------------------------------------------------

    def _cap(self) -> int:
        return in_flight_cap(self.config, self.resources, self.cluster)

    def _admit(self, model: ScoredModel) -> bool:
        """Start a model's loader tasks if its pixels fit the object-store budget next to those already held."""
        estimate = self._estimate(model)
        budget = RESIDENT_FRACTION * self.cluster.view.total("object_store_memory")
        if self.resident and self.resident + estimate > budget:
            return False
        model.resident_bytes = estimate
        self.resident += estimate
        self.peak_resident = max(self.peak_resident, self.resident)
        model.pixels = self._load_pixels(model)
        return True

    def _estimate(self, model: ScoredModel) -> int:
        """Bytes the loaded pixels of ``model`` take at most: rows held (the union of its samples, at most the store)
        times the row's bytes (features, and logits where read, in their stored dtype, and the label)."""
        reads = store_reads(model.spec["source"]["name"], model.target, self.config.otce, self.config.baselines)
        total = 0
        for dataset, (samples, with_logits) in reads.items():
            summary = model.stores[dataset]
            rows = min(summary.rows, sum(size for size, _ in samples))
            width = (summary.feature_dim or 0) + ((summary.logit_dim or 0) if with_logits else 0)
            total += rows * (width * FEATURE_BYTES["float16"] + LABEL_BYTES + EXPONENT_BYTES)
        return total

    def _load_pixels(self, model: ScoredModel) -> tuple[Any, Any]:
        """One loader task per store of ``model``; refs to its (source, target) pixels, the same ref twice when the
        model was trained on the target dataset itself."""
        source, target = model.spec["source"]["name"], model.target
        reads = store_reads(source, target, self.config.otce, self.config.baselines)
        refs = {dataset: self._load.remote(self.config.store, dataset, model.name, samples, with_logits=with_logits,
                                           key=model.stores[dataset].key)
                for dataset, (samples, with_logits) in reads.items()}
        return refs[source], refs[target]

    def _submit(self, model: ScoredModel, task: int | str) -> Call:
        device = self.resources.scoring_device
        if task == BASELINES_TASK:
            ref = self._baselines.remote(*model.pixels, self.config.baselines, self.config.otce, device)
            what = f"baseline metrics of model {model.name!r}"
        else:
            ref = self._repeat.remote(*model.pixels, self.config.otce, task, device)
            what = f"OTCE repeat {task} of model {model.name!r}"
        self._in_flight += 1
        return Call(("task", model, task), ref, what)

    def finish(self, model: ScoredModel) -> None:
        """Record the model's result (ok with its repeat scores, or failed with its error); let go of its pixels."""
        model.pixels = None
        self.resident -= model.resident_bytes
        model.resident_bytes = 0
        notes = model.baseline_warnings + [
            f"dataset {summary.dataset}: {len(summary.skipped_files)} file(s) skipped (on_error: skip), listed in "
            "run.json" for summary in model.stores.values() if summary.skipped_files]
        result = ModelResult.from_repeats(
            model=model.name, source=model.spec["source"]["name"], architecture=model.spec.get("architecture"),
            settings=self.config.otce, records=list(model.records.values()), metrics=model.metrics,
            notes=notes, error=model.error, extract_seconds=model.extract_seconds, fingerprint=model.fingerprint,
            params=next((s.params for s in model.stores.values() if s.params is not None), None))
        self._records.append((model, result))
