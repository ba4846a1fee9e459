"""The stress corpus: every repeat of every case converges to the tolerance and agrees with POT's sinkhorn_log.

Small sizes here (``TEST_CORPUS``); ``otce-ray bench ot --corpus stress`` runs the bench sizes. The three largest
cases (N = 10,000, and d = 2,048 at N = 2,000) run here too, without a POT reference (its n x n log-sum-exps would
take hours): they take a few seconds because flat-colour ReLU features merge into a few thousand distinct points.
"""

from __future__ import annotations

import numpy as np
import pytest
from scoring_cases import one_torch_thread  # noqa: F401 (fixture)

from otce_ray import otce_score
from otce_ray.scoring.sinkhorn import DEFAULT_TOLERANCE
from otce_ray.bench.stress import BUILDERS, TEST_CORPUS, pot_reference, stress_case

REPEATS = 3


@pytest.mark.parametrize("name, n", TEST_CORPUS, ids=[f"{name}-{n}" for name, n in TEST_CORPUS])
def test_every_repeat_converges_and_the_score_agrees_with_pot(name, n):
    case = stress_case(name, n)
    whole = otce_score(case.source_features, case.source_labels, case.target_features, case.target_labels,
                       n_pixels=n, repeats=1, **case.options).repeats[0]
    reference = pot_reference(case, DEFAULT_TOLERANCE)
    assert reference.marginal_error <= DEFAULT_TOLERANCE / 10
    assert whole.converged and whole.marginal_error <= DEFAULT_TOLERANCE == whole.tolerance
    assert abs(whole.conditional_entropy - reference.conditional_entropy) <= 1e-3
    # Repeats on seeded subsamples of the same clouds: each converges, none needs a remedy it does not name.
    sampled = otce_score(case.source_features, case.source_labels, case.target_features, case.target_labels,
                         n_pixels=n * 2 // 3, repeats=REPEATS, seed=7, **case.options)
    assert sampled.dropped == 0 and all(record.converged for record in sampled.repeats)
    assert all(record.marginal_error <= DEFAULT_TOLERANCE for record in sampled.repeats)
    assert all(record.remedy in (None, "plain", "float64") for record in sampled.repeats)


@pytest.mark.parametrize("name, n", [("relu_flat", 10_000), ("relu_flat_standardised_eps0.01", 10_000),
                                     ("d2048", 2000)])
def test_the_largest_cases_converge(name, n):
    case = stress_case(name, n)
    result = otce_score(case.source_features, case.source_labels, case.target_features, case.target_labels,
                        n_pixels=n, repeats=1, **case.options)
    record = result.repeats[0]
    assert record.converged and record.marginal_error <= DEFAULT_TOLERANCE and np.isfinite(result.score)


def test_the_corpus_covers_what_the_issue_lists():
    dims = {stress_case(name, 100).dim for name in BUILDERS}
    assert min(dims) == 3 and max(dims) == 2048
    case = stress_case("relu_flat", 500)
    assert (case.source_features == 0).mean() > 0.3  # ReLU-sparse
    assert len(np.unique(case.source_features, axis=0)) < case.n / 2  # flat regions: exact duplicates
    tiny = stress_case("tiny_class", 200)
    assert np.bincount(tiny.source_labels).min() == 1 and np.bincount(tiny.target_labels)[2] == 1
    assert np.bincount(stress_case("huge_imbalance", 500).source_labels).max() > 0.95 * 500
    small, large = stress_case("scale_1e-3", 100), stress_case("scale_1e3", 100)
    np.testing.assert_allclose(large.source_features, small.source_features * 1e6, rtol=1e-5)


def test_the_same_seed_gives_the_same_case():
    first, again, other = stress_case("relu_flat", 300, seed=4), stress_case("relu_flat", 300, seed=4), \
        stress_case("relu_flat", 300, seed=5)
    assert np.array_equal(first.source_features, again.source_features)
    assert np.array_equal(first.target_labels, again.target_labels)
    assert not np.array_equal(first.source_features, other.source_features)
