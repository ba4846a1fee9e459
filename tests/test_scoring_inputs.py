"""Every bad input to ``otce_score`` is a ValueError whose message names the argument and the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scoring_cases import clouds, one_torch_thread  # noqa: F401 (autouse fixture)

from otce_ray import otce_score
from otce_ray.store import choose_rows

N = 40


def _args() -> dict:
    xs, ys, xt, yt = clouds(N, d=3)
    return {"source_features": xs, "source_labels": ys, "target_features": xt, "target_labels": yt,
            "n_pixels": N, "repeats": 1}


def _poke(array: np.ndarray, value: float) -> np.ndarray:
    array = array.copy()
    array[5, 1] = value
    return array


def _bad_cases():
    xs, ys, xt, yt = clouds(N, d=3)
    return {
        "nan source feature": ({"source_features": _poke(xs, np.nan)}, r"source_features: .*NaN or Inf"),
        "inf target feature": ({"target_features": _poke(xt, -np.inf)}, r"target_features: .*NaN or Inf"),
        "nan torch feature": ({"source_features": torch.from_numpy(_poke(xs, np.nan))}, r"source_features: .*NaN"),
        "dims differ": ({"target_features": xt[:, :2]}, r"target_features: dimension 2 differs .* 3"),
        "1-D features": ({"source_features": xs[:, 0]}, r"source_features: expected a 2-D array"),
        "text features": ({"source_features": xs.astype(str)}, r"source_features: expected a numeric array"),
        "labels too short": ({"source_labels": ys[:-1]}, r"source_labels: has 39 labels but source_features has 40"),
        "labels too long": ({"target_labels": np.append(yt, 0)}, r"target_labels: has 41 labels"),
        "2-D labels": ({"target_labels": yt[:, None]}, r"target_labels: expected a 1-D array"),
        "float labels": ({"target_labels": yt.astype(float)}, r"target_labels: expected integer labels"),
        "bool labels": ({"source_labels": ys > 0}, r"source_labels: expected integer labels"),
        "all ignored": ({"source_labels": np.full(N, 255)}, r"source_labels: no pixel left after .*ignore_index=255"),
        "all ignored (custom)": ({"target_labels": np.zeros(N, int), "ignore_index": 0}, r"target_labels: no pixel"),
        "n_pixels 1": ({"n_pixels": 1}, r"n_pixels: expected an integer from 2 to"),
        "n_pixels float": ({"n_pixels": 10.0}, r"n_pixels: expected an integer"),
        "repeats 0": ({"repeats": 0}, r"repeats: expected an integer from 1 to"),
        "unknown solver": ({"solver": "greenkhorn"}, r"solver: expected one of sinkhorn, emd, got 'greenkhorn'"),
        "zero epsilon": ({"epsilon": 0.0}, r"epsilon: expected a number > 0, got 0.0"),
        "nan epsilon": ({"epsilon": float("nan")}, r"epsilon: expected a finite number > 0"),
        "unknown device": ({"device": "banana"}, r"device: unknown device 'banana'"),
        "unsupported device": ({"device": "meta"}, r"device: unsupported device 'meta'"),
        "unknown cost scale": ({"cost_scale": "p90"}, r"cost_scale: expected one of median, .*, got 'p90'"),
        "unknown cost scale (emd)": ({"cost_scale": "p90", "solver": "emd"}, r"cost_scale: expected one of"),
        "unknown setting": ({"n_pixel": 10}, r"otce_score: .*'n_pixel'.*fields of OTCESettings"),
        "unknown backend": ({"backend": "keops"}, r"backend: expected one of auto, flash_sinkhorn, torch_tiles, got 'keops'"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_value_error_naming_the_argument(case):
    overrides, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        otce_score(**{**_args(), **overrides})


def test_cuda_without_cuda_is_a_value_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device: 'cuda' requested but CUDA is not available"):
        otce_score(**_args(), device="cuda")
    assert otce_score(**_args(), device="auto").device == "cpu"


def test_bad_values_on_ignored_pixels_are_dropped_first():
    """A NaN on a pixel labelled ignore_index is never used, so it is not an error."""
    args = _args()
    args["source_features"] = _poke(args["source_features"], np.nan)
    args["source_labels"] = args["source_labels"].copy()
    args["source_labels"][5] = 255
    result = otce_score(**args)
    assert np.isfinite(result.score) and result.source_pixels_available == N - 1


def test_choose_rows_draws_distinct_sorted_rows_or_all():
    rows = choose_rows(100, 30, 0)
    assert len(rows) == 30 and len(set(rows)) == 30 and rows.min() >= 0 and rows.max() < 100
    assert np.all(np.diff(rows) > 0)
    assert choose_rows(30, 30, 0) is None
