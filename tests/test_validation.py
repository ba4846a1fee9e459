"""The validation harness end to end on a tiny setting: 2 targets, 3 intra sources each, 2x2 inter sources."""

from __future__ import annotations

import numpy as np
import pandas as pd

from otce_ray.finetune import FineTuneSettings
from otce_ray.store.reader import Pixels
from otce_ray.validation import INTER, INTRA, Plan, Setting, rescore, run_validation, summarise, train_sources
from otce_ray.validation.alternatives import per_image

TINY = Plan(
    cities=4, images_per_city=8, size=(32, 64), training_steps=2,
    intra_architecture=("fcn8s", {"width": 4}), intra_cities=("alpha", "beta", "gamma", "delta"),
    targets=("gamma", "delta"), inter_cities=("alpha", "beta"),
    inter_architectures={"fcn8s": ("fcn8s", {"width": 4}), "pspnet-d8": ("pspnet", {"width": 4, "feature_dim": 8})},
    n_pixels=100, repeats=2, pixels_per_image=20,
    finetune=FineTuneSettings(train_images=4, eval_images=4, steps=2, batch_size=2),
)


def test_sources_never_include_the_target_city():
    assert [s.city for s in TINY.sources_for(INTRA, "gamma")] == ["alpha", "beta", "delta"]
    assert {s.name for s in TINY.sources_for(INTER, "gamma")} == {
        "fcn8s_alpha", "fcn8s_beta", "pspnet-d8_alpha", "pspnet-d8_beta"}


def test_per_image_keeps_at_most_k_pixels_of_each_image():
    ids = np.array(["a"] * 5 + ["b"] * 2, dtype=object)
    pixels = Pixels(np.zeros((7, 2), np.float32), np.zeros(7, np.int64), None, ids, np.zeros(7), np.zeros(7), {})
    rows = per_image(pixels, 3)
    assert sorted(ids[rows]) == ["a", "a", "a", "b", "b"]
    assert len(per_image(pixels, None)) == 7


def test_tiny_validation_end_to_end(ray_local, tmp_path):
    table, timings = run_validation(TINY, tmp_path, log=lambda *_: None)
    assert set(zip(table.experiment, table.target)) == {(e, t) for e in (INTRA, INTER) for t in ("gamma", "delta")}
    otce = table[table.metric == "otce"]
    assert (otce.n_models == [3, 3, 4, 4]).all()
    assert (tmp_path / "intra" / "gamma" / "evaluation" / "evaluation.csv").exists()
    assert len(timings["train_seconds_per_model"]) == 6  # fcn8s on alpha and beta serves both experiments
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "evaluations.csv")[["pearson"]], table[["pearson"]])
    # A rerun would train nothing: every checkpoint is there.
    assert train_sources(TINY, TINY.sources(INTRA), str(tmp_path / "benchmark"), tmp_path / "weights") == {}
    # Re-scoring the stored pixels: one row per (setting, target), correlations defined.
    settings = [Setting(0.05, "median", 100), Setting(0.1, "none", 100, 10, standardise=True)]
    out = tmp_path / "alternatives.csv"
    alternatives = rescore(TINY, tmp_path, settings, out=out)
    assert len(alternatives) == 4
    assert alternatives[["pearson", "kendall"]].abs().le(1).all().all()
    assert list(summarise(alternatives).setting) == [setting.label for setting in settings]
    # Rows already in the CSV are not recomputed.
    pd.testing.assert_frame_equal(rescore(TINY, tmp_path, settings, out=out), alternatives)
