"""One benchmark seed of validation v3, step by step, under ``{work}/seed{seed}/``.

``run_seed`` writes the seed's benchmark (every city and shifted target it needs), trains every source model (two
processes at a time, one thread each) and measures it on its own city's held-out frames, then for each (experiment,
target) runs the OTCE job on the leakage-free target (the ``train_images`` images fine-tuning trains on: it
extracts the pixel stores and computes the baselines) and fine-tunes every source once per ground-truth replicate
on those images, evaluating on the others. Everything is reused by a rerun: files that exist are not written again,
the job reuses its recorded results, a ground truth already written is read back.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import zlib
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from otce_ray.config import parse_config
from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth import render_frame, write_benchmark
from otce_ray.finetune import ground_truth, training_target
from otce_ray.models import ModelSpec
from otce_ray.validation.grid import Pair
from otce_ray.validation.plan import EXPERIMENTS, PIPELINE_OTCE, Plan, Source, Target
from otce_ray.zoo import city_spec

TIMINGS = "timings.jsonl"


def seed_dir(work: Path, seed: int) -> Path:
    return Path(work) / f"seed{seed}"


def target_dir(work: Path, seed: int, experiment: str, target: Target) -> Path:
    return seed_dir(work, seed) / experiment / target.name


def truth_path(work: Path, seed: int, experiment: str, target: Target, replicate: int) -> Path:
    return target_dir(work, seed, experiment, target) / f"ground_truth_replicate{replicate}.csv"


def scored_target(plan: Plan, seed: int, work: Path, target: Target) -> dict[str, Any]:
    """The leakage-free target: the seeded ``train_images`` subset that fine-tuning trains on."""
    full = {**city_spec(target.name, str(seed_dir(work, seed) / "benchmark")), "seed": seed}
    return training_target(full, plan.train_images)


def model_entry(source: Source, weights: Path, benchmark: str) -> dict[str, Any]:
    """The run-config model entry of a trained source."""
    return {"name": source.name, "format": "builtin", "architecture": source.architecture,
            "kwargs": dict(source.kwargs), "checkpoint": str(weights / f"{source.name}.pt"),
            "source": city_spec(source.city, benchmark)}


def target_config(plan: Plan, seed: int, work: Path, experiment: str, target: Target) -> dict[str, Any]:
    """The run config of one (experiment, target): one pixel store per seed, one output folder per target."""
    here = seed_dir(work, seed)
    benchmark = str(here / "benchmark")
    sources = [source for source in plan.sources(experiment, seed) if source.city != target.city]
    return {
        "store": str(here / "store"),
        "output": str(target_dir(work, seed, experiment, target)),
        "target": scored_target(plan, seed, work, target),
        "models": [model_entry(source, here / "weights", benchmark) for source in sources],
        "otce": PIPELINE_OTCE,
        "extraction": {"pixels_per_image": plan.pixels_per_image, "num_gpus": 0},
        "baselines": {"n_pixels": PIPELINE_OTCE["n_pixels"]},
    }


def write_data(plan: Plan, seed: int, work: Path) -> None:
    """The seed's benchmark, unless already written."""
    root = seed_dir(work, seed) / "benchmark"
    if not (root / "benchmark.json").exists():
        plan.check(seed)
        write_benchmark(str(root), plan.cities(seed), plan.images_per_city, plan.size, seed)


def _train_task(task: tuple[Source, str, str, int, Plan]) -> tuple[str, float]:
    """Train, save and measure one source in a worker process (one thread; a seed from the benchmark seed and name)."""
    import torch

    from otce_ray.zoo.training import TRAINING, train

    source, benchmark, checkpoint, seed, plan = task
    torch.set_num_threads(1)
    started = time.perf_counter()
    entry = {"name": source.name, "format": "builtin", "architecture": source.architecture,
             "kwargs": dict(source.kwargs), "init_seed": seed + zlib.crc32(source.name.encode())}
    spec = ModelSpec.from_dict(entry)
    module = train(spec, list(open_dataset(city_spec(source.city, benchmark))), {**TRAINING, "steps": source.steps})
    seconds = time.perf_counter() - started
    facts = {"params": sum(p.numel() for p in module.parameters()), "train_seconds": round(seconds, 2),
             **_own_city_accuracy(spec, module, source.city, seed, plan)}
    torch.save(module.state_dict(), checkpoint + ".partial")
    Path(checkpoint).with_suffix(".json").write_text(json.dumps(facts))
    Path(checkpoint + ".partial").replace(checkpoint)  # last: a killed run never leaves a half-measured model
    return source.name, seconds


def _own_city_accuracy(spec: ModelSpec, module: Any, city: str, seed: int, plan: Plan) -> dict[str, float]:
    """The source's mIoU and pixel accuracy on held-out frames of its own city (frames it was not trained on): the
    "source accuracy" reference line, what a zoo's model card would report."""
    import numpy as np
    import torch

    from otce_ray.datasets.labels import CITYSCAPES_NUM_CLASSES, cityscapes_lookup
    from otce_ray.finetune.metrics import Evaluation
    from otce_ray.models import logits_of, to_input

    evaluation = Evaluation(CITYSCAPES_NUM_CLASSES)
    lookup = cityscapes_lookup()
    with torch.no_grad():
        for frame in range(plan.images_per_city, plan.images_per_city + plan.source_eval_images):
            image, label_ids = render_frame(city, frame, seed, plan.size)
            labels = torch.from_numpy(lookup.apply(label_ids, f"{city} frame {frame}")[None].astype(np.int64))
            evaluation.add(logits_of(module(to_input(spec, image[None], torch.device("cpu")))).float(), labels)
    scores = evaluation.scores()
    return {"source_miou": scores["miou"], "source_pixel_accuracy": scores["pixel_accuracy"]}


def train_sources(plan: Plan, seed: int, work: Path) -> dict[str, float]:
    """Train the sources whose checkpoint is missing, ``plan.workers`` at a time; seconds per trained model."""
    here = seed_dir(work, seed)
    weights = here / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    todo = [(source, str(here / "benchmark"), str(weights / f"{source.name}.pt"), seed, plan)
            for source in plan.all_sources(seed) if not (weights / f"{source.name}.pt").exists()]
    if not todo:
        return {}
    with multiprocessing.get_context("spawn").Pool(max(1, min(plan.workers, len(todo)))) as pool:
        return dict(pool.imap_unordered(_train_task, todo))


def run_target(plan: Plan, seed: int, work: Path, experiment: str, target: Target) -> dict[str, Any]:
    """Leaderboard (stores and baselines) and the ground truth of every replicate; returns the timings."""
    from otce_ray.pipeline import run

    config = parse_config(target_config(plan, seed, work, experiment, target), base_dir=str(work))
    started = time.perf_counter()
    run(config, progress=False)
    scored = time.perf_counter()
    for replicate in range(plan.replicates):
        path = truth_path(work, seed, experiment, target, replicate)
        if not path.exists():
            ground_truth(config, plan.finetune_settings(replicate), str(path))
    return {"seed": seed, "experiment": experiment, "target": target.name, "models": len(config.models),
            "score_seconds": round(scored - started, 1), "finetune_seconds": round(time.perf_counter() - scored, 1)}


def run_seed(plan: Plan, seed: int, work: Path, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Every step of one benchmark seed but the re-scoring; appends its timings to
    ``{work}/seed{seed}/timings.jsonl``."""
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
            for target in plan.targets_of(experiment, seed):
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
    """One row per (model, replicate): ``model``, ``replicate``, ``log_likelihood``, ``miou``, ``pixel_accuracy``,
    ``status``."""
    frames = [pd.read_csv(truth_path(work, seed, experiment, target, r), dtype={"model": "string"})
              .assign(replicate=r) for r in range(plan.replicates)]
    return pd.concat(frames, ignore_index=True)[
        ["model", "replicate", "log_likelihood", "miou", "pixel_accuracy", "status"]]


def pairs(plan: Plan, seed: int, work: Path, experiments: tuple[str, ...] = EXPERIMENTS) -> list[Pair]:
    """Every (source model, target) of the seed's run, for re-scoring from its stores."""
    store = str(seed_dir(work, seed) / "store")
    return [Pair(seed, experiment, target.name, source.name, source.city, store)
            for experiment in experiments for target in plan.targets_of(experiment, seed)
            for source in plan.sources(experiment, seed) if source.city != target.city]
