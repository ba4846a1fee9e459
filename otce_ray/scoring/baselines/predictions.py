"""Baselines over source-class predictions on target pixels: LEEP, N-LEEP (predictions from a GMM) and NCE.

Higher means more transferable; all three are expected log-likelihoods of the target label, so at most 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from otce_ray.scoring.baselines.checks import count_at_least, labelled, positive
from otce_ray.scoring.baselines.features import pca
from otce_ray.scoring.entropy import conditional_entropy

NLEEP_VARIANCE = 0.8  # Li et al. keep the principal components that explain 80% of the variance
NLEEP_COMPONENTS_PER_CLASS = 5  # and fit a GMM with 5 components per target class


def _leep(probabilities: np.ndarray, classes: np.ndarray, count: int) -> float:
    """Mean log of the expected empirical prediction sum_z theta(x)_z P(y | z), with P(y | z) from the soft joint."""
    joint = probabilities.T @ np.eye(count)[classes]  # (source classes, target classes), unnormalised
    mass = joint.sum(axis=1, keepdims=True)
    conditional = np.divide(joint, mass, out=np.zeros_like(joint), where=mass > 0)
    expected = np.einsum("iz,iz->i", probabilities, conditional[:, classes].T)
    return float(np.mean(np.log(expected)))


def leep(source_logits: Any, target_labels: Any) -> float:
    """LEEP (Nguyen et al. 2020): the log-likelihood of the target labels under the source model's softmax
    predictions composed with the empirical P(target label | source label). 0 when the source prediction
    determines the target label; -H(Yt) when it carries no information about it.
    """
    logits, classes, count = labelled(source_logits, target_labels, "source_logits", "target_labels")
    return _leep(softmax(logits, axis=1), classes, count)


def nleep(
    features: Any,
    labels: Any,
    *,
    variance: float = NLEEP_VARIANCE,
    components_per_class: int = NLEEP_COMPONENTS_PER_CLASS,
    seed: int = 0,
) -> float:
    """N-LEEP (Li et al. 2021): LEEP with the source classifier replaced by the posteriors of a Gaussian mixture
    (full covariances, ``components_per_class`` x classes components, at most one per pixel) fitted on the
    features reduced by PCA to ``variance`` of their variance. Works without the source head; seeded by ``seed``.
    """
    x, classes, count = labelled(features, labels, "features", "labels")
    variance = positive(variance, "variance")
    if variance >= 1:
        raise ValueError(f"variance: expected a fraction in (0, 1), got {variance!r}")
    components = min(count_at_least(components_per_class, "components_per_class", 1) * count, len(x))
    reduced = pca(x, variance)
    # EM on full covariances makes many tiny (dims x dims) BLAS calls, for which BLAS threads cost more than they
    # save: 5x (10k pixels, 49 dims) to 50x (small inputs) slower with 2 threads than with one on a busy 2-core box.
    with threadpool_limits(limits=1, user_api="blas"):
        mixture = GaussianMixture(n_components=components, covariance_type="full", random_state=seed).fit(reduced)
        posteriors = mixture.predict_proba(reduced)
    return _leep(posteriors, classes, count)


def nce(source_logits: Any, target_labels: Any) -> float:
    """NCE (Tran et al. 2019): -H(Yt | Ys) with Ys the source model's argmax label on the same target pixels.

    0 when the source labels determine the target labels; -H(Yt) when they are independent of them.
    """
    logits, classes, count = labelled(source_logits, target_labels, "source_logits", "target_labels")
    joint = np.zeros((logits.shape[1], count))
    np.add.at(joint, (logits.argmax(axis=1), classes), 1.0)
    return -conditional_entropy(joint)
