"""Scoring's reads and task bodies without Ray: what each store is read for, samples taken from one read giving the
scores that reading each sample gave, and the reasons a baseline is NaN or a repeat unconverged."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest

from otce_ray.leaderboard.results import WARNING_CHARS
from otce_ray.pipeline.tasks import score_baselines, store_reads
from otce_ray.scoring.baselines import BASELINES, Baseline, BaselineSettings, baseline_scores
from otce_ray.scoring.estimator import otce_score
from otce_ray.scoring.repeat import BASELINE_STREAM, sample_seeds, score_repeat
from otce_ray.scoring.settings import OTCESettings
from otce_ray.store import read_pixels, read_samples
from store_cases import write_store

OTCE = OTCESettings(n_pixels=200, repeats=3, seed=5)
BASELINE_SETTINGS = BaselineSettings(metrics=("leep", "hscore", "logme", "jc_otce"), n_pixels=300)


def test_each_store_is_read_for_every_sample_its_tasks_draw():
    reads = store_reads("alpha", "gamma", OTCE, BASELINE_SETTINGS)
    seeds = [(200, sample_seeds(5, repeat)) for repeat in range(3)] + [(300, sample_seeds(5, BASELINE_STREAM))]
    assert reads == {"alpha": ([(size, source) for size, (source, _) in seeds], False),
                     "gamma": ([(size, target) for size, (_, target) in seeds], True)}  # logits: target, baselines
    plain = store_reads("alpha", "gamma", OTCE, BaselineSettings(metrics=()))
    assert {name: (len(samples), logits) for name, (samples, logits) in plain.items()} == {
        "alpha": (3, False), "gamma": (3, False)}
    features_only = store_reads("alpha", "gamma", OTCE, BaselineSettings(metrics=("hscore", "logme")))
    assert features_only["gamma"][1] is False  # no metric there reads logits
    # trained on the target dataset itself: one store, read once for both sides
    shared = store_reads("gamma", "gamma", OTCE, BASELINE_SETTINGS)
    assert shared == {"gamma": (reads["alpha"][0] + reads["gamma"][0], True)}


@pytest.fixture
def stores(tmp_path):
    store = str(tmp_path)
    write_store(store, [1500, 900], dataset="src")
    write_store(store, [700, 1100], dataset="tgt")
    loaded = {dataset: read_samples(store, dataset, "m", samples, with_logits=logits)
              for dataset, (samples, logits) in store_reads("src", "tgt", OTCE, BASELINE_SETTINGS).items()}
    assert len(loaded["src"].pixels) < 2400 and loaded["tgt"].pixels.logits is not None  # a union, not the store
    return store, loaded


def test_repeats_score_what_the_library_call_scores_on_the_whole_stores(stores):
    """The repeat unit on the rows one loader read gives, bit for bit, the repeats of ``otce_score`` on every row of
    both stores in store order (the time each took aside)."""
    store, loaded = stores
    source = read_pixels(store, "src", "m", with_logits=False)
    target = read_pixels(store, "tgt", "m", with_logits=False)
    expected = otce_score(source.features, source.labels, target.features, target.labels, OTCE, device="cpu")
    for repeat in range(OTCE.repeats):
        got = score_repeat(loaded["src"], loaded["tgt"], OTCE, repeat, "cpu")
        assert dataclasses.replace(got, seconds=0.0) == dataclasses.replace(expected.repeats[repeat], seconds=0.0)
        assert (got.n_source, got.n_target) == (200, 200) and got.converged


def test_baselines_score_what_reading_their_sample_from_the_store_scored(stores):
    store, loaded = stores
    got = score_baselines(loaded["src"], loaded["tgt"], BASELINE_SETTINGS, OTCE, "cpu")
    source_seed, target_seed = sample_seeds(OTCE.seed, BASELINE_STREAM)
    expected = baseline_scores(read_pixels(store, "src", "m", sample=300, seed=source_seed),
                               read_pixels(store, "tgt", "m", sample=300, seed=target_seed),
                               metrics=BASELINE_SETTINGS.names(), n_pixels=300, seed=OTCE.seed, settings=OTCE,
                               device="cpu")
    assert got["metrics"] == pytest.approx(expected, rel=1e-12, nan_ok=True)
    assert all(math.isfinite(value) for value in got["metrics"].values()), got["warnings"]


def test_a_baseline_that_raises_or_warns_is_a_recorded_reason(stores, monkeypatch):
    _, loaded = stores

    def broken(source, target, context):
        raise RuntimeError("boom")

    def wobbly(source, target, context):
        for _ in range(2):  # told once
            warnings.warn("the fit wobbled", RuntimeWarning)
        warnings.warn("x" * 1000, UserWarning)
        warnings.warn("old API", DeprecationWarning)  # library upkeep: not recorded
        return 1.5

    monkeypatch.setitem(BASELINES, "logme", Baseline("logme", broken))
    monkeypatch.setitem(BASELINES, "gbc", Baseline("gbc", wobbly))
    settings = BaselineSettings(metrics=("logme", "gbc", "hscore"), n_pixels=300)
    got = score_baselines(loaded["src"], loaded["tgt"], settings, OTCE, "cpu")
    assert math.isnan(got["metrics"]["logme"]) and got["metrics"]["gbc"] == 1.5
    assert math.isfinite(got["metrics"]["hscore"])
    assert got["warnings"] == [
        "baseline logme: cannot be computed, NaN (RuntimeError: boom)",
        "baseline gbc: RuntimeWarning: the fit wobbled",
        ("baseline gbc: UserWarning: " + "x" * 1000)[:WARNING_CHARS],
    ]


def test_an_unconverged_repeat_is_named_with_the_tolerance_it_was_held_to(stores):
    _, loaded = stores
    converged = score_repeat(loaded["src"], loaded["tgt"], OTCE, 0, "cpu")
    assert converged.converged and converged.warning("sinkhorn") is None
    unconverged = dataclasses.replace(converged, repeat=3, converged=False, marginal_error=2.04e-3, tolerance=2e-4)
    assert unconverged.warning("sinkhorn") == (
        "repeat 3: sinkhorn missed its tolerance (marginal error 2.0e-03 > 2e-04): dropped from the score")
