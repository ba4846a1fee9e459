"""The measurements of the GPU check (``otce_ray.bench.gpu_check``): one function per step, each run in a process of
its own, each returning its report rows (dicts of ``gpu_check.FIELDS``; the check fills in what a row leaves out).

Everything goes through the Ray-free entry points a user's card runs: ``otce_score`` for OT, ``run_shard`` for
extraction. Nothing here imports Ray or boto3, and POT and flash-sinkhorn are imported only by the steps that use them,
after the check installed them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from otce_ray import otce_score
from otce_ray.bench import deeplab
from otce_ray.bench.extract import bare_loop
from otce_ray.bench.meters import GpuUtilisation, peak_meter
from otce_ray.bench.ot import CLASSES, WARM_UP_POINTS, pixel_sets, pot_sinkhorn
from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth.writer import png_bytes, render_frame
from otce_ray.extraction.decode import PHASES
from otce_ray.extraction.planning import IMAGES_PER_SHARD
from otce_ray.extraction.shard import ExtractionRequest, run_shard
from otce_ray.models import ModelSpec
from otce_ray.models.cache import ModelCache
from otce_ray.scoring.backends.registry import BACKENDS
from otce_ray.scoring.cost_scale import normalise
from otce_ray.scoring.entropy import conditional_entropy
from otce_ray.scoring.inputs import pixel_set, resolve_device, standardised
from otce_ray.scoring.settings import OTCESettings

SEED = 0
PIXELS_PER_IMAGE = 1000
DISTINCT_FRAMES = 8  # frames rendered; the dataset repeats them (decoding and the forward cost the same per file)
SETTINGS = OTCESettings(repeats=1, seed=SEED)  # the engine's defaults


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({os.cpu_count()} cores)"


def _score(clouds: tuple, n: int, repeats: int, backend: str, device: str):
    xs, ys, xt, yt = clouds
    settings = dataclasses.replace(SETTINGS, n_pixels=n, repeats=repeats, backend=backend)
    return otce_score(xs[:n], ys[:n], xt[:n], yt[:n], settings, device=device)


def _timed(device: str, function, *args) -> tuple[Any, float, float]:
    """(result, seconds, peak MiB on ``device``) of one call; the result holds host numbers, so the device has
    finished."""
    peak = peak_meter(device)
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started, peak()


def ot_solve(n: int, dim: int, backend: str, device: str, warm: bool) -> list[dict[str, Any]]:
    """One OTCE repeat at N = ``n`` (the engine's defaults) with ``backend``: seconds, passes, marginal error,
    conditional entropy, peak memory. ``warm``: a first call at the same shape is timed apart (Triton autotunes at
    each new shape); otherwise only a small problem runs first (device start-up, library loading)."""
    row = {"n": n, "d": dim, "device": device_name(device), "backend": backend}
    reason = BACKENDS[backend].unavailable(resolve_device(device))
    if reason:
        return [{**row, "status": f"unavailable: {reason}"}]
    clouds = pixel_sets(n, dim, SEED)
    notes = []
    if warm:
        _, cold, _ = _timed(device, _score, clouds, n, 1, backend, device)
        notes.append(f"first call {cold:.2f} s")
    else:
        _score(clouds, WARM_UP_POINTS, 1, backend, device)
        notes.append("cold at this shape" + (" (includes Triton autotuning)" if backend == "flash_sinkhorn" else ""))
    result, seconds, peak = _timed(device, _score, clouds, n, 1, backend, device)
    record = result.repeats[0]
    notes.append("converged" if record.converged else "NOT converged")
    if record.remedy:
        notes.append(f"remedy {record.remedy}")
    return [{**row, "seconds": seconds, "backend": record.backend, "ce": record.conditional_entropy,
             "marginal_error": record.marginal_error, "iterations": record.iterations, "peak_mib": peak,
             "note": "; ".join(notes)}]


def engine_points(clouds: tuple, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both whole sides as a one-repeat ``otce_score`` of every pixel prepares them (``scoring.repeat``): z-scored,
    centred and scaled by the median cost, float32 on ``device``; with their labels as class indices."""
    xs, ys, xt, yt = clouds
    source, target = (standardised(pixel_set(x, y, None, side)) for x, y, side in
                      ((xs, ys, "source"), (xt, yt, "target")))
    x, y, _ = normalise(source.features.to(device), target.features.to(device), SETTINGS.cost_scale)
    return x.float(), y.float(), source.classes, target.classes


def pot_peer(n: int, dim: int, device: str) -> list[dict[str, Any]]:
    """POT's plain Sinkhorn on the same problem through its torch backend (float32, on ``device``): the materialised
    peer (n x n cost, kernel and plan). It stops when the L2 error of its column marginal is below tol / sqrt(n),
    which bounds that marginal's L1 error by the engine's tolerance; the error reported is rows plus columns (L1)."""
    row = {"n": n, "d": dim, "device": device_name(device), "backend": "POT sinkhorn float32 (torch)"}
    try:
        import ot  # noqa: F401 - only whether it imports
    except ImportError as error:
        return [{**row, "status": f"unavailable: POT does not import ({error})"}]
    clouds = pixel_sets(n, dim, SEED)

    def solve(points: int, device: str):
        x, y, ys, yt = engine_points(tuple(side[:points] for side in clouds), device)
        return pot_sinkhorn(x, y, ys, yt, (CLASSES, CLASSES), SETTINGS.epsilon, "sinkhorn",
                            SETTINGS.tolerance / np.sqrt(points))

    solve(WARM_UP_POINTS, device)
    run, seconds, peak = _timed(device, solve, n, device)
    if not run.finite:
        return [{**row, "seconds": seconds, "status": "error: POT's plan underflowed (not finite or near zero)"}]
    return [{**row, "seconds": seconds, "ce": conditional_entropy(run.joint), "marginal_error": run.error,
             "iterations": run.iterations, "peak_mib": peak, "note": "materialised: n x n cost, kernel and plan"}]


def repeats(n: int, dim: int, count: int, device: str) -> list[dict[str, Any]]:
    """K repeats at N = ``n`` with the backend ``auto`` picks. The engine does not batch repeats: one
    ``otce_score`` call runs them one after another, and that is what is timed."""
    clouds = pixel_sets(n, dim, SEED)
    _score(clouds, n, 1, "auto", device)  # warm at this shape
    result, seconds, peak = _timed(device, _score, clouds, n, count, "auto", device)
    records = result.repeats
    return [{"n": n, "d": dim, "device": device_name(device), "backend": records[0].backend, "seconds": seconds,
             "ce": float(np.mean([record.conditional_entropy for record in records])),
             "marginal_error": max(record.marginal_error for record in records),
             "iterations": sum(record.iterations for record in records), "peak_mib": peak,
             "note": f"not batched: {count} calls ({seconds / count:.2f} s per repeat; ce: mean over repeats)"}]


def write_images(root: str, count: int, size: tuple[int, int]) -> dict[str, Any]:
    """``count`` street scenes of ``size`` (the procedural benchmark's frames, repeated) in the ``gta5`` layout
    (images/, labels/ with Cityscapes label ids); returns the dataset spec."""
    frames = [tuple(png_bytes(array) for array in render_frame("alpha", frame, SEED, size))
              for frame in range(min(count, DISTINCT_FRAMES))]
    for folder in ("images", "labels"):
        Path(root, folder).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, labels = frames[index % len(frames)]
        Path(root, "images", f"{index:05d}.png").write_bytes(image)
        Path(root, "labels", f"{index:05d}.png").write_bytes(labels)
    return {"name": "gpu-check", "format": "gta5", "root": root}


def extraction(count: int, size: tuple[int, int], batch_size: int, device: str) -> list[dict[str, Any]]:
    """``run_shard`` over ``count`` images of ``size`` with a DeepLabV3-ResNet50 (random weights) against a bare
    torch loop (decode, batch, forward: ``bench extract``'s peer) over the same files and model, at the precision the
    product uses on the device.

    As one extraction worker runs them: shards of the product's size (IMAGES_PER_SHARD images) one after another with
    one model cache, after a first shard of one batch (model load, first forward) that is timed apart. A GPU worker
    of the product runs two shards at once (``extraction.worker``); this Ray-free loop runs one. Each side's peak
    memory includes its model.
    """
    common = {"device": device_name(device), "backend": "run_shard"}
    with tempfile.TemporaryDirectory(prefix="otce-gpu-check-") as work:
        dataset = write_images(os.path.join(work, "data"), count, size)
        spec = ModelSpec.from_dict(deeplab.model_spec())
        shards = math.ceil(count / IMAGES_PER_SHARD)
        request = ExtractionRequest(model=spec, dataset="gpu-check", dataset_fingerprint="gpu-check",
                                    store=os.path.join(work, "store"), pixels_per_image=PIXELS_PER_IMAGE, seed=SEED,
                                    num_shards=shards)
        models = ModelCache(1)
        peak = peak_meter(device)
        first = run_shard_checked(dataclasses.replace(request, dataset="warm-up", num_shards=1), 0,
                                  open_dataset({**dataset, "max_images": batch_size}), batch_size, models, device)
        images = open_dataset(dataset)
        started = time.perf_counter()
        with GpuUtilisation() as utilisation:
            results = [run_shard_checked(request, index, images.shard(index, shards), batch_size, models, device)
                       for index in range(shards)]
        seconds = time.perf_counter() - started
        shard_peak = peak()
        model, _ = models.get(spec, {}, device)
        modes = (("bf16 autocast", model.bf16), ("channels-last", model.channels_last),
                 ("pinned host memory", device.startswith("cuda")))
        precision = ", ".join(name for name, on in modes if on)
        del model, models
        peak = peak_meter(device)
        with GpuUtilisation() as bare_utilisation:
            bare = bare_loop(deeplab.model_spec(), open_dataset(dataset), batch_size, device)
        bare_peak = peak()
    phases = ", ".join(f"{phase} {sum(result.timings[phase] for result in results):.2f} s" for phase in PHASES
                       if phase != "load")
    sized = {"n": count, "d": first.feature_dim}
    return [
        {**common, **sized, "seconds": seconds, "images_per_s": count / seconds, "ratio": bare / seconds,
         "peak_mib": shard_peak, "gpu_util": utilisation.summary,
         "note": f"{size[0]}x{size[1]}, batch {batch_size}, {shards} shard(s), {precision or 'float32'}; first shard "
                 f"{first.seconds:.2f} s; phases {phases}"},
        {**common, **sized, "backend": "bare torch loop", "seconds": bare, "images_per_s": count / bare,
         "peak_mib": bare_peak, "gpu_util": bare_utilisation.summary, "note": "decode, batch, forward"},
    ]


def run_shard_checked(request: ExtractionRequest, shard: int, images, batch_size: int, models: ModelCache,
                      device: str):
    """``run_shard``, raising when the shard was not written (the step then reports the shard's error)."""
    result = run_shard(request, shard, images, batch_size, models=models, device=device)
    if result.status != "written":
        raise RuntimeError(f"run_shard {result.status}: {result.error}")
    return result
