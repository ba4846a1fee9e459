"""The paper's two experiments in miniature on the procedural benchmark (issue 6), step by step.

``run_validation(plan, work)`` writes the benchmark, trains every source model once (two processes at a time,
one thread each), then for each (experiment, target) runs the OTCE job (leaderboard with baselines), the
fine-tuning ground truth and the evaluation. Everything lands under ``work`` and is reused by a rerun: weights
that exist are not retrained, a leaderboard's finished models are reused by the job itself, a ground truth
already written is read back. ``rescore`` then re-scores the pixel stores the runs left with other OTCE settings.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from otce_ray.config import parse_config
from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth import CITY_NAMES, write_benchmark
from otce_ray.evaluation import evaluate_to
from otce_ray.finetune import FineTuneSettings, ground_truth
from otce_ray.models import ModelSpec
from otce_ray.zoo import city_spec
from otce_ray.zoo.training import TRAINING

INTRA, INTER = "intra", "inter"
TIMINGS = "timings.jsonl"


@dataclass(frozen=True)
class Source:
    """One source model: a built-in architecture (with its kwargs) trained on one benchmark city."""

    name: str
    architecture: str
    city: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What to run. Intra: one model of ``intra_architecture`` per city of ``intra_cities``; a target's sources are
    the models of the other cities. Inter: every variant of ``inter_architectures`` (label -> (architecture,
    kwargs)) on each city of ``inter_cities`` (one real-like, one game-like), transferred to the same targets."""

    cities: int = 16
    images_per_city: int = 40
    size: tuple[int, int] = (64, 128)
    seed: int = 0
    training_steps: int = 150
    intra_architecture: tuple[str, dict[str, Any]] = ("fcn8s", {"width": 12})
    intra_cities: tuple[str, ...] = CITY_NAMES[2:16]
    targets: tuple[str, ...] = ("gamma", "delta", "iota", "xi")
    inter_cities: tuple[str, ...] = ("alpha", "beta")
    inter_architectures: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=lambda: {
        "unet": ("unet", {"width": 12}), "segnet": ("segnet", {"width": 12}), "fcn8s": ("fcn8s", {"width": 12}),
        "pspnet": ("pspnet", {"width": 12}), "fcn8s-wide": ("fcn8s", {"width": 24}),
        "pspnet-d64": ("pspnet", {"width": 12, "feature_dim": 64}),
    })
    n_pixels: int = 2000
    repeats: int = 5
    pixels_per_image: int = 200
    finetune: FineTuneSettings = field(default_factory=lambda: FineTuneSettings(eval_images=20))
    workers: int = 2

    def sources(self, experiment: str) -> list[Source]:
        """Every model the experiment trains."""
        if experiment == INTRA:
            arch, kwargs = self.intra_architecture
            return [Source(f"{arch}_{city}", arch, city, kwargs) for city in self.intra_cities]
        return [Source(f"{label}_{city}", arch, city, kwargs)
                for label, (arch, kwargs) in self.inter_architectures.items() for city in self.inter_cities]

    def sources_for(self, experiment: str, target: str) -> list[Source]:
        """The models transferred to ``target``: never one trained on the target city itself."""
        return [source for source in self.sources(experiment) if source.city != target]


def model_entry(source: Source, weights: Path, benchmark: str) -> dict[str, Any]:
    """The run-config model entry of a trained source."""
    return {"name": source.name, "format": "builtin", "architecture": source.architecture,
            "kwargs": dict(source.kwargs), "checkpoint": str(weights / f"{source.name}.pt"),
            "source": city_spec(source.city, benchmark)}


def _train_task(task: tuple[Source, str, str, int, dict[str, Any]]) -> tuple[str, float]:
    """Train and save one source in a worker process (one thread, a seed derived from the model name)."""
    import torch

    from otce_ray.zoo.training import train

    source, benchmark, checkpoint, seed, training = task
    torch.set_num_threads(1)
    started = time.perf_counter()
    entry = {"name": source.name, "format": "builtin", "architecture": source.architecture,
             "kwargs": dict(source.kwargs), "init_seed": seed + zlib.crc32(source.name.encode())}
    module = train(ModelSpec.from_dict(entry), list(open_dataset(city_spec(source.city, benchmark))), training)
    torch.save(module.state_dict(), checkpoint)
    return source.name, time.perf_counter() - started


def train_sources(plan: Plan, sources: list[Source], benchmark: str, weights: Path) -> dict[str, float]:
    """Train the sources whose checkpoint is missing, ``plan.workers`` at a time; seconds per trained model."""
    weights.mkdir(parents=True, exist_ok=True)
    training = {**TRAINING, "steps": plan.training_steps}
    todo = [(s, benchmark, str(weights / f"{s.name}.pt"), plan.seed, training)
            for s in sources if not (weights / f"{s.name}.pt").exists()]
    if not todo:
        return {}
    with multiprocessing.get_context("spawn").Pool(max(1, min(plan.workers, len(todo)))) as pool:
        return dict(pool.imap_unordered(_train_task, todo))


def target_config(plan: Plan, experiment: str, target: str, work: Path) -> dict[str, Any]:
    """The run config of one (experiment, target): one pixel store shared by all runs, one output folder each."""
    benchmark = str(work / "benchmark")
    return {
        "store": str(work / "store"),
        "output": str(work / experiment / target),
        "target": city_spec(target, benchmark),
        "models": [model_entry(s, work / "weights", benchmark) for s in plan.sources_for(experiment, target)],
        "otce": {"n_pixels": plan.n_pixels, "repeats": plan.repeats, "seed": 0},
        "extraction": {"pixels_per_image": plan.pixels_per_image, "num_gpus": 0},
        "baselines": {"n_pixels": plan.n_pixels},
    }


def run_target(plan: Plan, experiment: str, target: str, work: Path) -> dict[str, Any]:
    """Leaderboard, ground truth and evaluation of one (experiment, target); returns the timings and file paths."""
    from otce_ray.pipeline import run

    raw = target_config(plan, experiment, target, work)
    config = parse_config(raw, base_dir=str(work))
    out = Path(raw["output"])
    started = time.perf_counter()
    board = run(config, progress=False)
    scored = time.perf_counter()
    truth_path = out / "ground_truth.csv"
    if truth_path.exists():
        truth = pd.read_csv(truth_path)
    else:
        truth = ground_truth(config, plan.finetune, str(truth_path))
    tuned = time.perf_counter()
    evaluation = evaluate_to(str(out / "evaluation"), board, truth)
    return {"experiment": experiment, "target": target, "models": len(config.models),
            "score_seconds": round(scored - started, 1), "finetune_seconds": round(tuned - scored, 1),
            "evaluate_seconds": round(time.perf_counter() - tuned, 1),
            "evaluation": evaluation.assign(experiment=experiment, target=target)}


def run_validation(plan: Plan, work: Path, log: Any = print) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run both experiments into ``work``; returns every evaluation row (with experiment and target) and timings.

    Writes ``evaluations.csv`` under ``work`` and appends this call's timings to ``timings.jsonl``.
    """
    import ray

    work = Path(work).resolve()
    timings: dict[str, Any] = {"plan": _plan_dict(plan)}
    started = time.perf_counter()
    benchmark = work / "benchmark"
    if not (benchmark / "benchmark.json").exists():
        write_benchmark(str(benchmark), plan.cities, plan.images_per_city, plan.size, plan.seed)
    timings["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    log(f"benchmark: {timings['benchmark_seconds']} s")
    sources: dict[str, Source] = {}
    for source in plan.sources(INTRA) + plan.sources(INTER):
        if sources.setdefault(source.name, source) != source:
            raise ValueError(f"two different source models are both named {source.name!r}")
    started = time.perf_counter()
    timings["train_seconds_per_model"] = train_sources(plan, list(sources.values()), str(benchmark),
                                                       work / "weights")
    timings["train_seconds"] = round(time.perf_counter() - started, 1)
    log(f"trained {len(timings['train_seconds_per_model'])} models in {timings['train_seconds']} s")
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(address="local", num_cpus=plan.workers, log_to_driver=False, include_dashboard=False)
    evaluations, steps = [], []
    try:
        for experiment in (INTRA, INTER):
            for target in plan.targets:
                result = run_target(plan, experiment, target, work)
                evaluations.append(result.pop("evaluation"))
                steps.append(result)
                log(f"{experiment} {target}: {result}")
    finally:
        if owns_ray:
            ray.shutdown()
    timings["targets"] = steps
    table = pd.concat(evaluations, ignore_index=True)
    table.to_csv(work / "evaluations.csv", index=False)
    with open(work / TIMINGS, "a") as file:  # one line per call: a resumed run's reuse does not hide the first's
        file.write(json.dumps(timings) + "\n")
    return table, timings


def _plan_dict(plan: Plan) -> dict[str, Any]:
    out = asdict(plan)
    out["size"] = list(plan.size)
    return out


def work_dir(default: str = "/tmp/otce-validation") -> Path:
    """The work folder: ``OTCE_VALIDATION_WORK`` or ``default``."""
    return Path(os.environ.get("OTCE_VALIDATION_WORK", default))
