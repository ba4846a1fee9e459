"""Conditional entropy H(Yt|Ys) of a joint label table (natural log), and its split by target class."""

from __future__ import annotations

import numpy as np


def conditional_entropy(joint: np.ndarray) -> float:
    """H(Yt|Ys) = -sum P(ys, yt) log(P(ys, yt) / P(ys)) for a table indexed [source label, target label].

    The table is renormalised to sum to one (a coupling from an iterative solver carries its marginal error);
    empty cells contribute nothing (0 log 0 = 0).
    """
    return float(class_contributions(joint).sum())


def class_contributions(joint: np.ndarray) -> np.ndarray:
    """Each target class's part of H(Yt|Ys): ``-sum_ys P(ys, yt) log P(yt | ys)``, one value per column of ``joint``.

    They add up to the conditional entropy, so a target class with a large part is one the source labels (as the
    transport matches them) say little about.
    """
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"joint: the label joint must have positive finite mass, got {total!r}")
    joint = np.clip(joint, 0.0, None) / total
    source_marginal = joint.sum(axis=1, keepdims=True)
    cells = joint > 0
    ratio = np.divide(joint, source_marginal, out=np.ones_like(joint), where=cells)
    return -np.where(cells, joint * np.log(ratio), 0.0).sum(axis=0)
