"""``otce-ray bench extract``: images/s of the Ray extraction path vs a bare torch loop over the same model and images.

The peer is what one would write by hand: decode each image, batch, forward, nothing else, timed with torch's
default thread count and with one thread, keeping the faster (on a busy CPU, intra-op threads can be several times
slower than one thread), so the ratio is against the strongest peer; like the Ray path's, its model is loaded before
its clock starts. The Ray path does the whole job with the defaults a run gets (a pool of extraction workers sized to
the machine, shards of 32 images, decoding ahead in threads, forward, pixel sampling, Parquet write, manifest). Its
steady rate is timed from the dispatch of the first shard to the last result, as in a long run over many models
where workers are already up: the workers' one-time start (process, torch import) is excluded, each worker's model
load is included. The whole call, start-up included, is printed as "cold". The last line printed is one JSON object.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from typing import Iterator

import numpy as np
import torch

from otce_ray.extraction.planning import IMAGES_PER_SHARD
from otce_ray.models import load_model


def main(
    *,
    arch: str = "unet",
    images: int = 256,
    size: tuple[int, int] = (128, 256),
    batch_size: int = 8,
    pixels_per_image: int = 1000,
    num_gpus: float | None = None,
    seed: int = 0,
) -> int:
    from otce_ray.datasets import open_dataset
    from otce_ray.datasets.synth import write_benchmark

    cuda = torch.cuda.is_available()
    num_gpus = (1.0 if cuda else 0.0) if num_gpus is None else num_gpus
    model = {"name": f"bench-{arch}", "format": "builtin", "architecture": arch, "num_classes": 19}
    with tempfile.TemporaryDirectory(prefix="otce-bench-extract-") as work:
        root = os.path.join(work, "data")
        cities = write_benchmark(root, cities=2, images_per_city=(images + 1) // 2, size=size, seed=seed)
        dataset = {"name": "bench", "format": "cityscapes", "root": root, "split": "train", "cities": cities,
                   "max_images": images}
        count = len(open_dataset(dataset))
        bare = bare_loop(model, open_dataset(dataset), batch_size, "cuda" if cuda else "cpu")
        bare_threads = torch.get_num_threads()
        if not cuda and bare_threads > 1:
            with _torch_threads(1):
                single = bare_loop(model, open_dataset(dataset), batch_size, "cpu")
            bare, bare_threads = min((bare, bare_threads), (single, 1))
        cold, warm, phases, loads = _ray_path(model, dataset, os.path.join(work, "store"), batch_size, pixels_per_image, num_gpus,
                               seed)
    result = {
        "bench": "extract",
        "arch": arch,
        "images": count,
        "size": list(size),
        "batch_size": batch_size,
        "pixels_per_image": pixels_per_image,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)",
        "num_gpus_per_task": num_gpus,
        "bare_threads": bare_threads,
        "bare_images_per_s": round(count / bare, 2),
        "ray_images_per_s": round(count / warm, 2),
        "ray_cold_images_per_s": round(count / cold, 2),
        "ratio": round(bare / warm, 3),
        "ray_phase_seconds": {phase: round(seconds, 3) for phase, seconds in phases.items()},
        "ray_model_loads": loads,
        "shards": math.ceil(count / IMAGES_PER_SHARD),
    }
    print(f"bare torch loop : {result['bare_images_per_s']:8.2f} images/s ({count} images, {bare:.2f} s, "
          f"{bare_threads} torch thread(s))")
    print(f"ray, cold       : {result['ray_cold_images_per_s']:8.2f} images/s (the whole call: workers start, torch "
          "imports)")
    print(f"ray, steady     : {result['ray_images_per_s']:8.2f} images/s   ratio ray/bare = {result['ratio']:.3f}")
    print(f"ray, model loads: {loads} for {result['shards']} shards")
    print("ray, seconds per phase (summed over shards): "
          + ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in result["ray_phase_seconds"].items()))
    print(json.dumps(result))
    return 0


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def bare_loop(model_spec: dict, dataset, batch_size: int, device: str) -> float:
    """Seconds for decode + forward over every image, after one warm-up batch."""
    model = load_model(model_spec, device)
    model(np.stack([dataset[0].image]))
    start = time.perf_counter()
    batch: list[np.ndarray] = []
    for index in range(len(dataset)):
        batch.append(dataset[index].image)
        if len(batch) == batch_size or index == len(dataset) - 1:
            model(np.stack(batch))
            batch = []
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _ray_path(
    model_spec: dict, dataset: dict, store: str, batch_size: int, pixels_per_image: int, num_gpus: float, seed: int
) -> tuple[float, float, dict[str, float], int]:
    """Seconds of the whole extraction call, from its first shard's dispatch to its last result, per phase (summed
    over shards; see ``ShardResult``), and how many times the model was loaded."""
    import ray

    from otce_ray.extraction import extract_model

    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    summary = extract_model(model_spec, dataset, store, pixels_per_image=pixels_per_image, batch_size=batch_size,
                            num_gpus=num_gpus, seed=seed)
    if summary.status != "ok":
        raise RuntimeError(f"extraction failed: {summary.error}")
    return time.perf_counter() - start, summary.finished_at - summary.started_at, summary.timings, summary.model_loads
