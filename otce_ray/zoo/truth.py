"""The zoo's fine-tuning ground truth (``ground_truth.csv``), regenerated from the zoo's weights under the
leakage-free protocol, and the check that it still belongs to them.

The demo scores the zoo on ``otce_ray.zoo.run_config.scored_target`` (20 seeded target images); the ground truth fine-tunes every model
on exactly those images, once per seed of ``FINETUNE_SEEDS``, and evaluates on the target's other images. The file
holds the mean over the seeds (``log_likelihood``, ``miou``, ``pixel_accuracy``), each seed's log-likelihood (for
the noise ceiling) and the SHA-256 of the checkpoint each row was measured on, so weights retrained without
regenerating the file are caught (:func:`stale_models`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pandas as pd

from otce_ray.finetune import FineTuneSettings
from otce_ray.zoo import GROUND_TRUTH, ZOO_DIR, read_zoo
from otce_ray.zoo.run_config import demo_config

FINETUNE_SEEDS = (0, 1, 2)
SETTINGS = FineTuneSettings(eval_images=20)  # the benchmark's 40 target frames: 20 to train, the other 20 to test


def checkpoint_digests(folder: str | os.PathLike = ZOO_DIR) -> dict[str, str]:
    """SHA-256 of every zoo model's checkpoint, by model name."""
    return {entry["name"]: hashlib.sha256((Path(folder) / entry["checkpoint"]).read_bytes()).hexdigest()
            for entry in read_zoo(folder)["models"]}


def combine(tables: dict[int, pd.DataFrame], digests: dict[str, str]) -> pd.DataFrame:
    """One row per model from the per-seed ground-truth tables: means, per-seed log-likelihoods, checkpoint digest.
    A model that failed on any seed is a failed row."""
    seeds = sorted(tables)
    stacked = pd.concat([table.assign(finetune_seed=seed) for seed, table in tables.items()], ignore_index=True)
    rows = []
    for model, group in stacked.groupby("model", sort=False):
        ok = (group.status == "ok").all()
        row = {"model": model, "status": "ok" if ok else "failed",
               "error": "; ".join(str(e) for e in group.error.dropna()) or None,
               **{m: group[m].mean() if ok else None for m in ("miou", "pixel_accuracy", "log_likelihood")},
               "log_likelihood_sd": group.log_likelihood.std(ddof=1) if ok else None, "seeds": len(seeds)}
        row.update({f"log_likelihood@{s}": v for s, v in zip(group.finetune_seed, group.log_likelihood)})
        rows.append({**row, "checkpoint_sha256": digests[model]})
    return pd.DataFrame(rows)


def regenerate(out: str | os.PathLike = GROUND_TRUTH, work: str | None = None) -> pd.DataFrame:
    """Fine-tune the zoo as the demo scores it and write ``out``; ``work`` keeps the benchmark (a temp dir by
    default)."""
    import tempfile

    from otce_ray.config import parse_config
    from otce_ray.finetune import ground_truth

    with tempfile.TemporaryDirectory(prefix="otce-zoo-truth-") as scratch:
        folder = work or scratch
        config = parse_config(demo_config(folder), base_dir=folder)
        tables = {seed: ground_truth(config, dataclasses.replace(SETTINGS, seed=seed),
                                     os.path.join(folder, f"ground_truth_seed{seed}.csv"))
                  for seed in FINETUNE_SEEDS}
    table = combine(tables, checkpoint_digests())
    table.to_csv(out, index=False)
    return table


def stale_models(table: pd.DataFrame, folder: str | os.PathLike = ZOO_DIR) -> list[str]:
    """Models whose checkpoint is not the one their ground truth was measured on (or that have no row)."""
    recorded = dict(zip(table.model, table.get("checkpoint_sha256", pd.Series(dtype=str))))
    return sorted(name for name, digest in checkpoint_digests(folder).items() if recorded.get(name) != digest)
