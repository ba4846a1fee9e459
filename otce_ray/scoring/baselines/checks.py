"""Input checks shared by the baselines, in the engine's style: every bad input is a ValueError naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from otce_ray.scoring.inputs import _to_numpy

MIN_PIXELS = 2
MIN_CLASSES = 2  # a single-class target has nothing to transfer to: every metric would be a constant


def matrix(array: Any, name: str) -> np.ndarray:
    """A finite 2-D numeric (pixels, dims) array as float64."""
    values = _to_numpy(array, name)
    if values.ndim != 2 or values.shape[1] < 1:
        raise ValueError(f"{name}: expected a 2-D array (pixels, dims) with a column or more, got shape {values.shape}")
    numeric = np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)
    if values.dtype == np.bool_ or not numeric:
        raise ValueError(f"{name}: expected a numeric array, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).any(axis=1).sum())
        raise ValueError(f"{name}: {bad} pixel(s) have NaN or Inf values")
    return values


def classes(labels: Any, name: str, rows: int, rows_name: str) -> tuple[np.ndarray, int]:
    """Integer labels aligned with ``rows`` rows of ``rows_name``, as contiguous class indices and the class count."""
    values = _to_numpy(labels, name)
    if values.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels, got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
        raise ValueError(f"{name}: expected integer labels, got dtype {values.dtype}")
    if len(values) != rows:
        raise ValueError(f"{name}: has {len(values)} labels but {rows_name} has {rows} rows")
    if rows < MIN_PIXELS:
        raise ValueError(f"{name}: needs at least {MIN_PIXELS} pixels, got {rows}")
    class_values, indices = np.unique(values, return_inverse=True)
    if len(class_values) < MIN_CLASSES:
        raise ValueError(f"{name}: needs at least {MIN_CLASSES} classes, got {len(class_values)}")
    return indices.astype(np.int64), len(class_values)


def labelled(array: Any, labels: Any, name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Check a (pixels, dims) array and its labels together: ``(values, class indices, class count)``."""
    values = matrix(array, name)
    indices, count = classes(labels, labels_name, len(values), name)
    return values, indices, count


def positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        np.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def count_at_least(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)
