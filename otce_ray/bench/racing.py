"""``otce-ray bench racing``: a race against the full run on a zoo of 100+ models with known structure.

The zoo: the 16 shipped models (four architectures, each trained on one of four cities of the procedural benchmark),
each also copied with Gaussian noise on its weights at growing scales (``NOISE``, relative to each tensor's spread;
seeded), so it has a known order (more noise, a worse model; a near source above a far one), a few contenders and
many clear losers, and near ties at the top (an original and its lightly perturbed copies). Target: the zoo's city.
Per seed (``otce.seed`` and the noise), on a fresh store: the race first (``racing:``), then the full run into the
same store, which extracts only the shards the race did not (the growth the race leaves behind is reused), and the
two are compared:

- ``top_k_recall``: the share of the race's top k that the full run puts in its top k or ties with its k-th model
  (the leaderboard's group rule: the same group as the k-th); ``strict_recall`` without the ties;
- ``extraction_ratio``: images the race extracted (the store after it, by its parts' footers) over images a full run
  extracts (every image of every store);
- ``repeat_work_ratio``: CPU-seconds of the race's repeats (every stage's and the final's, ``RepeatRecord.seconds``)
  over the full run's; on a busy machine those seconds move with the load, so ``pair_work_ratio`` says much the same
  in units that do not: source pixels x target pixels, summed over the repeats (a repeat's passes vary little with
  its N: 31-36 on this benchmark);
- the stage scores' bias against the full scores, per stage: after the shift common to every model, the share of
  models whose full score lies inside their stage bounds (``coverage``), and the largest miss in units of the
  bound's half-width;
- whether the models that reached the final stage got the full run's records bit for bit.

The last line is one JSON object with those figures (means over the seeds, and each seed's), the issue's targets and
whether they are met.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Sequence

import numpy as np

from otce_ray.scoring.racing import DEFAULT_STAGES
from otce_ray.zoo import city_spec, read_zoo, zoo_models

NOISE = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # weight noise of the copies, relative to each tensor's spread
TARGETS = {"top_k_recall": 0.95, "extraction_ratio": 0.35, "repeat_work_ratio": 0.35}


def main(seeds: Sequence[int] = (0, 1), images: int = 32, size: tuple[int, int] = (64, 128), top_k: int = 5,
         noise: Sequence[float] = NOISE, n_pixels: int = 1000, work: str | None = None,
         stages: Sequence[dict[str, Any]] = DEFAULT_STAGES) -> int:
    """Race (``stages``: the racing section's, default its defaults) and full run per seed, a table, and the JSON
    line (see the module docstring)."""
    import ray

    with tempfile.TemporaryDirectory(prefix="otce-bench-racing-") as scratch:
        work = work or scratch
        data = os.path.join(work, "data")
        _benchmark(data, images, size)
        models = len(read_zoo()["models"]) * len(noise)
        print(f"# zoo: {models} models (16 trained x {len(noise)} weight-noise levels {list(noise)}); target "
              f"{read_zoo()['target']}; {images} images of {size[0]}x{size[1]} per city; top k {top_k}; racing "
              f"stages {list(stages)}, then N {n_pixels}, K 10 on every image")
        print(f"{'seed':>4} {'recall':>6} {'strict':>6} {'extract':>7} {'repeats':>7} {'pairs':>6} {'survivors':>12} "
              f"{'identical':>9} {'race s':>7} {'full s':>7}")
        owns_ray = not ray.is_initialized()
        if owns_ray:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        try:
            rows = [_one_seed(work, data, seed, top_k, noise, n_pixels, stages) for seed in seeds]
        finally:
            if owns_ray:
                ray.shutdown()
        for row in rows:
            print(f"{row['seed']:>4} {row['top_k_recall']:>6.2f} {row['strict_recall']:>6.2f} "
                  f"{row['extraction_ratio']:>7.3f} {row['repeat_work_ratio']:>7.3f} {row['pair_work_ratio']:>6.3f} "
                  f"{'/'.join(map(str, row['survivors'])):>12} {str(row['finalists_identical']):>9} "
                  f"{row['race_seconds']:>7.0f} {row['full_seconds']:>7.0f}")
        summary = {"bench": "racing", "models": models, "top_k": top_k, "seeds": list(seeds), "images": images,
                   "size": list(size), "n_pixels": n_pixels, "stages": list(stages), "noise": list(noise),
                   **{key: round(float(np.mean([row[key] for row in rows])), 4)
                      for key in ("top_k_recall", "strict_recall", "extraction_ratio", "repeat_work_ratio",
                                  "pair_work_ratio")},
                   "per_seed": rows, "targets": TARGETS}
        summary["targets_met"] = {
            "top_k_recall": summary["top_k_recall"] >= TARGETS["top_k_recall"],
            "extraction_ratio": summary["extraction_ratio"] <= TARGETS["extraction_ratio"],
            "repeat_work_ratio": summary["repeat_work_ratio"] <= TARGETS["repeat_work_ratio"],
            "finalists_identical": all(row["finalists_identical"] for row in rows)}
        print(json.dumps(summary))
    return 0


def _benchmark(root: str, images: int, size: tuple[int, int]) -> None:
    from otce_ray.datasets.synth import write_benchmark

    cities = read_zoo()["benchmark"]["cities"]
    if not os.path.isdir(root):
        write_benchmark(root, cities=cities, images_per_city=images, size=size, seed=0)


def zoo(folder: str, benchmark: str, seed: int, noise: Sequence[float]) -> list[dict[str, Any]]:
    """The shipped models and their noisy copies (``noise``: relative scales, 0 the original), checkpoints written
    under ``folder``; seeded by ``seed``."""
    import torch

    os.makedirs(folder, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    entries = []
    for base in zoo_models(benchmark):
        weights = torch.load(base["checkpoint"], weights_only=True)
        for level in noise:
            name = f"{base['name']}_n{level:g}"
            copy = {key: value + level * value.float().std() * torch.randn(value.shape, generator=generator)
                    if value.is_floating_point() and value.dim() > 1 else value for key, value in weights.items()}
            path = os.path.join(folder, f"{name}.pt")
            torch.save(copy, path)
            entries.append({**base, "name": name, "checkpoint": path})
    return entries


def _config(work: str, data: str, seed: int, top_k: int, noise: Sequence[float], n_pixels: int,
            stages: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """The run config of the race (``stages``) or, with ``stages`` None, of the full run, into one store."""
    models = zoo(os.path.join(work, f"zoo-{seed}"), data, seed, noise)
    output = os.path.join(work, f"{'full' if stages is None else 'race'}-{seed}")
    raw = {"store": os.path.join(work, f"store-{seed}"), "output": output,
           "target": city_spec(read_zoo()["target"], data), "models": models,
           "otce": {"n_pixels": n_pixels, "repeats": 10, "seed": seed}, "baselines": {"metrics": []},
           "extraction": {"pixels_per_image": 250, "batch_size": 8, "num_shards": 16}}
    if stages is not None:
        raw["racing"] = {"top_k": top_k, "stages": list(stages)}
    return raw


def _one_seed(work: str, data: str, seed: int, top_k: int, noise: Sequence[float], n_pixels: int,
              stages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from otce_ray.config import parse_config
    from otce_ray.leaderboard import load_results
    from otce_ray.pipeline import run
    from otce_ray.pipeline.racing import read_stages

    race_config = parse_config(_config(work, data, seed, top_k, noise, n_pixels, stages), base_dir=work)
    started = time.perf_counter()
    race_board = run(race_config, progress=False)
    race_seconds = time.perf_counter() - started
    race_images = store_images(race_config.store)
    full_config = parse_config(_config(work, data, seed, top_k, noise, n_pixels, None), base_dir=work)
    started = time.perf_counter()
    full_board = run(full_config, progress=False)
    full_seconds = time.perf_counter() - started
    full_images = store_images(full_config.store)
    race_results = {r.model: r for r in load_results(race_config.output)}
    full_results = {r.model: r for r in load_results(full_config.output)}
    finalists = [name for name, result in race_results.items() if result.status == "ok"]
    record = json.loads(open(os.path.join(race_config.output, "run.json")).read())["racing"]
    race_work = sum(stage["repeat_seconds"] for stage in record["stages"]) + sum(
        race_results[name].score_seconds for name in finalists)
    full_work = sum(result.score_seconds for result in full_results.values() if result.status == "ok")
    stage_pairs = sum(record.n_source * record.n_target for name in race_results
                      for records in read_stages(race_config.output, name)[0].values() for record in records)
    with_ties, strict = recall(full_board, race_board, top_k)
    return {"seed": seed, "top_k_recall": with_ties, "strict_recall": strict,
            "extraction_ratio": round(race_images / full_images, 4), "race_images": race_images,
            "full_images": full_images, "repeat_work_ratio": round(race_work / full_work, 4),
            "race_repeat_seconds": round(race_work, 1), "full_repeat_seconds": round(full_work, 1),
            "pair_work_ratio": round((stage_pairs + sum(_pairs(race_results[name]) for name in finalists))
                                     / sum(_pairs(result) for result in full_results.values()), 4),
            "survivors": [stage["racers"] for stage in record["stages"]] + [len(finalists)],
            "finalists_identical": all(race_results[name].scores == full_results[name].scores for name in finalists),
            "race_top_k": list(race_board["model"][:top_k]), "full_top_k": list(full_board["model"][:top_k]),
            "bias": stage_bias(race_config.output, full_board, record, seed),
            "race_seconds": round(race_seconds, 1), "full_seconds": round(full_seconds, 1)}


def _pairs(result: Any) -> int:
    """Pixel pairs of a finished model's repeats: repeats x source pixels x target pixels."""
    return (len(result.scores) + result.repeats_dropped) * result.n_source * result.n_target


def recall(full: Any, race: Any, k: int) -> tuple[float, float]:
    """(with ties, strict): the share of the race's top k (its finished models ranked 1 to k) that the full run
    ranks in its top k, or (with ties) puts in the group of its k-th model (statistically indistinguishable from it
    by the leaderboard's rule)."""
    ranked = full[full["status"] == "ok"].sort_values("rank")
    top = set(ranked["model"][:k])
    kth_group = ranked["group"].iloc[min(k, len(ranked)) - 1]
    tied = set(ranked.loc[ranked["group"] == kth_group, "model"]) if not _missing(kth_group) else set()
    picked = list(race[race["status"] == "ok"].sort_values("rank")["model"][:k])
    return (sum(name in top | tied for name in picked) / k, sum(name in top for name in picked) / k)


def _missing(value: Any) -> bool:
    return value is None or value != value or str(value) == "<NA>"


def store_images(store: str) -> int:
    """Images extracted into every part of every store under ``store`` (their footers' ``images``)."""
    from otce_ray.store import part_metadata

    total = 0
    for folder, _, names in os.walk(store):
        for name in names:
            if name.endswith(".parquet"):
                total += int((part_metadata(os.path.join(folder, name)) or {}).get("images", 0))
    return total


def stage_bias(race_output: str, full_board: Any, record: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Per stage, how the stage's bounds (recomputed from the race's records) hold against the full run's scores,
    after the shift common to the stage's models: the share inside (``coverage``), the largest miss in half-widths,
    the common shift and the rank correlation of stage means with full scores."""
    from scipy import stats

    from otce_ray.pipeline.racing import read_stages
    from otce_ray.scoring.stopping import StageScores, decide

    full = full_board.set_index("model")["otce"].astype(float)
    out = []
    for stage in record["stages"]:
        number = stage["stage"]
        scores: dict[str, StageScores] = {}
        for name in full.index:
            stages, _ = read_stages(race_output, name)
            if number in stages:
                converged = [r for r in stages[number] if r.converged]
                scores[name] = StageScores(tuple(r.score for r in converged if r.repeat % 2 == 0),
                                           tuple(r.score for r in converged if r.repeat % 2 == 1))
        decision = decide(scores, top_k=record["top_k"], images=stage["images"], quantile=record["quantile"])
        names = list(decision.bounds)
        means = np.array([decision.bounds[name].mean for name in names])
        truth = full[names].to_numpy()
        shift = float(np.mean(means - truth))
        half = np.array([decision.bounds[name].high - decision.bounds[name].mean for name in names])
        miss = np.abs(means - shift - truth) / half
        out.append({"stage": number, "models": len(names), "common_shift": round(shift, 4),
                    "coverage": round(float(np.mean(miss <= 1)), 4), "largest_miss": round(float(miss.max()), 3),
                    "spearman": round(float(stats.spearmanr(means, truth)[0]), 4),
                    "allowance": round(stage["allowance"], 4)})
    return out

