"""Shared by the scoring tests: labelled point clouds, independent references, and a one-thread torch fixture."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Solve on one torch thread (restored after the test).

    On a shared 2-core machine, two OpenMP threads that wait on a busy core make these tiny solves 20-40x slower;
    no assertion depends on the thread count. Importing this fixture into a test module turns it on there.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def clouds(
    n: int, d: int = 4, classes: int = 3, seed: int = 0, *, m: int | None = None, target_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Float64 source (n) and target (m) points around per-class centres, the target shifted and noisier."""
    rng = np.random.default_rng(seed)
    m = n if m is None else m
    target_classes = classes if target_classes is None else target_classes
    centres = rng.normal(scale=2.0, size=(max(classes, target_classes), d))
    ys = rng.integers(0, classes, n)
    yt = rng.integers(0, target_classes, m)
    xs = centres[ys] + rng.normal(size=(n, d))
    xt = centres[yt] + 0.5 + 1.5 * rng.normal(size=(m, d))
    return xs, ys, xt, yt


def squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The dense squared-Euclidean cost, straight from the definition."""
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def label_joint(plan: np.ndarray, ys: np.ndarray, yt: np.ndarray) -> np.ndarray:
    """onehot(ys)^T plan onehot(yt), classes in sorted label order (as the engine indexes them)."""
    _, source = np.unique(ys, return_inverse=True)
    _, target = np.unique(yt, return_inverse=True)
    return np.eye(source.max() + 1)[source].T @ plan @ np.eye(target.max() + 1)[target]


def loop_conditional_entropy(plan: np.ndarray, ys: np.ndarray, yt: np.ndarray) -> float:
    """H(Yt|Ys) of a pixel coupling, accumulated pixel pair by pixel pair with plain loops (no engine code)."""
    total = float(plan.sum())
    joint: dict[tuple[int, int], float] = defaultdict(float)
    source: dict[int, float] = defaultdict(float)
    for i in range(plan.shape[0]):
        for j in range(plan.shape[1]):
            if plan[i, j] > 0:
                joint[int(ys[i]), int(yt[j])] += plan[i, j] / total
                source[int(ys[i])] += plan[i, j] / total
    return -sum(p * math.log(p / source[s]) for (s, _), p in joint.items() if p > 0)


def label_entropy(labels: np.ndarray) -> float:
    """H(Y) of the empirical label distribution."""
    p = np.unique(labels, return_counts=True)[1] / len(labels)
    return float(-(p * np.log(p)).sum())
