"""The ground-truth job: one Ray task per source model fine-tunes it on the target and scores it.

Fine-tuning trains on the images of the config's target spec (its ``max_images`` subset: what the scores saw) and
evaluates on other images of the same dataset (:mod:`otce_ray.finetune.split`). The target images are read once
on the driver and shared with every task through the object store. Tasks go through the run's dispatch loop
(``otce_ray.cluster.drive``): at most twice as many in flight as the cluster can run now, so hundreds of models do
not flood the scheduler, and every wait is bounded. A model that fails becomes a failed row and the others go on.
The table is written as ``ground_truth.csv`` (local or s3://), by default to the run's output folder next to the
leaderboard it is compared with.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import ray

from otce_ray import fs
from otce_ray.cluster import Cluster, Tasks, check_gpus, demand, drive, resolve_num_gpus
from otce_ray.config import RunConfig
from otce_ray.finetune.split import TargetSplit, split_target
from otce_ray.leaderboard.writers import csv_bytes
from otce_ray.finetune.train import FineTuneRecord, FineTuneSettings, finetune_or_fail
from otce_ray.pipeline.run import connect

GROUND_TRUTH_FILE = "ground_truth.csv"
COLUMNS = [field.name for field in dataclasses.fields(FineTuneRecord)]


def ground_truth(config: RunConfig, settings: FineTuneSettings, out: str | None = None) -> pd.DataFrame:
    """Fine-tune every model of ``config`` on its target; write and return the table (one row per model, in order).

    GPUs per task follow the config's extraction setting (:func:`otce_ray.cluster.resolve_num_gpus`); on CPU each
    task takes ``settings.threads`` cores.
    """
    owns_ray = connect()
    try:
        records: dict[str, FineTuneRecord] = {}
        split = split_target(config.one_target("finetune"), settings.train_images, settings.eval_images)
        finetune_each(config, config.models, split, settings, lambda record: records.__setitem__(record.model, record))
        rows = [dataclasses.asdict(records[spec["name"]]) for spec in config.models]
        table = pd.DataFrame(rows, columns=COLUMNS)
        fs.write_bytes_atomic(out or fs.join(config.output, GROUND_TRUTH_FILE), csv_bytes(table))
        return table
    finally:
        if owns_ray:
            ray.shutdown()


def finetune_each(config: RunConfig, specs: Sequence[Mapping[str, Any]], split: TargetSplit,
                  settings: FineTuneSettings, on_record: Callable[[FineTuneRecord], None]) -> None:
    """Fine-tune each of ``specs`` on ``split`` as Ray tasks through the dispatch loop (Ray must be up), handing
    each model's record to ``on_record`` as soon as it is in: a model that fails, or whose task is lost, is a failed
    record. ``split`` is put in the object store once and shared by every task."""
    cluster = Cluster()
    num_gpus = resolve_num_gpus(config.extraction.num_gpus, cluster.view.total("GPU"))
    check_gpus(num_gpus, cluster.view.largest("GPU"), "extraction.num_gpus")
    task = ray.remote(finetune_or_fail).options(num_cpus=settings.threads, num_gpus=num_gpus, max_retries=2)
    shared = ray.put(split)
    device = "cuda" if num_gpus > 0 else "cpu"

    def submit(spec: Mapping[str, Any]) -> Callable[[], ray.ObjectRef]:
        return lambda: task.remote(spec, shared, settings, device, config.allowed_entrypoints)

    def lost(name: str, error: BaseException) -> None:  # the worker died more often than max_retries allows
        on_record(FineTuneRecord(name, status="failed", error=f"model {name!r}: fine-tuning task lost: {error}"))

    slots = demand(settings.threads, num_gpus)
    items = [(spec["name"], submit(spec), f"fine-tuning of model {spec['name']!r}") for spec in specs]
    drive([Tasks("finetune", items, lambda: max(1, 2 * cluster.view.slots(slots)),
                 lambda _name, record: on_record(record), lost)], stuck_seconds=config.cluster.stuck_task_seconds)
