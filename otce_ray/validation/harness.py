"""One benchmark seed of the validation, step by step, under ``{work}/seed{seed}/``.

``run_seed`` writes the seed's benchmark and cross-task targets, trains every source model (two processes at a
time, one thread each), then for each (experiment, target) runs the OTCE job on the leakage-free target (the
``train_images`` images fine-tuning trains on: it extracts the pixel stores and computes the baselines) and
fine-tunes every source once per fine-tuning seed on exactly those images, evaluating on the others. Everything is
reused by a rerun: files that exist are not written again, the job reuses its recorded results, a ground truth
already written is read back.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from otce_ray.config import parse_config
from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth import write_benchmark
from otce_ray.finetune import ground_truth, training_target
from otce_ray.models import ModelSpec
from otce_ray.validation.grid import Pair
from otce_ray.validation.plan import EXPERIMENTS, Plan, Source, Target
from otce_ray.validation.tasks import task_spec, write_task_target
from otce_ray.zoo import city_spec
from otce_ray.zoo.training import TRAINING

TIMINGS = "timings.jsonl"
# The pipeline run's own OTCE column and its JC-OTCE baseline at fixed settings (the engine's defaults before this
# study chose new ones), so that a change of those defaults never re-scores the baselines of a resumed run.
PIPELINE_OTCE = {"epsilon": 0.05, "standardise": False}


def seed_dir(work: Path, seed: int) -> Path:
    return Path(work) / f"seed{seed}"


def target_dir(work: Path, seed: int, experiment: str, target: Target) -> Path:
    return seed_dir(work, seed) / experiment / target.name


def truth_path(work: Path, seed: int, experiment: str, target: Target, finetune_seed: int) -> Path:
    return target_dir(work, seed, experiment, target) / f"ground_truth_seed{finetune_seed}.csv"


def full_target(plan: Plan, seed: int, work: Path, target: Target) -> dict[str, Any]:
    """Every image of the target (the fine-tuning split's pool); scoring sees only ``scored_target``'s."""
    here = seed_dir(work, seed)
    if target.task == "same":
        return {**city_spec(target.city, str(here / "benchmark")), "seed": seed}
    return {**task_spec(str(here / "tasks" / target.name), target.city, target.task), "seed": seed}


def scored_target(plan: Plan, seed: int, work: Path, target: Target) -> dict[str, Any]:
    """The leakage-free target: the seeded ``train_images`` subset that fine-tuning trains on."""
    return training_target(full_target(plan, seed, work, target), plan.train_images)


def model_entry(source: Source, weights: Path, benchmark: str) -> dict[str, Any]:
    """The run-config model entry of a trained source."""
    return {"name": source.name, "format": "builtin", "architecture": source.architecture,
            "kwargs": dict(source.kwargs), "checkpoint": str(weights / f"{source.name}.pt"),
            "source": city_spec(source.city, benchmark)}


def target_config(plan: Plan, seed: int, work: Path, experiment: str, target: Target) -> dict[str, Any]:
    """The run config of one (experiment, target): one pixel store per seed, one output folder per target."""
    here = seed_dir(work, seed)
    benchmark = str(here / "benchmark")
    return {
        "store": str(here / "store"),
        "output": str(target_dir(work, seed, experiment, target)),
        "target": scored_target(plan, seed, work, target),
        "models": [model_entry(s, here / "weights", benchmark) for s in plan.sources_for(experiment, target)],
        "otce": {"n_pixels": plan.n_pixels, "repeats": plan.repeats, "seed": 0, **PIPELINE_OTCE},
        "extraction": {"pixels_per_image": plan.pixels_per_image, "num_gpus": 0},
        "baselines": {"n_pixels": plan.n_pixels},
    }


def write_data(plan: Plan, seed: int, work: Path) -> None:
    """The seed's benchmark and cross-task targets, unless already written."""
    here = seed_dir(work, seed)
    if not (here / "benchmark" / "benchmark.json").exists():
        write_benchmark(str(here / "benchmark"), plan.cities, plan.images_per_city, plan.size, seed)
    for target in plan.targets_of("cross"):
        root = here / "tasks" / target.name
        done = root / "done"
        if not done.exists():
            write_task_target(str(root), target.city, target.task, seed, plan.images_per_city, plan.size)
            done.write_text("")


def _train_task(task: tuple[Source, str, str, int, dict[str, Any]]) -> tuple[str, float]:
    """Train and save one source in a worker process (one thread, a seed derived from the benchmark seed and name)."""
    import torch

    from otce_ray.zoo.training import train

    source, benchmark, checkpoint, seed, training = task
    torch.set_num_threads(1)
    started = time.perf_counter()
    entry = {"name": source.name, "format": "builtin", "architecture": source.architecture,
             "kwargs": dict(source.kwargs), "init_seed": seed + zlib.crc32(source.name.encode())}
    module = train(ModelSpec.from_dict(entry), list(open_dataset(city_spec(source.city, benchmark))), training)
    torch.save(module.state_dict(), checkpoint + ".partial")
    Path(checkpoint + ".partial").replace(checkpoint)  # a killed run never leaves a truncated checkpoint
    return source.name, time.perf_counter() - started


def train_sources(plan: Plan, seed: int, work: Path) -> dict[str, float]:
    """Train the sources whose checkpoint is missing, ``plan.workers`` at a time; seconds per trained model."""
    here = seed_dir(work, seed)
    weights = here / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    training = {**TRAINING, "steps": plan.training_steps}
    todo = [(s, str(here / "benchmark"), str(weights / f"{s.name}.pt"), seed, training)
            for s in plan.all_sources() if not (weights / f"{s.name}.pt").exists()]
    if not todo:
        return {}
    with multiprocessing.get_context("spawn").Pool(max(1, min(plan.workers, len(todo)))) as pool:
        return dict(pool.imap_unordered(_train_task, todo))


def run_target(plan: Plan, seed: int, work: Path, experiment: str, target: Target) -> dict[str, Any]:
    """Leaderboard (stores and baselines) and the ground truth of every fine-tuning seed; returns the timings."""
    from otce_ray.pipeline import run

    raw = target_config(plan, seed, work, experiment, target)
    config = parse_config(raw, base_dir=str(work))
    started = time.perf_counter()
    run(config, progress=False)
    scored = time.perf_counter()
    for finetune_seed in plan.finetune_seeds:
        path = truth_path(work, seed, experiment, target, finetune_seed)
        if not path.exists():
            ground_truth(config, dataclasses.replace(plan.finetune, seed=finetune_seed), str(path))
    return {"seed": seed, "experiment": experiment, "target": target.name, "models": len(config.models),
            "score_seconds": round(scored - started, 1), "finetune_seconds": round(time.perf_counter() - scored, 1)}


def run_seed(plan: Plan, seed: int, work: Path, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Every step of one benchmark seed; appends this call's timings to ``{work}/seed{seed}/timings.jsonl``."""
    import ray

    here = seed_dir(work, seed)
    here.mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {"seed": seed}
    started = time.perf_counter()
    write_data(plan, seed, work)
    timings["data_seconds"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    timings["train_seconds_per_model"] = train_sources(plan, seed, work)
    timings["train_seconds"] = round(time.perf_counter() - started, 1)
    log(f"seed {seed}: data {timings['data_seconds']} s, trained {len(timings['train_seconds_per_model'])} models "
        f"in {timings['train_seconds']} s")
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address="local", num_cpus=plan.workers, log_to_driver=False, include_dashboard=False)
    steps = []
    try:
        for experiment in EXPERIMENTS:
            for target in plan.targets_of(experiment):
                steps.append(run_target(plan, seed, work, experiment, target))
                log(f"seed {seed} {experiment} {target.name}: {steps[-1]}")
    finally:
        if owns_ray:
            ray.shutdown()
    timings["targets"] = steps
    with open(here / TIMINGS, "a") as file:  # one line per call: a resumed run's reuse does not hide the first's
        file.write(json.dumps(timings) + "\n")
    return timings


def read_truth(plan: Plan, seed: int, work: Path, experiment: str, target: Target) -> pd.DataFrame:
    """One row per (model, fine-tuning seed): ``model``, ``finetune_seed``, ``log_likelihood``, ``miou``,
    ``pixel_accuracy``, ``status``."""
    frames = [pd.read_csv(truth_path(work, seed, experiment, target, s), dtype={"model": "string"})
              .assign(finetune_seed=s) for s in plan.finetune_seeds]
    return pd.concat(frames, ignore_index=True)[
        ["model", "finetune_seed", "log_likelihood", "miou", "pixel_accuracy", "status"]]


def pairs(plan: Plan, seed: int, work: Path, experiments: tuple[str, ...] = EXPERIMENTS) -> list[Pair]:
    """Every (source model, target) of the seed's run, for re-scoring from its stores."""
    store = str(seed_dir(work, seed) / "store")
    return [Pair(seed, experiment, target.name, source.name, source.city, store)
            for experiment in experiments for target in plan.targets_of(experiment)
            for source in plan.sources_for(experiment, target)]
