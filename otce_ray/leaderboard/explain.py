"""Why a model ranks where it does: each target class's part in H(Yt|Ys), and the label map the transport found.

Each OTCE repeat yields a joint table P(ys, yt) over the source and target classes present in its samples. Its
conditional entropy splits by target class (``otce_ray.scoring.entropy.class_contributions``); averaged over the
repeats that make the score, the contributions add up to -OTCE. A class that dominates the sum is where the source
model's features do not separate the target's labels. The label map P(yt | ys), averaged the same way, shows which
source class the transport sends to which target class. Pure functions over the repeats' records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from otce_ray.scoring.entropy import class_contributions
from otce_ray.scoring.repeat import RepeatRecord

if TYPE_CHECKING:  # results.py builds its records with ``breakdown``
    from otce_ray.leaderboard.results import ModelResult

PER_CLASS_COLUMNS = ("model", "class_id", "class_name", "target_share", "contribution")


def breakdown(repeats: Sequence[RepeatRecord]) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """(per target class: share and contribution, label map) averaged over ``repeats``; classes a repeat's sample
    missed count 0 in it."""
    if not repeats:
        return {}, {}
    sources = sorted({int(c) for record in repeats for c in record.source_classes})
    targets = sorted({int(c) for record in repeats for c in record.target_classes})
    shares, contributions = np.zeros(len(targets)), np.zeros(len(targets))
    maps, seen = np.zeros((len(sources), len(targets))), np.zeros((len(sources), 1))
    for record in repeats:
        rows = [sources.index(int(c)) for c in record.source_classes]
        cols = [targets.index(int(c)) for c in record.target_classes]
        joint = np.asarray(record.joint, dtype=np.float64)
        joint = np.clip(joint, 0.0, None) / joint.sum()
        shares[cols] += joint.sum(axis=0)
        contributions[cols] += class_contributions(joint)
        row_mass = joint.sum(axis=1, keepdims=True)
        maps[np.ix_(rows, cols)] += np.divide(joint, row_mass, out=np.zeros_like(joint), where=row_mass > 0)
        seen[rows] += row_mass > 0
    count = len(repeats)
    per_class = {str(c): {"share": float(s / count), "contribution": float(v / count)}
                 for c, s, v in zip(targets, shares, contributions)}
    # each source class's row is averaged over the repeats whose sample had it
    label_map = {"source_classes": sources, "target_classes": targets,
                 "p_target_given_source": np.divide(maps, seen, out=maps, where=seen > 0).round(6).tolist()}
    return per_class, label_map


def per_class_table(results: Sequence[ModelResult], names: Mapping[int, str]) -> pd.DataFrame:
    """``per_class.csv``: one row per (ok model, target class), class names where the dataset format has them."""
    rows = [{"model": result.model, "class_id": int(class_id), "class_name": names.get(int(class_id), class_id),
             "target_share": entry["share"], "contribution": entry["contribution"]}
            for result in results if result.status == "ok"
            for class_id, entry in sorted(result.per_class.items(), key=lambda item: int(item[0]))]
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))
