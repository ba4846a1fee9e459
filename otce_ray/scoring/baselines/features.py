"""Baselines over the source model's features on target pixels and the target labels.

Each takes ``features`` (n, d) and integer ``labels`` (n,) of the same target pixels; higher means more transferable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.covariance import ledoit_wolf
from sklearn.decomposition import PCA

from otce_ray.scoring.baselines.checks import count_at_least, labelled, positive

GBC_COMPONENTS = 64  # Pandy et al. reduce features to 64 dimensions by PCA before fitting the class Gaussians
GBC_MIN_VARIANCE = 1e-4  # variance floor of the reference implementation: a constant feature would divide by zero
TRANSRATE_EPS = 1e-4  # distortion eps of Huang et al.'s published code
LOGME_TOLERANCE = 1e-3  # stop when alpha / beta moves by less than this (relative)
LOGME_MAX_ITERATIONS = 100  # the paper observes convergence in a few iterations


def _features(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, int]:
    return labelled(features, labels, "features", "labels")


def pca(x: np.ndarray, n_components: float | int) -> np.ndarray:
    """Project onto principal components: an int keeps that many, a float in (0, 1) that fraction of the variance."""
    return PCA(n_components=n_components, svd_solver="full").fit_transform(x)


def class_moments(x: np.ndarray, classes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(proportions, means, variances)``: (k,), (k, d), (k, d); variances are per dimension, ddof 0."""
    members = [x[classes == c] for c in range(count)]
    proportions = np.array([len(m) for m in members], dtype=np.float64) / len(x)
    return proportions, np.stack([m.mean(0) for m in members]), np.stack([m.var(0) for m in members])


def _covariance(x: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.cov(x, rowvar=False, bias=True))


def _between_class_covariance(x: np.ndarray, classes: np.ndarray, count: int) -> np.ndarray:
    """Cov(E[f | y]) = sum_c p_c (m_c - m)(m_c - m)^T (ddof 0, like the feature covariance it is compared with)."""
    proportions, means, _ = class_moments(x, classes, count)
    centred = means - proportions @ means
    return (centred * proportions[:, None]).T @ centred


def hscore(features: Any, labels: Any) -> float:
    """H-score (Bao et al. 2019): tr(Cov(f)^+ Cov(E[f | y])), the class separation a linear head can exploit.

    In [0, min(d, k - 1)]; invariant to any invertible affine map of the features.
    """
    x, classes, count = _features(features, labels)
    between = _between_class_covariance(x, classes, count)
    return float(np.trace(np.linalg.pinv(_covariance(x), hermitian=True) @ between))


def hscore_shrinkage(features: Any, labels: Any) -> float:
    """Shrinkage-regularised H-score (Ibrahim et al. 2022): tr(Cov_a^{-1} (1 - a) Cov(E[f | y])).

    Cov_a = (1 - a) Cov(f) + a (tr Cov(f) / d) I is the Ledoit-Wolf estimate with its shrinkage a: the plain
    H-score's pseudo-inverse of a high-dimensional sample covariance is what makes it unstable. Never above the
    plain H-score for a full-rank covariance; invariant to rotations, translations and scalings of the features.
    """
    x, classes, count = _features(features, labels)
    covariance, shrinkage = ledoit_wolf(x)
    between = _between_class_covariance(x, classes, count)
    return float(np.trace(np.linalg.pinv(covariance, hermitian=True) @ ((1 - shrinkage) * between)))


def _log_evidence(rotated: np.ndarray, eigenvalues: np.ndarray, target: np.ndarray) -> float:
    """Maximised log evidence per pixel of a Bayesian linear regression of ``target`` on the features.

    ``rotated`` = F V and ``eigenvalues`` = diag(V^T F^T F V). The fixed-point updates of You et al.'s Algorithm 1
    (alpha = gamma / |m|^2, beta = (n - gamma) / |F m - y|^2) stop when alpha / beta settles; the evidence is then
    evaluated at the final (alpha, beta) with their own posterior mean m, so it is exactly log p(y | alpha, beta).
    """
    n, d = rotated.shape
    projected = rotated.T @ target  # V^T F^T y

    def posterior(alpha: float, beta: float) -> tuple[np.ndarray, float, float, float]:
        mean = beta * projected / (alpha + beta * eigenvalues)  # V^T m
        gamma = float(np.sum(beta * eigenvalues / (alpha + beta * eigenvalues)))
        residual = float(np.sum((target - rotated @ mean) ** 2))
        return mean, gamma, residual, float(mean @ mean)

    alpha, beta = 1.0, 1.0
    for _ in range(LOGME_MAX_ITERATIONS):
        _, gamma, residual, norm = posterior(alpha, beta)
        new_alpha, new_beta = gamma / max(norm, 1e-300), (n - gamma) / max(residual, 1e-300)
        settled = abs(new_alpha / new_beta - alpha / beta) <= LOGME_TOLERANCE * alpha / beta
        alpha, beta = new_alpha, new_beta
        if settled:
            break
    _, _, residual, norm = posterior(alpha, beta)
    evidence = (
        d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
        - beta / 2 * residual - alpha / 2 * norm - 0.5 * np.sum(np.log(alpha + beta * eigenvalues))
    )
    return float(evidence / n)


def logme(features: Any, labels: Any) -> float:
    """LogME (You et al. 2021): the maximum log evidence per pixel of a linear model on the features, for each
    class's one-hot indicator as the regression target, averaged over classes.

    A single eigendecomposition of F^T F serves every class. Invariant to rotations of the features.
    """
    x, classes, count = _features(features, labels)
    eigenvalues, vectors = np.linalg.eigh(x.T @ x)
    rotated, eigenvalues = x @ vectors, np.clip(eigenvalues, 0.0, None)
    evidences = [_log_evidence(rotated, eigenvalues, (classes == c).astype(np.float64)) for c in range(count)]
    return float(np.mean(evidences))


def gbc(features: Any, labels: Any, *, components: int = GBC_COMPONENTS) -> float:
    """Gaussian Bhattacharyya Coefficient (Pandy et al. 2022): -sum over ordered class pairs of exp(-D_B).

    Features are reduced by PCA to ``components`` dimensions (fewer when the data has fewer), each class is a
    Gaussian with a *diagonal* covariance (the paper's "diagonal" variant, per-dimension variance floored at 1e-4),
    and D_B is the Bhattacharyya distance between two classes. In [-k(k - 1), 0]: 0 when classes do not overlap.
    """
    x, classes, count = _features(features, labels)
    components = count_at_least(components, "components", 1)
    reduced = pca(x, min(components, *x.shape))
    _, means, variances = class_moments(reduced, classes, count)
    variances = np.maximum(variances, GBC_MIN_VARIANCE)
    average = (variances[:, None, :] + variances[None, :, :]) / 2
    distance = (
        np.sum((means[:, None, :] - means[None, :, :]) ** 2 / average, axis=2) / 8
        + 0.5 * np.sum(np.log(average), axis=2)
        - 0.25 * np.sum(np.log(variances), axis=1)[:, None]
        - 0.25 * np.sum(np.log(variances), axis=1)[None, :]
    )
    off_diagonal = ~np.eye(count, dtype=bool)
    return float(-np.exp(-distance[off_diagonal]).sum())


def _coding_rate(z: np.ndarray, eps: float) -> float:
    """R(Z, eps) = 1/2 log det(I + Z^T Z / (n eps)), the bits needed to code Z up to distortion eps."""
    n, d = z.shape
    return 0.5 * float(np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))[1])


def transrate(features: Any, labels: Any, *, eps: float = TRANSRATE_EPS) -> float:
    """TransRate (Huang et al. 2022): R(Z) - R(Z | Y), the coding rate of all centred features minus the mean
    coding rate of each class's features, as in the paper's code (eps = 1e-4, classes weighted equally).

    Large when the features are rich overall but compact within each class; invariant to rotations and translations.
    """
    x, classes, count = _features(features, labels)
    eps = positive(eps, "eps")
    z = x - x.mean(0)
    return _coding_rate(z, eps) - float(np.mean([_coding_rate(z[classes == c], eps) for c in range(count)]))
