"""Conditional entropy H(Yt|Ys) of a joint label table (natural log)."""

from __future__ import annotations

import numpy as np


def conditional_entropy(joint: np.ndarray) -> float:
    """H(Yt|Ys) = -sum P(ys, yt) log(P(ys, yt) / P(ys)) for a table indexed [source label, target label].

    The table is renormalised to sum to one (a coupling from an iterative solver carries its marginal error);
    empty cells contribute nothing (0 log 0 = 0).
    """
    joint = np.asarray(joint, dtype=np.float64)
    total = joint.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"joint: the label joint must have positive finite mass, got {total!r}")
    joint = np.clip(joint, 0.0, None) / total
    source_marginal = joint.sum(axis=1, keepdims=True)
    cells = joint > 0
    ratio = np.divide(joint, source_marginal, out=np.ones_like(joint), where=cells)
    return float(-(joint[cells] * np.log(ratio[cells])).sum())
