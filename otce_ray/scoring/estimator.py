"""The OTCE estimator of the paper (Algorithm 1): K repeats of (sample N pixels per side, solve OT, -H(Yt|Ys))."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any


from otce_ray.scoring.inputs import check_pair, pixel_set, resolve_device
from otce_ray.scoring.repeat import RepeatRecord, score_repeat
from otce_ray.scoring.settings import OTCESettings, not_for_solver
from otce_ray.scoring.summary import summarize_repeats


@dataclass(frozen=True)
class OTCEResult:
    """The estimate over K repeats: ``score``, ``std`` and ``stderr`` over the converged ones, every repeat's record,
    and the settings it was computed under."""

    score: float  # mean of -H(Yt|Ys) (natural log) over the converged repeats; NaN when none converged
    std: float  # sample std over the converged repeats (0 for one)
    stderr: float
    repeats: list[RepeatRecord]  # every repeat, converged or not
    settings: OTCESettings
    device: str
    source_pixels_available: int
    target_pixels_available: int
    dropped: int = 0  # repeats left out of score/std/stderr: they missed the tolerance

    @property
    def converged(self) -> bool:
        return all(record.converged for record in self.repeats)

    @property
    def used_all_source_pixels(self) -> bool:
        return self.source_pixels_available <= self.settings.n_pixels

    @property
    def used_all_target_pixels(self) -> bool:
        return self.target_pixels_available <= self.settings.n_pixels

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["converged"] = self.converged
        return out


def otce_score(
    source_features: Any,
    source_labels: Any,
    target_features: Any,
    target_labels: Any,
    settings: OTCESettings | None = None,
    *,
    ignore_index: int | None = 255,
    device: str = "auto",
    **fields: Any,
) -> OTCEResult:
    """OTCE transferability of a source model to a target task: the mean over repeats of -H(Yt | Ys).

    Each repeat draws ``n_pixels`` pixels per side without replacement, couples them by entropic optimal transport
    on the squared-Euclidean cost between their features, sums the coupling into a joint distribution P(ys, yt) of
    source and target labels, and scores -H(Yt | Ys) in nats (<= 0; higher means the source model's features
    predict the target labels better, so fine-tuning it should transfer better).

    Parameters
    ----------
    source_features : array-like, shape (n_s, d)
        The source model's per-pixel features on source images (numpy or torch; float or integer).
    source_labels : array-like of int, shape (n_s,)
        Their class ids; pixels labelled ``ignore_index`` are dropped.
    target_features : array-like, shape (n_t, d)
        The same model's per-pixel features on target images.
    target_labels : array-like of int, shape (n_t,)
        Their class ids (another label set than the source's is fine).
    settings : OTCESettings, optional
        How to score (``otce_ray.scoring.settings``): N, K, seed, solver, eps and its cost scale, standardise,
        tolerance, iteration cap, backend. Default: the validated defaults, ``OTCESettings()``.
    ignore_index : int or None, default 255
        Pixels with this label are dropped before sampling.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default "auto"
    **fields
        Any field of ``OTCESettings`` set on top of ``settings``: ``n_pixels`` (pixels drawn per side and repeat,
        the paper's N; a side with fewer valid pixels is used whole), ``repeats`` (the paper's K; repeat k draws
        with ``otce_ray.scoring.repeat.sample_seeds(seed, k)``), ``seed``, ``solver`` ("sinkhorn": streamed
        log-domain Sinkhorn, never an n x n array; "emd": exact OT by POT's network simplex), ``epsilon`` (relative
        to the cost scale: the absolute eps, recorded per repeat, is ``epsilon`` x the scale), ``cost_scale``
        (with "median", scaling a model's features by a constant does not change its score), ``standardise``
        (z-score each side's sample on its own: off in the paper, on by default because it predicted fine-tuning
        better on held-out benchmarks), ``tolerance`` (the L1 marginal error a Sinkhorn repeat must reach),
        ``max_iterations``, ``emd_max_iterations``, ``backend``.

    Returns
    -------
    OTCEResult
        ``score``, ``std`` and ``stderr`` over the converged repeats; ``repeats``, one ``RepeatRecord`` per repeat
        (``converged``, ``marginal_error``, ``tolerance``, ``remedy``, ``iterations``, ...); ``dropped``, how many
        repeats missed the tolerance after every remedy and were left out (with a RuntimeWarning).

    Raises
    ------
    ValueError
        On an invalid argument or setting, naming it.

    Notes
    -----
    The Sinkhorn solve (``otce_ray.scoring.sinkhorn``) anneals eps, corrects the potentials by groups of nearby
    pixels, accelerates by Anderson extrapolation and stops on the plan's L1 marginal error. A solve whose
    acceleration stalls continues with plain passes (``remedy="plain"``); one that still misses the tolerance in
    float32 is solved again in float64 (``remedy="float64"``). A repeat that misses it even then is recorded with
    ``converged=False`` and never enters the mean.

    References
    ----------
    .. [1] Y. Tan, Y. Li, S.-L. Huang, "Transferability Estimation for Semantic Segmentation Task", 2023.
    .. [2] M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.

    Examples
    --------
    Three classes whose features sit well apart; the target labels are either a relabelling of the same classes or
    unrelated to the features:

    >>> import numpy as np
    >>> from otce_ray import otce_score
    >>> rng = np.random.default_rng(0)
    >>> centres = 5.0 * rng.normal(size=(3, 8))
    >>> source_labels, target_labels = rng.integers(0, 3, size=400), rng.integers(0, 3, size=400)
    >>> source = centres[source_labels] + rng.normal(size=(400, 8))  # (n_s, d) = (400, 8)
    >>> target = centres[target_labels] + rng.normal(size=(400, 8))
    >>> related = otce_score(source, source_labels, target, (target_labels + 1) % 3, n_pixels=300, repeats=3)
    >>> unrelated = otce_score(source, source_labels, target, rng.integers(0, 3, size=400), n_pixels=300, repeats=3)
    >>> len(related.repeats), related.dropped, all(record.converged for record in related.repeats)
    (3, 0, True)
    >>> related.score > unrelated.score  # the relabelled classes transfer better
    True
    >>> round(unrelated.score, 1)  # labels independent of the features: about -log(3)
    -1.1
    """
    try:
        settings = dataclasses.replace(settings or OTCESettings(), **fields)
    except TypeError as error:  # a keyword that is no field of OTCESettings
        raise ValueError(f"otce_score: {error}; settings are the fields of OTCESettings") from None
    refused = not_for_solver(settings.solver, fields)
    if refused:
        raise ValueError(f"otce_score: {refused}")
    target_device = resolve_device(device)
    source = pixel_set(source_features, source_labels, ignore_index, "source")
    target = pixel_set(target_features, target_labels, ignore_index, "target")
    check_pair(source, target)
    records = [score_repeat(source, target, settings, repeat, target_device) for repeat in range(settings.repeats)]
    scores = [record.score for record in records if record.converged]
    mean, std, stderr = _summary(scores)
    result = OTCEResult(
        score=mean,
        std=std,
        stderr=stderr,
        repeats=records,
        settings=settings,
        device=str(target_device),
        source_pixels_available=len(source),
        target_pixels_available=len(target),
        dropped=len(records) - len(scores),
    )
    if result.dropped:
        worst = max(record.marginal_error for record in records)
        outcome = "the score is NaN" if not len(scores) else f"the score is the mean of the other {len(scores)}"
        warnings.warn(
            f"otce_score: {result.dropped} of {len(records)} repeats stopped with marginal error up to {worst:.2e} "
            f"> tolerance {settings.tolerance:.0e} (at max_iterations={settings.max_iterations}, or when the error "
            f"stopped improving even in float64) and were left out: {outcome} (raise max_iterations or epsilon)",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def _summary(scores: list[float]) -> tuple[float, float, float]:
    """Mean, std and standard error of the converged repeats' scores, computed as the leaderboard computes them."""
    if len(scores) > 1:
        summary = summarize_repeats(scores)
        return summary.mean, summary.std, summary.sem
    return (scores[0], 0.0, 0.0) if scores else (math.nan, math.nan, math.nan)
