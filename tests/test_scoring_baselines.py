"""Baseline transferability metrics: values known by hand, limits, monotonicity, invariances and bad inputs."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import multivariate_normal

from otce_ray.scoring.baselines import (
    BASELINES,
    Baseline,
    baseline_scores,
    gbc,
    hscore,
    hscore_shrinkage,
    jc_otce,
    leep,
    logme,
    nce,
    nleep,
    transrate,
)
from otce_ray.scoring.estimator import otce_score
from otce_ray.scoring.settings import OTCESettings

FEATURE_METRICS = [hscore, hscore_shrinkage, logme, gbc, transrate, nleep]
LOGIT_METRICS = [leep, nce]


def entropy(labels: np.ndarray) -> float:
    p = np.bincount(labels) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def clusters(separation: float, *, n: int = 240, k: int = 3, d: int = 4, seed: int = 0) -> tuple[np.ndarray, ...]:
    """k balanced classes, unit Gaussian noise around means ``separation`` apart along the first k axes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    features = rng.normal(size=(n, d))
    features[:, :k] += separation * np.eye(k)[labels]
    return features, labels


def rotation(d: int, seed: int = 1) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))[0]


# LEEP ----------------------------------------------------------------------------------------------------------


def test_leep_by_hand():
    # P(a|z1) = 1.3/1.8, P(a|z2) = 0.7/1.2 from the soft joint; EEP per pixel 25/36, 25/72, 47/72.
    logits = np.log([[0.8, 0.2], [0.5, 0.5], [0.5, 0.5]])
    assert leep(logits, np.array([0, 1, 0])) == pytest.approx(np.mean(np.log([25 / 36, 25 / 72, 47 / 72])), abs=1e-12)


def test_leep_deterministic_predictions_score_zero_and_uninformative_score_minus_entropy():
    labels = np.array([0, 0, 1, 2, 2, 2, 1, 0])
    mapping = np.array([3, 0, 4])  # target class -> the source class that always predicts it
    assert leep(50.0 * np.eye(5)[mapping[labels]], labels) == pytest.approx(0.0, abs=1e-12)
    assert leep(np.zeros((len(labels), 5)), labels) == pytest.approx(-entropy(labels), abs=1e-12)


def test_leep_invariances_and_monotonicity():
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    noise = rng.normal(size=(300, 6))
    weak, strong = (noise + s * np.eye(6)[labels] for s in (0.5, 3.0))
    reference = leep(weak, labels)
    assert leep(weak + rng.normal(size=(300, 1)), labels) == pytest.approx(reference, abs=1e-12)  # per-row shift
    assert leep(weak[:, ::-1], labels) == pytest.approx(reference, abs=1e-12)  # source classes permuted
    assert leep(weak, np.array([7, 2, 40])[labels]) == pytest.approx(reference, abs=1e-12)  # target relabelled
    assert -entropy(labels) < reference < leep(strong, labels) < 0


# NCE -----------------------------------------------------------------------------------------------------------


def test_nce_perfect_relabelling_is_zero_and_independent_labels_are_minus_entropy():
    labels = np.array([0, 1, 2, 1, 0, 2, 2])
    assert nce(np.eye(4)[np.array([2, 3, 0])[labels]], labels) == pytest.approx(0.0, abs=1e-12)
    assert nce(np.tile([0.0, 1.0, 0.0], (7, 1)), labels) == pytest.approx(-entropy(labels), abs=1e-12)
    # Every (source, target) pair once: the empirical joint is a product of uniforms, so -H(Yt|Ys) = -log 3.
    source, target = np.divmod(np.arange(6), 3)
    assert nce(np.eye(2)[source], target) == pytest.approx(-math.log(3), abs=1e-12)


def test_nce_by_hand_and_invariances():
    # Source 0 sees targets (0, 0, 1); source 1 sees (1,): H = 3/4 * H(2/3, 1/3).
    logits = np.eye(2)[[0, 0, 0, 1]]
    labels = np.array([0, 0, 1, 1])
    expected = -0.75 * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert nce(logits, labels) == pytest.approx(expected, abs=1e-12)
    assert nce(5.0 * logits - 2.0, np.array([9, 9, 4, 4])) == pytest.approx(expected, abs=1e-12)


# H-score and its shrinkage form --------------------------------------------------------------------------------


def test_hscore_of_one_hot_features_is_classes_minus_one():
    labels = np.repeat(np.arange(4), [3, 5, 2, 6])
    assert hscore(np.eye(4)[labels], labels) == pytest.approx(3.0, abs=1e-9)


def test_hscore_of_two_separated_points_is_one_in_both_forms():
    features, labels = np.array([[-1.0], [1.0], [-1.0], [1.0]]), np.array([0, 1, 0, 1])
    assert hscore(features, labels) == pytest.approx(1.0, abs=1e-12)
    assert hscore_shrinkage(features, labels) == pytest.approx(1.0, abs=1e-12)  # one dimension: no shrinkage


def test_hscore_is_zero_when_class_means_coincide():
    points = np.random.default_rng(0).normal(size=(20, 3))
    features, labels = np.concatenate([points, points]), np.repeat([0, 1], 20)
    assert hscore(features, labels) == pytest.approx(0.0, abs=1e-12)
    assert hscore_shrinkage(features, labels) == pytest.approx(0.0, abs=1e-12)


def test_hscore_invariant_to_invertible_affine_maps():
    features, labels = clusters(1.5)
    mixing = np.random.default_rng(3).normal(size=(4, 4)) + 4 * np.eye(4)
    assert hscore(features @ mixing + 7.0, labels) == pytest.approx(hscore(features, labels), rel=1e-9)


def test_hscore_shrinkage_bounded_by_hscore_and_similarity_invariant():
    features, labels = clusters(1.0, n=60, d=30)
    plain, shrunk = hscore(features, labels), hscore_shrinkage(features, labels)
    assert 0 < shrunk < plain
    moved = 3.0 * features @ rotation(30) - 2.0
    assert hscore_shrinkage(moved, labels) == pytest.approx(shrunk, rel=1e-9)


def test_hscore_shrinkage_uses_the_ledoit_wolf_estimate():
    # Ledoit & Wolf (2004): shrink S towards mu I by a = min(b2, d2) / d2, d2 = |S - mu I|^2, b2 = mean_i
    # |x_i x_i^T - S|^2 / n (Frobenius norms); the between-class covariance is scaled by the same (1 - a).
    features, labels = clusters(1.0, n=40, d=8)
    x = features - features.mean(0)
    sample = x.T @ x / len(x)
    mu = np.trace(sample) / 8
    d2 = np.sum((sample - mu * np.eye(8)) ** 2)
    b2 = np.mean([np.sum((np.outer(row, row) - sample) ** 2) for row in x]) / len(x)
    a = min(b2, d2) / d2
    proportions = np.bincount(labels) / len(labels)
    means = np.stack([x[labels == c].mean(0) for c in range(3)])
    between = (means * proportions[:, None]).T @ means
    expected = np.trace(np.linalg.solve((1 - a) * sample + a * mu * np.eye(8), (1 - a) * between))
    assert 0 < a < 1
    assert hscore_shrinkage(features, labels) == pytest.approx(expected, rel=1e-9)


def test_hscore_shrinkage_stays_bounded_when_covariance_is_singular():
    features, labels = clusters(1.0, n=20, d=50)  # d > n: sample covariance of rank n - 1
    assert 0 < hscore_shrinkage(features, labels) < 2  # k - 1 = 2 bounds the population H-score


# LogME ---------------------------------------------------------------------------------------------------------


def direct_logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Maximise log N(y | 0, I / beta + F F^T / alpha) over (alpha, beta) numerically for each class indicator."""
    n = len(features)

    def negative_evidence(log_params: np.ndarray, target: np.ndarray) -> float:
        alpha, beta = np.exp(log_params)
        covariance = np.eye(n) / beta + features @ features.T / alpha
        return -multivariate_normal(np.zeros(n), covariance).logpdf(target)

    evidences = []
    for c in np.unique(labels):
        target = (labels == c).astype(float)
        best = minimize(negative_evidence, np.zeros(2), args=(target,), method="Nelder-Mead",
                        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        evidences.append(-best.fun / n)
    return float(np.mean(evidences))


def test_logme_reaches_the_maximum_evidence():
    features, labels = clusters(2.0, n=30, d=3)
    value, maximum = logme(features, labels), direct_logme(features, labels)
    assert value <= maximum + 1e-9  # it is the evidence at some (alpha, beta) ...
    assert value == pytest.approx(maximum, abs=1e-6)  # ... and the fixed point is the maximiser


def test_logme_rotation_invariant():
    features, labels = clusters(1.0)
    assert logme(features @ rotation(4), labels) == pytest.approx(logme(features, labels), rel=1e-9)


# GBC -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3])
def test_gbc_of_identical_classes_is_minus_ordered_pairs(count):
    points = np.random.default_rng(0).normal(size=(15, 5))
    features, labels = np.tile(points, (count, 1)), np.repeat(np.arange(count), 15)
    assert gbc(features, labels) == pytest.approx(-count * (count - 1), abs=1e-9)


def test_gbc_by_hand():
    # 1-D classes {0, 2} (mean 1, variance 1) and {-3, 1} (mean -1, variance 4), mean variance 2.5:
    # D_B = (1 - -1)^2 / 2.5 / 8 + log(2.5 / sqrt(1 * 4)) / 2, counted for both ordered pairs.
    features, labels = np.array([[0.0], [2.0], [-3.0], [1.0]]), np.array([0, 0, 1, 1])
    distance = 4 / 2.5 / 8 + 0.5 * math.log(2.5 / 2)
    assert gbc(features, labels) == pytest.approx(-2 * math.exp(-distance), rel=1e-12)


def test_gbc_of_well_separated_classes_is_zero():
    features, labels = clusters(200.0)
    assert -1e-12 < gbc(features, labels) <= 0


def test_gbc_rotation_and_translation_invariant():
    features, labels = clusters(1.0, d=6)
    moved = features @ rotation(6) + 5.0
    assert gbc(moved, labels) == pytest.approx(gbc(features, labels), rel=1e-9)


# TransRate -----------------------------------------------------------------------------------------------------


def test_transrate_of_orthogonal_point_classes():
    # Class c sits at a * e_c: centred, the whole set has k - 1 eigenvalues a^2 / k and each class one point of
    # squared norm a^2 (k - 1) / k, so R(Z) - R(Z|Y) is known in closed form.
    k, a, eps = 3, 1.0, 1e-4
    labels = np.repeat(np.arange(k), 4)
    features = np.zeros((len(labels), 5))
    features[np.arange(len(labels)), labels] = a
    expected = (k - 1) / 2 * math.log(1 + a * a / (k * eps)) - 0.5 * math.log(1 + a * a * (k - 1) / (k * eps))
    assert transrate(features, labels) == pytest.approx(expected, rel=1e-9)


def test_transrate_rotation_and_translation_invariant():
    features, labels = clusters(1.0)
    moved = features @ rotation(4) - 3.0
    assert transrate(moved, labels) == pytest.approx(transrate(features, labels), rel=1e-9)


# N-LEEP --------------------------------------------------------------------------------------------------------


def test_nleep_of_separated_clusters_is_zero():
    features, labels = clusters(100.0, n=150)
    assert nleep(features, labels) == pytest.approx(0.0, abs=1e-6)


def test_nleep_of_label_independent_features_is_about_minus_entropy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 600)
    value = nleep(rng.normal(size=(600, 3)), labels)
    assert value == pytest.approx(-entropy(labels), abs=0.03)


def test_nleep_seeded_and_relabelling_invariant():
    features, labels = clusters(1.0, n=150)
    value = nleep(features, labels, seed=3)
    assert nleep(features, labels, seed=3) == value
    assert nleep(features, labels + 10, seed=3) == pytest.approx(value, abs=1e-12)


# Every single-side metric ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", FEATURE_METRICS, ids=lambda m: m.__name__)
def test_better_separated_features_score_higher(metric):
    assert metric(*clusters(3.0)) > metric(*clusters(0.5))


@pytest.mark.parametrize("metric", FEATURE_METRICS + LOGIT_METRICS, ids=lambda m: m.__name__)
def test_target_label_values_do_not_matter(metric):
    features, labels = clusters(1.0)
    assert metric(features, np.array([-4, 11, 5])[labels]) == pytest.approx(metric(features, labels), abs=1e-12)


def bad_inputs(values_name: str, labels_name: str):
    good_values, good_labels = clusters(1.0, n=12)
    with_nan, with_inf = good_values.copy(), good_values.copy()
    with_nan[3, 1], with_inf[5, 0] = np.nan, np.inf
    return [
        ((with_nan, good_labels), values_name, "NaN or Inf"),
        ((with_inf, good_labels), values_name, "NaN or Inf"),
        ((good_values[:, 0], good_labels), values_name, "2-D"),
        ((good_values[:, :0], good_labels), values_name, "2-D"),
        ((np.full((12, 2), "x"), good_labels), values_name, "numeric"),
        ((good_values, good_labels[:-1]), labels_name, "11 labels"),
        ((good_values, good_labels.astype(float)), labels_name, "integer labels"),
        ((good_values, good_labels > 0), labels_name, "integer labels"),
        ((good_values, good_labels[:, None]), labels_name, "1-D"),
        ((good_values, np.zeros(12, dtype=int)), labels_name, "at least 2 classes"),
        ((good_values[:1], good_labels[:1]), labels_name, "at least 2 pixels"),
    ]


ARGUMENT_NAMES = {**{m: ("features", "labels") for m in FEATURE_METRICS},
                  **{m: ("source_logits", "target_labels") for m in LOGIT_METRICS}}
BAD_CASES = [
    pytest.param(metric, args, name, message, id=f"{metric.__name__}-{i}")
    for metric, names in ARGUMENT_NAMES.items()
    for i, (args, name, message) in enumerate(bad_inputs(*names))
]


@pytest.mark.parametrize(("metric", "args", "name", "message"), BAD_CASES)
def test_bad_inputs_name_the_argument(metric, args, name, message):
    with pytest.raises(ValueError, match=rf"^{name}: .*{message}"):
        metric(*args)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x, y: gbc(x, y, components=0), "components"),
        (lambda x, y: transrate(x, y, eps=0.0), "eps"),
        (lambda x, y: nleep(x, y, variance=1.0), "variance"),
        (lambda x, y: nleep(x, y, variance=-0.5), "variance"),
        (lambda x, y: nleep(x, y, components_per_class=0), "components_per_class"),
    ],
)
def test_bad_settings_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        call(*clusters(1.0, n=30))


# JC-OTCE -------------------------------------------------------------------------------------------------------


def two_sides(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    source_features, source_labels = clusters(2.0, n=120, seed=seed)
    target_features, target_labels = clusters(1.0, n=90, seed=seed + 1)
    return source_features, source_labels, target_features + 0.5, target_labels


def test_jc_otce_with_gamma_one_is_plain_otce():
    sides = two_sides()
    options = {"n_pixels": 80, "repeats": 2, "seed": 4, "epsilon": 0.1}
    plain = otce_score(*sides, **options, standardise=False)  # JC-OTCE as published: features as given
    assert jc_otce(*sides, gamma=1.0, **options).score == pytest.approx(plain.score, rel=1e-5)


def test_jc_otce_label_cost_alone_matches_identical_classes():
    # gamma = 0: only the label distance counts; each target class has a source twin (same pixels), so the plan
    # pairs twins and the target label is certain given the source label.
    features, labels = clusters(1.0, n=90)
    assert jc_otce(features, labels, features, labels + 3, gamma=0.0, epsilon=0.05).score == pytest.approx(0, abs=1e-6)


def test_jc_otce_drops_ignore_index_and_scores_below_zero():
    sides = two_sides()
    source_features, source_labels, target_features, target_labels = sides
    padded = (np.concatenate([target_features, np.full((5, 4), 9.0)]), np.concatenate([target_labels, [255] * 5]))
    result = jc_otce(source_features, source_labels, *padded, repeats=1, epsilon=0.1)
    assert result.score == pytest.approx(jc_otce(*sides, repeats=1, epsilon=0.1).score, abs=1e-12)
    assert -math.log(3) < result.score < 0


@pytest.mark.parametrize("gamma", [-0.1, 1.5, True, "0.5"])
def test_jc_otce_bad_gamma(gamma):
    with pytest.raises(ValueError, match="^gamma: "):
        jc_otce(*two_sides(), gamma=gamma)


def test_jc_otce_dimension_mismatch():
    source_features, source_labels, target_features, target_labels = two_sides()
    with pytest.raises(ValueError, match="^target_features: dimension"):
        jc_otce(source_features, source_labels, target_features[:, :3], target_labels)


# The registry and baseline_scores ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakePixels:
    features: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None


def fake_pixels(logits: bool, seed: int = 0) -> FakePixels:
    features, labels = clusters(1.5, n=150, seed=seed)
    labels = np.where(np.arange(150) % 10 == 0, 255, labels)
    return FakePixels(features, labels, features[:, :3] * 2.0 if logits else None)


def test_registry_names():
    assert set(BASELINES) == {"leep", "nleep", "nce", "hscore", "hscore_shrinkage", "logme", "gbc", "transrate",
                              "jc_otce"}


def test_baseline_scores_all_metrics_seeded():
    source, target = fake_pixels(True, seed=1), fake_pixels(True)
    scores = baseline_scores(source, target, n_pixels=100, seed=2)
    assert list(scores) == list(BASELINES)
    assert all(math.isfinite(value) for value in scores.values())
    assert baseline_scores(source, target, n_pixels=100, seed=2) == scores
    direct = leep(target.logits[target.labels != 255], target.labels[target.labels != 255])
    assert baseline_scores(source, target, metrics=["leep"], n_pixels=1000)["leep"] == pytest.approx(direct, abs=1e-12)


def test_missing_logits_give_nan_with_a_logged_reason_and_the_others_still_score(caplog):
    with caplog.at_level(logging.WARNING):
        scores = baseline_scores(fake_pixels(False, seed=1), fake_pixels(False), metrics=["leep", "nce", "hscore"])
    assert math.isnan(scores["leep"]) and math.isnan(scores["nce"]) and math.isfinite(scores["hscore"])
    assert "baseline leep: cannot be computed" in caplog.text and "logits" in caplog.text


def test_baseline_scores_sample_drops_ignore_index_and_caps_the_pixels(monkeypatch):
    seen = {}
    monkeypatch.setitem(BASELINES, "spy", Baseline("spy", lambda source, target, context: seen.update(
        source=source.labels, target=target.labels, seed=context.seed) or 0.0))
    baseline_scores(fake_pixels(True, seed=1), fake_pixels(True), metrics=["spy"], n_pixels=50, seed=7)
    assert len(seen["target"]) == len(seen["source"]) == 50 and seen["seed"] == 7
    assert 255 not in seen["target"] and 255 not in seen["source"]
    baseline_scores(fake_pixels(True, seed=1), fake_pixels(True), metrics=["spy"], n_pixels=1000)
    assert len(seen["target"]) == 135  # every valid pixel when there are fewer than n_pixels


def test_baseline_scores_pass_engine_settings_to_jc_otce():
    source, target = fake_pixels(True, seed=1), fake_pixels(True)
    loose = baseline_scores(source, target, metrics=["jc_otce"], settings=OTCESettings(epsilon=1.0))
    tight = baseline_scores(source, target, metrics=["jc_otce"], settings=OTCESettings(epsilon=0.05))
    assert loose["jc_otce"] < tight["jc_otce"]  # more blur, more label mixing, higher conditional entropy


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"metrics": ["leep", "otce"]}, "metrics"), ({"n_pixels": 1}, "n_pixels")]
)
def test_baseline_scores_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        baseline_scores(fake_pixels(True), fake_pixels(True), **kwargs)
