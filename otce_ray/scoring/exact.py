"""Exact OT (POT's network simplex) between two pixel sets, as in the authors' public code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_EMD_MAX_ITERATIONS = 2_000_000  # the authors' segmentation code raises POT's cap to 2e6


@dataclass(frozen=True)
class ExactSolution:
    joint: np.ndarray  # (source classes, target classes), sums to 1
    transport_cost: float
    marginal_error: float


def solve_emd(
    x: np.ndarray,
    y: np.ndarray,
    source_labels: np.ndarray,
    target_labels: np.ndarray,
    source_classes: int,
    target_classes: int,
    *,
    max_iterations: int = DEFAULT_EMD_MAX_ITERATIONS,
) -> ExactSolution:
    """Solve exact OT with uniform marginals on the squared-Euclidean cost (float64) and return the label joint.

    Raises ``ValueError`` when the network simplex stops before optimality (its iteration cap): that plan is not
    an optimal coupling and its score would be wrong.
    """
    import ot

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    cost = ot.dist(x, y, metric="sqeuclidean")
    plan, log = ot.emd(a, b, cost, numItermax=int(max_iterations), log=True)
    if log["result_code"] != 1:
        raise ValueError(
            f"solver='emd': POT's network simplex did not reach the optimum ({log['warning']}); "
            f"raise its iteration cap (max_iterations here, the setting emd_max_iterations; now "
            f"{int(max_iterations)}) or use solver='sinkhorn'"
        )
    source_onehot = np.eye(source_classes)[source_labels]
    target_onehot = np.eye(target_classes)[target_labels]
    joint = source_onehot.T @ (plan @ target_onehot)
    return ExactSolution(
        joint=joint,
        transport_cost=float(log["cost"]),
        marginal_error=float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum()),
    )
