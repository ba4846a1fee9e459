"""Drive one run: plan it once, extract and score through one dispatch loop, write the leaderboard.

The run plan (``otce_ray.pipeline.plan``) lists each dataset once, decides which models a previous run already
recorded and what the others still need. Then one loop (``otce_ray.cluster.drive``) drives two sources side by side:
extraction (shards routed to long-lived workers that keep their model loaded) and scoring (K repeat tasks and a
baselines task per model, as soon as the model's stores are complete), so the repeats of early models run while
later models are still being extracted. Every model's result is recorded as soon as it is known
(``output/results/{model}.json``): a crash loses nothing finished, and a rerun with the same settings skips what is
recorded. A model that fails at any step becomes a failed row. What a user should know about a result (why a
baseline is NaN, an unconverged repeat, skipped files) is recorded with it; where the time went (per model: loading,
decoding, forward, writing) and what the cluster did are in ``run.json``.

With ``racing:`` the stages before the final one run first (``otce_ray.pipeline.racing``), on the same worker pool,
and the loop above then runs the final stage for the models still racing. With ``targets:`` every (model, target)
pair is planned, reused and scored on its own, a store shared by several pairs (a model's source) is extracted once,
and each target's run writes its files under ``output/{target}/``, beside the model x target matrix.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
import ray

from otce_ray.cluster import Cluster, DispatchStats, drive
from otce_ray.config import RunConfig, as_config
from otce_ray.extraction import ExtractionJobs, ExtractionSummary, StorePlan, WorkerPool, WorkerSettings
from otce_ray.datasets import class_names
from otce_ray.leaderboard import (
    ModelResult, build_leaderboard, per_class_table, write_leaderboard, write_per_class, write_run_json,
)
from otce_ray.leaderboard.decisions import DecisionSummary, summarise
from otce_ray.leaderboard.matrix import write_matrix
from otce_ray.pipeline.plan import RunPlan, make_plan, store_of, unique_stores
from otce_ray.pipeline.preflight import check_writable, claim_output
from otce_ray.pipeline.progress import Progress
from otce_ray.pipeline.racing import race
from otce_ray.pipeline.scoring import ScoredModel, ScoringJobs


def connect() -> bool:
    """Connect to the cluster in RAY_ADDRESS, or start a local Ray; True when this call started Ray."""
    if ray.is_initialized():
        return False
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=False)
    return True


def run(config: RunConfig, *, progress: bool = True, overwrite: bool = False) -> pd.DataFrame:
    """Run the whole job for ``config`` and return the leaderboard (also written to ``config.output``).

    Before any work: ``OutputError`` when the output or the store cannot be written, or when the output holds the
    results of a run with other settings and ``overwrite`` is off (``otce_ray.pipeline.preflight``).
    """
    started = time.perf_counter()
    views = config.per_target()
    for view in views.values():
        claim_output(view, overwrite)
    owns_ray = connect()
    try:
        cluster = Cluster()
        plan = make_plan(config, cluster.view)
        bar = Progress(total=len(plan.models), done=len(plan.by_action("reuse")), enabled=progress)
        recorded = {(model.target, model.name): model.result for model in plan.by_action("reuse")}
        pool = WorkerPool(_worker_settings(plan), cluster)
        try:
            final, racing = race(plan, cluster, pool, bar, recorded) if config.racing else (plan, {})
            details = _execute(final, cluster, pool, bar, recorded)
        finally:
            pool.shutdown()
        bar.close()
        boards = {}
        for name, view in views.items():
            results = [recorded[(name, spec["name"])] for spec in config.models]
            boards[name], decisions = publish(view, results)
            pairs = [model for model in plan.models if model.target == name]
            timings = {"total_seconds": time.perf_counter() - started,
                       "models_run": sum(model.action == "run" for model in pairs),
                       "models_reused": sum(model.action == "reuse" for model in pairs)}
            sections = {"racing": racing[name]} if racing else {}
            write_run_json(view.output, view.to_dict(), timings, {r.model: r.warnings for r in results},
                           plan=plan.summary(), decisions=decisions.to_dict(), **details, **sections)
        if not config.targets:
            return boards[config.target["name"]]
        write_matrix(config.output, boards)
        return pd.concat([board.assign(target=name)[["target", *board.columns]] for name, board in boards.items()],
                         ignore_index=True)
    finally:
        if owns_ray:
            ray.shutdown()


def rank(config: RunConfig | Mapping[str, Any] | str | os.PathLike, *, overwrite: bool = False,
         progress: bool = False) -> pd.DataFrame:
    """Rank the models of a run config by OTCE transferability and return the leaderboard, for notebooks.

    The whole run of ``otce-ray score``: extract what the pixel stores lack, score, write the leaderboard files and
    ``run.json`` to the config's ``output``; a rerun reuses every recorded result.

    Parameters
    ----------
    config : RunConfig, mapping or path
        A ``RunConfig``; a mapping as the YAML file would hold (relative paths from the working directory); or
        the path of a YAML run config, local or ``s3://``.
    overwrite : bool, default False
        Write into an output that holds the results of a run with other settings.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per model, best first (the columns of ``otce_ray.leaderboard.columns``): ``otce`` with its 95%
        interval, ``p_best``, ``p_top_k``, the baseline metrics, ``consensus``, ``params``, ``prior``, ... With
        ``targets:``, every target's leaderboard one after the other, a ``target`` column first.

    Examples
    --------
    >>> import otce_ray
    >>> board = otce_ray.rank("run.yaml")  # doctest: +SKIP
    >>> board[["rank", "model", "otce", "p_best", "consensus"]].head()  # doctest: +SKIP
    """
    return run(as_config(config), progress=progress, overwrite=overwrite)


def publish(config: RunConfig, results: Sequence[ModelResult]) -> tuple[pd.DataFrame, DecisionSummary]:
    """Build the leaderboard of ``results`` (priors from the config's model entries, decisions under its
    ``decisions`` settings) and write its files and ``per_class.csv`` to the output; the board and its summary."""
    board = build_leaderboard(results, {spec["name"]: spec.get("prior") for spec in config.models}, config.decisions)
    decisions = summarise(board, config.decisions)
    names = class_names(config.target["format"])
    write_leaderboard(config.output, board, results, names, decisions)
    write_per_class(config.output, per_class_table(results, names))
    return board, decisions


def _execute(plan: RunPlan, cluster: Cluster, pool: WorkerPool, bar: Progress,
             results: dict[tuple[str, str], ModelResult]) -> dict[str, Any]:
    """Extract and score every (model, target) pair the plan runs, adding its result to ``results`` (by target and
    model); returns what run.json records about the run. A store is extracted once for all the pairs that read it."""
    config = plan.config
    outputs = {name: view.output for name, view in plan.views.items()}
    readers: dict[tuple[str, str], list[ScoredModel]] = defaultdict(list)  # (model, dataset) -> the pairs reading it
    summaries: dict[tuple[str, str], ExtractionSummary] = {}
    waiting: dict[ScoredModel, int] = {}

    def on_result(model: ScoredModel, result: ModelResult) -> None:
        results[(model.target, model.name)] = result
        bar.scored(failed=result.status == "failed")

    scoring = ScoringJobs(config, plan.resources, cluster, on_result)

    def on_store(summary: ExtractionSummary) -> None:
        summaries[(summary.model, summary.dataset)] = summary
        for model in readers[(summary.model, summary.dataset)]:
            model.stores[summary.dataset] = summary
            waiting[model] -= 1
            if waiting[model] == 0:
                errors = [s.error for s in model.stores.values() if s.status == "failed"]
                model.error = "; ".join(errors) or None
                bar.extracted()
                scoring.ready(model)

    extraction = ExtractionJobs(pool, batch_size=config.extraction.batch_size, on_store=on_store,
                                resource_wait_seconds=config.cluster.resource_wait_seconds)
    for model_plan in plan.models:
        output = outputs[model_plan.target]
        if model_plan.action == "fail":
            scoring.finish(ScoredModel(model_plan.spec, "", model_plan.target, output, error=model_plan.error))
        elif model_plan.action == "run":
            model = ScoredModel(model_plan.spec, model_plan.fingerprint, model_plan.target, output)
            waiting[model] = len(model_plan.stores)
            for store in model_plan.stores:
                readers[store_of(store)].append(model)
            scoring.expect(1)
    stores = unique_stores(plan.by_action("run"))
    extraction.add(store for store in stores if isinstance(store, StorePlan))
    for store in stores:  # stores already complete (or failed to plan) are reported now
        if isinstance(store, ExtractionSummary):
            on_store(store)
    stats = drive([extraction, scoring], stuck_seconds=config.cluster.stuck_task_seconds)
    by_model: dict[str, list[ExtractionSummary]] = defaultdict(list)
    skipped: dict[str, set[str]] = {}
    for summary in summaries.values():
        by_model[summary.model].append(summary)
        skipped.setdefault(summary.dataset, set()).update(summary.skipped_files)
    return {"extraction": {model: _extraction_record(found) for model, found in by_model.items()},
            "dispatch": _dispatch_record(stats, pool, scoring),
            "skipped_files": {dataset: sorted(files) for dataset, files in sorted(skipped.items()) if files}}


def extract(config: RunConfig) -> list[ExtractionSummary]:
    """Fill the pixel stores of every model (on its source and the target) without scoring: ``jobs/extract.py``.

    One summary per (model, dataset) in config order; a model that cannot be planned gets one failed summary.
    ``OutputError`` before any work when the store cannot be written.
    """
    check_writable(config.store, "store")
    owns_ray = connect()
    try:
        cluster = Cluster()
        plan = make_plan(config, cluster.view, reuse=False)
        done: dict[tuple[str, str], ExtractionSummary] = {}
        pool = WorkerPool(_worker_settings(plan), cluster)
        extraction = ExtractionJobs(pool, batch_size=config.extraction.batch_size,
                                    resource_wait_seconds=config.cluster.resource_wait_seconds,
                                    on_store=lambda summary: done.__setitem__((summary.model, summary.dataset),
                                                                              summary))
        extraction.add(store for store in unique_stores(plan.models) if isinstance(store, StorePlan))
        try:
            drive([extraction], stuck_seconds=config.cluster.stuck_task_seconds)
        finally:
            pool.shutdown()
        summaries: dict[tuple[str, str], ExtractionSummary] = {}
        for model_plan in plan.models:  # a store shared by a model's targets, or a failure of them all, once
            if model_plan.action == "fail":
                summaries.setdefault((model_plan.name, str(model_plan.error)),
                                     ExtractionSummary(model_plan.name, "-", "failed", error=model_plan.error))
            for store in model_plan.stores:
                summaries.setdefault(store_of(store), store if isinstance(store, ExtractionSummary)
                                     else done[store_of(store)])
        return list(summaries.values())
    finally:
        if owns_ray:
            ray.shutdown()


def _worker_settings(plan: RunPlan) -> WorkerSettings:
    settings = plan.config.extraction
    return WorkerSettings(plan.resources.extraction_gpus, plan.resources.extraction_cpus, settings.max_workers,
                          settings.decode_threads)


def _extraction_record(summaries: Iterable[ExtractionSummary]) -> dict[str, Any]:
    """Where a model's extraction time went, summed over its stores' shards (seconds per phase, model loads)."""
    summaries = list(summaries)
    timings: Counter = Counter()
    for summary in summaries:
        timings.update(summary.timings)
    return {"seconds": round(sum(s.seconds for s in summaries), 3),
            "shards_written": sum(s.shards_written for s in summaries),
            "shards_reused": sum(s.shards_reused for s in summaries),
            "model_loads": sum(s.model_loads for s in summaries),
            "phases": {phase: round(seconds, 3) for phase, seconds in timings.items()}}


def _dispatch_record(stats: DispatchStats, pool: WorkerPool, scoring: ScoringJobs) -> dict[str, Any]:
    return {**stats.to_dict(), "extraction_workers_started": pool.started,
            "peak_resident_pixel_bytes": scoring.peak_resident}
