"""Train the demo zoo that ``otce-ray demo`` scores: every built-in architecture on each of four source cities.

    python jobs/train_zoo.py [--out otce_ray/zoo] [--seed 0] [--workers 2]

Writes ``weights/{name}.pt`` (state dicts, loadable with ``weights_only=True``) and ``zoo.yaml`` under ``--out``,
then regenerates the zoo's fine-tuning ground truth (``ground_truth.csv``, ``jobs/zoo_ground_truth.py``) from the
new weights.
The sources are chosen around the demo target (gamma: real-like, clear), from nearest to farthest: alpha (same
family and condition), epsilon (same family, overcast), beta (game-like, clear), zeta (game-like, overcast).

Each model trains in its own single-threaded process from a seed derived from (seed, model name), so the weights
depend on neither the worker count nor the other models, and a rerun gives the same files. Accuracy is measured
through the loader the extraction uses (``load_model``), on frames of the source city that training never saw
and, zero-shot, on the target city's benchmark images.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

# Run the otce_ray of this checkout, not whatever version is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the ground truth starts a local Ray
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from otce_ray.datasets import open_dataset  # noqa: E402
from otce_ray.datasets.labels import CITYSCAPES_NUM_CLASSES, cityscapes_lookup  # noqa: E402
from otce_ray.datasets.synth import DOMAINS, render_frame, write_benchmark  # noqa: E402
from otce_ray.finetune import Evaluation  # noqa: E402
from otce_ray.models import ARCHITECTURES, ModelSpec, load_model  # noqa: E402
from otce_ray.zoo import GROUND_TRUTH, ZOO_FILE, city_spec  # noqa: E402
from otce_ray.zoo.training import TRAINING, train  # noqa: E402
from otce_ray.zoo.truth import regenerate  # noqa: E402

TARGET = "gamma"
SOURCES = ("alpha", "epsilon", "beta", "zeta")
# The first 8 cities hold the sources and the target; 40 frames leave the target 20 to fine-tune on and 20 to test.
BENCHMARK = {"cities": 8, "images_per_city": 40, "size": [128, 256]}
KWARGS = {"width": 12}  # 10-24k parameters per net: ~150 steps/min on one CPU core
HELD_OUT = 8  # frames of each source city beyond the benchmark's, rendered in memory for its accuracy
BENCHMARK_ROOT = "benchmark"  # the source root written in zoo.yaml; zoo_models() replaces it
EVAL_BATCH = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "otce_ray" / "zoo")
    parser.add_argument("--seed", type=int, default=0, help="benchmark and training seed")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="models trained at once")
    args = parser.parse_args()

    weights = args.out / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    for stale in weights.glob("*.pt"):
        stale.unlink()
    jobs = [(arch, city) for arch in ARCHITECTURES for city in SOURCES]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="otce-zoo-") as root:
        write_benchmark(root, seed=args.seed, **{**BENCHMARK, "size": tuple(BENCHMARK["size"])})
        tasks = [(arch, city, root, weights, args.seed) for arch, city in jobs]
        with multiprocessing.get_context("spawn").Pool(max(1, min(args.workers, len(tasks)))) as pool:
            results = {}
            for result in pool.imap_unordered(_train_task, tasks):
                results[result["name"]] = result
                print(f"  {result['name']:<16} trained in {result['seconds']:5.1f} s", flush=True)
    seconds = time.perf_counter() - start
    ordered = [results[_name(arch, city)] for arch, city in jobs]
    _write_zoo(args.out, ordered, args.seed, args.workers, seconds)
    _print_table(ordered, seconds, weights)
    if args.out.resolve() == GROUND_TRUTH.parent:  # the shipped zoo: its ground truth must follow its weights
        started = time.perf_counter()
        regenerate(GROUND_TRUTH)
        print(f"ground truth regenerated in {time.perf_counter() - started:.0f} s: {GROUND_TRUTH}")
    return 0


def _name(arch: str, city: str) -> str:
    return f"{arch}_{city}"


def _train_task(task: tuple[str, str, str, Path, int]) -> dict[str, Any]:
    """Train, save and evaluate one model in a worker process (one thread: reproducible, and 2 models per 2 cores)."""
    arch, city, root, weights, seed = task
    torch.set_num_threads(1)
    name = _name(arch, city)
    checkpoint = weights / f"{name}.pt"
    entry = _entry(arch, city, checkpoint=str(checkpoint), root=root)
    start = time.perf_counter()
    initial = ModelSpec.from_dict({**entry, "checkpoint": None, "init_seed": seed + zlib.crc32(name.encode())})
    module = train(initial, list(open_dataset(entry["source"])))
    torch.save(module.state_dict(), checkpoint)
    seconds = time.perf_counter() - start
    first = BENCHMARK["images_per_city"]  # frames from here on are not in the benchmark, so training never saw them
    held_out = [render_frame(city, frame, seed, tuple(BENCHMARK["size"])) for frame in range(first, first + HELD_OUT)]
    target = list(open_dataset(city_spec(TARGET, root)))
    return {
        "name": name, "architecture": arch, "source_city": city, "seconds": round(seconds, 1),
        "parameters": sum(p.numel() for p in module.parameters()),
        "source": evaluate(
            entry, [image for image, _ in held_out],
            [cityscapes_lookup().apply(raw, f"{city} held-out frame") for _, raw in held_out],
        ),
        "target": evaluate(entry, [item.image for item in target], [item.label for item in target]),
    }


def evaluate(entry: dict[str, Any], images: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """Pixel accuracy and mIoU of a saved model, loaded as extraction loads it (so the checkpoint is checked too)."""
    model = load_model(entry)
    evaluation = Evaluation(CITYSCAPES_NUM_CLASSES)
    for first in range(0, len(images), EVAL_BATCH):
        logits = model(np.stack(images[first:first + EVAL_BATCH])).logits
        evaluation.add(logits, torch.from_numpy(np.stack(labels[first:first + EVAL_BATCH])))
    scores = evaluation.scores()
    return {key: round(scores[key], 4) for key in ("pixel_accuracy", "miou")}


def _entry(arch: str, city: str, checkpoint: str, root: str) -> dict[str, Any]:
    """A run-config model entry (see ``otce_ray.config``)."""
    return {"name": _name(arch, city), "format": "builtin", "architecture": arch, "kwargs": dict(KWARGS),
            "checkpoint": checkpoint, "source": city_spec(city, root)}


def _write_zoo(out: Path, results: list[dict[str, Any]], seed: int, workers: int, seconds: float) -> None:
    zoo = {
        "target": TARGET,
        "benchmark": {**BENCHMARK, "seed": seed},
        "training": {**TRAINING, "seed": seed, "kwargs": KWARGS, "held_out_frames": HELD_OUT, "workers": workers,
                     "cpu_cores": os.cpu_count(), "seconds": round(seconds, 1)},
        "accuracy": {r["name"]: {**{f"source_{k}": v for k, v in r["source"].items()},
                                 **{f"target_{k}": v for k, v in r["target"].items()}, "train_seconds": r["seconds"]}
                     for r in results},
        "models": [_entry(r["architecture"], r["source_city"], f"weights/{r['name']}.pt", BENCHMARK_ROOT)
                   for r in results],
    }
    header = (
        "# Written by jobs/train_zoo.py: rerun it rather than editing. models: run-config entries whose checkpoints\n"
        "# are relative to this folder and source roots to the benchmark (otce_ray.zoo.zoo_models makes both\n"
        "# absolute). accuracy: on held-out frames of the source city, and zero-shot on the target benchmark images.\n"
    )
    text = yaml.safe_dump(zoo, sort_keys=False, width=1000, default_flow_style=None)  # one line per model
    (out / ZOO_FILE).write_text(header + text)


def _print_table(results: list[dict[str, Any]], seconds: float, weights: Path) -> None:
    print(f"\n{'model':<16} {'params':>6} {'source (family, condition)':<30} {'source acc':>10} {'mIoU':>6} "
          f"{TARGET + ' acc':>9} {'mIoU':>6} {'train s':>7}")
    for r in results:
        domain = DOMAINS[r["source_city"]]
        source = f"{domain.name} ({domain.family}, {domain.condition})"
        print(f"{r['name']:<16} {r['parameters']:>6} {source:<30} {r['source']['pixel_accuracy']:>10.3f} "
              f"{r['source']['miou']:>6.3f} {r['target']['pixel_accuracy']:>9.3f} {r['target']['miou']:>6.3f} "
              f"{r['seconds']:>7.1f}")
    size = sum(path.stat().st_size for path in weights.glob("*.pt"))
    print(f"\n{len(results)} models in {seconds:.0f} s; weights {size / 1e6:.2f} MB in {weights}; "
          f"target {TARGET} ({DOMAINS[TARGET].family}, {DOMAINS[TARGET].condition})")


if __name__ == "__main__":
    sys.exit(main())
