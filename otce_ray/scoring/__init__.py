"""Scoring: the OTCE numerics (pure functions over arrays) and the K-repeat estimator.

- ``inputs``: validation, ``ignore_index`` filtering, one side's valid pixels and the rows a repeat draws.
- ``cost_scale``: the scale eps is measured against, so that a model's score does not depend on its feature units.
- ``sinkhorn``: the entropic OT loop (eps-scaling, coarse correction, Anderson acceleration, stopping, remedies) and
  the label joint of its plan; ``backends``: the seam it runs over (the streamed torch tile backend) and the
  registry of backends by name;
  ``coarse``: the correction over k-means groups of points; ``anderson``: the extrapolation; ``merge``: duplicate
  pixels as weighted points.
- ``exact``: exact OT (POT's network simplex), as in the authors' public code.
- ``entropy``: conditional entropy of target labels given source labels from a joint table.
- ``settings``: ``OTCESettings``, every knob that decides a score, declared once.
- ``repeat``: ``score_repeat``, the one repeat unit (sample, standardise, solve) every path runs.
- ``estimator``: ``otce_score``, the user-facing estimator over K repeats; ``summary``: their mean and interval.
- ``baselines``: the published metrics OTCE is compared with (LEEP, N-LEEP, NCE, H-score, LogME, GBC, TransRate,
  JC-OTCE), also pure functions.
"""

# Bump with any change that can move a score for the same inputs (a solver fix, a new stopping rule, a baseline's
# formula): a rerun then rescores instead of reusing results computed before the change.
ENGINE_VERSION = 3
