"""Drive one run: reuse finished models, extract the rest, score K repeats per model on Ray, write the leaderboard.

Each model gets K repeat tasks and, when baselines are configured, one task computing them on its own sample (their
failure leaves NaN columns, never fails the model). Extraction runs in a driver thread, a chunk of models at a
time, and hands each extracted model to the scoring loop at once, so the repeats of early models run while later
models are still being extracted. Every model's
result is recorded as soon as it is known (``output/results/{model}.json``): a crash loses nothing finished, and a
rerun with the same settings skips what is recorded. A model that fails at any step becomes a failed row.

Each of a model's pixel stores is read once, by one loader task started when the model's first scoring task is
dispatched; its tasks take their seeded samples from that object (see ``otce_ray.pipeline.repeat``). The object
holds the union of the model's samples (at most K x n_pixels rows per side plus the baselines' sample; less for a
small store), not the whole store, and the driver lets go of it when the model's result is recorded. Tasks are
dispatched in model order with at most ``_scoring_cap`` in flight, so the models holding pixels in the object store
at once are those with tasks in flight plus the one being dispatched: about cap / (K + 1) + 1, never more than
cap + 1, however many models the run has. What a user should know about a result (why a baseline is NaN, an
unconverged repeat) is recorded with it.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import pandas as pd
import ray

from otce_ray.config import RunConfig, check_gpus, resolve_num_gpus
from otce_ray.extraction import ExtractionSummary, run_extraction
from otce_ray.leaderboard import (
    ModelResult, build_leaderboard, load_results, record_result, write_leaderboard, write_run_json,
)
from otce_ray.pipeline.progress import Progress
from otce_ray.pipeline.repeat import WARNING_CHARS, score_baselines, score_repeat, store_reads
from otce_ray.store import StoreError, read_samples

logger = logging.getLogger(__name__)
EXTRACTION_CHUNK = 8  # models whose shards are dispatched together: enough to fill a cluster, small to overlap


@dataclass
class _Extracted:
    model: str
    seconds: float
    error: str | None


BASELINES = "baselines"  # the task key of a model's baseline metrics; repeats are keyed by their index


@dataclass
class _Model:
    spec: dict
    fingerprint: str
    extract_seconds: float = 0.0
    records: dict[int, dict] = field(default_factory=dict)
    metrics: dict[str, float] | None = None  # None until the baselines task (if any) returns
    baseline_warnings: list[str] = field(default_factory=list)
    error: str | None = None
    pixels: tuple[Any, Any] | None = None  # refs to its source and target pixels while its tasks run

    @property
    def name(self) -> str:
        return self.spec["name"]

    def done(self, config: RunConfig) -> bool:
        waiting_for_metrics = self.metrics is None and bool(config.baselines.names())
        return len(self.records) == config.otce.repeats and not waiting_for_metrics


def connect() -> bool:
    """Connect to the cluster in RAY_ADDRESS, or start a local Ray; True when this call started Ray."""
    if ray.is_initialized():
        return False
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=False)
    return True


def run(config: RunConfig, *, progress: bool = True) -> pd.DataFrame:
    """Run the whole job for ``config`` and return the leaderboard (also written to ``config.output``)."""
    started = time.perf_counter()
    owns_ray = connect()
    try:
        todo, reused = _plan(config)
        bar = Progress(total=len(config.models), done=len(config.models) - len(todo), enabled=progress)
        _extract_and_score(config, todo, bar)
        bar.close()
        names = {spec["name"] for spec in config.models}
        results = [r for r in load_results(config.output) if r.model in names]
        board = build_leaderboard(results)
        write_leaderboard(config.output, board)
        write_run_json(config.output, config.to_dict(), {"total_seconds": time.perf_counter() - started,
                                                          "models_run": len(todo), "models_reused": reused},
                       {r.model: r.warnings for r in results})
        return board
    finally:
        if owns_ray:
            ray.shutdown()


def _plan(config: RunConfig) -> tuple[list[_Model], int]:
    """Models still to run, and how many finished ones a previous run recorded with the same fingerprint."""
    previous = {result.model: result for result in load_results(config.output)}
    todo, reused = [], 0
    for spec in config.models:
        try:
            fingerprint = config.model_fingerprint(spec["name"])
        except ValueError as error:  # e.g. its files cannot be reached: the model fails, the run goes on
            model = _Model(spec, fingerprint="", error=str(error))
            _finish(config, model, bar=None)
            continue
        done = previous.get(spec["name"])
        if done is not None and done.status == "ok" and done.fingerprint == fingerprint:
            reused += 1
        else:
            todo.append(_Model(spec, fingerprint))
    return todo, reused


def _extract_and_score(config: RunConfig, todo: Sequence[_Model], bar: Progress) -> None:
    if not todo:
        return
    device, score_gpus = _scoring_device(config)
    options = dict(num_cpus=1, num_gpus=score_gpus, max_retries=2)
    repeat_task = ray.remote(score_repeat).options(**options)
    baseline_task = ray.remote(score_baselines).options(**options)
    load_task = ray.remote(read_samples).options(num_cpus=1, max_retries=2)
    tasks = [*range(config.otce.repeats), *([BASELINES] if config.baselines.names() else [])]
    models = {model.name: model for model in todo}
    extracted: queue.Queue = queue.Queue()
    worker = threading.Thread(
        target=_extract_in_background,
        args=(config, [model.spec for model in todo], _extraction_gpus(config), extracted),
        daemon=True,
    )
    worker.start()
    waiting: deque[tuple[str, int | str]] = deque()
    in_flight: dict[Any, tuple[str, int | str]] = {}
    extracting = True
    while extracting or waiting or in_flight:
        for item in _drain(extracted, block=not (waiting or in_flight)):
            if item is None:
                extracting = False
            elif isinstance(item, BaseException):
                raise item
            else:
                model = models[item.model]
                model.extract_seconds = item.seconds
                bar.extracted()
                if item.error:
                    model.error = item.error
                    _finish(config, model, bar)
                else:
                    waiting.extend((model.name, task) for task in tasks)
        while waiting and len(in_flight) < _scoring_cap(config):
            name, task = waiting.popleft()
            model = models[name]
            if model.error is None:
                if model.pixels is None:  # its first task: read each of its stores now, once for all its tasks
                    model.pixels = _load_pixels(config, model, load_task)
                ref = (baseline_task.remote(*model.pixels, config.baselines, config.otce, device) if task == BASELINES
                       else repeat_task.remote(*model.pixels, config.otce, task, device))
                in_flight[ref] = (name, task)
        if in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.2)
            for ref in ready:
                _collect(config, models, in_flight.pop(ref), ref, bar)
    worker.join()


def _load_pixels(config: RunConfig, model: _Model, load_task: Any) -> tuple[Any, Any]:
    """Start one loader task per store of ``model``; refs to its (source, target) pixels, the same ref twice when
    the model was trained on the target dataset itself."""
    source, target = model.spec["source"]["name"], config.target["name"]
    refs = {dataset: load_task.remote(config.store, dataset, model.name, samples, with_logits=with_logits)
            for dataset, (samples, with_logits) in store_reads(source, target, config.otce, config.baselines).items()}
    return refs[source], refs[target]


def _scoring_device(config: RunConfig) -> tuple[str, float]:
    """The device repeat tasks solve on and the GPUs each asks for: ``device: cpu`` never holds a GPU."""
    if config.scoring.device == "cpu":
        return "cpu", 0.0
    gpus = resolve_num_gpus(config.scoring.num_gpus, ray.cluster_resources().get("GPU", 0))
    if gpus == 0 and config.scoring.device == "cuda":
        raise ValueError("scoring.device is 'cuda' but the Ray cluster has no GPU: set scoring.num_gpus explicitly "
                         "on an autoscaling cluster, or use device 'auto'")
    check_gpus(gpus, ray.cluster_resources().get("GPU", 0), "scoring.num_gpus")
    return (config.scoring.device if gpus > 0 else "cpu"), gpus


def _scoring_cap(config: RunConfig) -> int:
    """Scoring tasks in flight: the configured cap, or twice the CPUs the cluster has now (it may grow)."""
    return config.scoring.max_in_flight or max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))


def _drain(items: queue.Queue, block: bool) -> Iterator[Any]:
    try:
        yield items.get(timeout=0.2) if block else items.get_nowait()
        while True:
            yield items.get_nowait()
    except queue.Empty:
        return


def _collect(config: RunConfig, models: dict[str, _Model], key: tuple[str, int | str], ref: Any,
             bar: Progress) -> None:
    name, task = key
    model = models[name]
    if model.error is not None:
        return  # already recorded as failed; later repeats are moot
    try:
        value = ray.get(ref)
    except Exception as error:  # noqa: BLE001 - a failed task fails its model (or its baselines), not the run
        cause = getattr(error, "cause", None) or error
        if task != BASELINES:
            step = "reading its pixels" if isinstance(cause, StoreError) else f"scoring repeat {task}"
            model.error = f"model {name!r}: {step} failed: {type(cause).__name__}: {cause}"
            _finish(config, model, bar)
            return
        logger.warning("model %r: baseline metrics failed (%s: %s); recorded as NaN", name, type(cause).__name__, cause)
        value = {"metrics": dict.fromkeys(config.baselines.names(), math.nan),
                 "warnings": [f"baselines failed, all NaN: {type(cause).__name__}: {cause}"[:WARNING_CHARS]]}
    if task == BASELINES:
        model.metrics = value["metrics"]
        model.baseline_warnings = list(value["warnings"])
    else:
        model.records[task] = value
    if model.done(config):
        _finish(config, model, bar)


def _finish(config: RunConfig, model: _Model, bar: Progress | None) -> None:
    """Record the model's result (ok with its repeat scores, or failed with its error), and let go of its pixels."""
    model.pixels = None
    records = [model.records[k] for k in sorted(model.records)]
    notes = [note for record in records for note in record.get("warnings", ())] + model.baseline_warnings
    common = dict(
        model=model.name, source=model.spec["source"]["name"], architecture=model.spec.get("architecture"),
        n_pixels=config.otce.n_pixels, solver=config.otce.solver, extract_seconds=model.extract_seconds,
        fingerprint=model.fingerprint, warnings=notes,
    )
    if model.error is not None:
        result = ModelResult(status="failed", error=model.error, **common)
    else:
        result = ModelResult(
            status="ok",
            scores=[record["score"] for record in records],
            epsilon=records[0]["epsilon_relative"],
            max_marginal_error=max(record["marginal_error"] for record in records),
            score_seconds=sum(record["seconds"] for record in records),
            metrics=model.metrics or {},
            **common,
        )
    record_result(config.output, result)
    if bar is not None:
        bar.scored(failed=model.error is not None)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def extract(config: RunConfig) -> list[ExtractionSummary]:
    """Fill the pixel stores of every model (on its source and the target) without scoring: ``jobs/extract.py``."""
    owns_ray = connect()
    try:
        return _extract_models(config, list(config.models), _extraction_gpus(config))
    finally:
        if owns_ray:
            ray.shutdown()


def _extraction_gpus(config: RunConfig) -> float:
    return resolve_num_gpus(config.extraction.num_gpus, ray.cluster_resources().get("GPU", 0))


def _extract_models(config: RunConfig, specs: Sequence[dict], num_gpus: float) -> list[ExtractionSummary]:
    settings = config.extraction
    return run_extraction(
        specs, {spec["name"]: _datasets_of(spec, config.target) for spec in specs}, config.store,
        pixels_per_image=settings.pixels_per_image, batch_size=settings.batch_size, num_gpus=num_gpus,
        seed=config.otce.seed, num_shards=settings.num_shards, max_in_flight=settings.max_in_flight,
    )


def _extract_in_background(config: RunConfig, specs: list[dict], num_gpus: float, out: queue.Queue) -> None:
    """Extract each model on its source and on the target; report each model once; end with None."""
    try:
        for chunk in _chunks(specs, EXTRACTION_CHUNK):
            summaries = _extract_models(config, chunk, num_gpus)
            for spec in chunk:
                mine = [summary for summary in summaries if summary.model == spec["name"]]
                errors = [summary.error for summary in mine if summary.status == "failed"]
                out.put(_Extracted(spec["name"], sum(s.seconds for s in mine), "; ".join(errors) or None))
    except BaseException as error:  # noqa: BLE001 - handed to the driver loop, which re-raises it
        out.put(error)
    finally:
        out.put(None)


def _datasets_of(spec: dict, target: dict) -> list[dict]:
    """The source and the target spec, once when the model was trained on the target dataset itself."""
    return [spec["source"]] if spec["source"]["name"] == target["name"] else [spec["source"], target]
