"""JC-OTCE (the TNNLS 2024 successor of OTCE): OTCE with a label-to-label term added to the ground cost.

cost((x, ys), (x', yt)) = g |x - x'|^2 + (1 - g) W(ys, yt), g = 0.5 as reported. The label distance W is the
squared 2-Wasserstein distance between the class-conditional feature distributions of the source class ys (on
source pixels) and the target class yt (on target pixels), each approximated by a Gaussian with diagonal
covariance (the Gaussian approximation of OTDD's label distance). For diagonal Gaussians it has a closed form,

    W(ys, yt) = |mean_ys - mean_yt|^2 + |std_ys - std_yt|^2   (std: per-dimension standard deviations),

a squared Euclidean distance between the class embeddings e_c = [mean_c, std_c]. The whole cost is then the
squared Euclidean cost between augmented points [sqrt(g) x, sqrt(1 - g) e_y], so the engine's streamed solver
computes JC-OTCE unchanged. Both terms are in squared feature units, so g weighs like with like; the sum is
normalised by the engine's cost scale exactly as plain OTCE's feature cost is, and g = 1 is plain OTCE.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from otce_ray.scoring.baselines.features import class_moments
from otce_ray.scoring.estimator import OTCEResult, otce_score
from otce_ray.scoring.inputs import PixelSet, check_pair, pixel_set
from otce_ray.scoring.settings import OTCESettings

JC_OTCE_GAMMA = 0.5


def _augmented(side: PixelSet, gamma: float) -> np.ndarray:
    """[sqrt(g) x, sqrt(1 - g) e_y] with e_c = [mean_c, std_c] over this side's pixels of class c."""
    x = side.features.double().numpy()
    classes = side.classes.numpy()
    _, means, variances = class_moments(x, classes, len(side.class_values))
    embeddings = np.concatenate([means, np.sqrt(variances)], axis=1)
    return np.concatenate([np.sqrt(gamma) * x, np.sqrt(1.0 - gamma) * embeddings[classes]], axis=1)


def jc_otce(
    source_features: Any,
    source_labels: Any,
    target_features: Any,
    target_labels: Any,
    settings: OTCESettings | None = None,
    *,
    gamma: float = JC_OTCE_GAMMA,
    ignore_index: int | None = 255,
    device: str = "auto",
    **fields: Any,
) -> OTCEResult:
    """JC-OTCE of a source model to a target task: -H(Yt | Ys) under the OT plan of the joint feature-label cost.

    Same inputs, settings and result as ``otce_score``; higher is more transferable. The default settings keep the
    features as given (``standardise=False``: z-scoring the augmented columns would undo gamma). The class
    embeddings are computed over all the valid pixels given, before each repeat samples them.
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma: expected a weight in [0, 1], got {gamma!r}")
    source = pixel_set(source_features, source_labels, ignore_index, "source")
    target = pixel_set(target_features, target_labels, ignore_index, "target")
    check_pair(source, target)
    return otce_score(
        _augmented(source, gamma), source.classes.numpy(), _augmented(target, gamma), target.classes.numpy(),
        settings or OTCESettings(standardise=False), ignore_index=None, device=device, **fields,
    )
