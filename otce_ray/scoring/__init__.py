"""Scoring: the OTCE numerics (pure functions over arrays) and the K-repeat estimator.

- ``inputs``: validation, ``ignore_index`` filtering and seeded pixel sampling.
- ``cost_scale``: the scale eps is measured against, so that a model's score does not depend on its feature units.
- ``sinkhorn``: the entropic OT loop (eps-scaling, coarse correction, Anderson acceleration, stopping, remedies) and
  the label joint of its plan; ``backends``: the seam it runs over, with the streamed torch tile backend;
  ``coarse``: the correction over k-means groups of points; ``anderson``: the extrapolation; ``merge``: duplicate
  pixels as weighted points.
- ``exact``: exact OT (POT's network simplex), as in the authors' public code.
- ``entropy``: conditional entropy of target labels given source labels from a joint table.
- ``estimator``: ``otce_score``, the user-facing estimator over K repeats.
- ``stress``: feature clouds that stalled Sinkhorn on real stores, for the tests and the benchmark.
- ``baselines``: the published metrics OTCE is compared with (LEEP, N-LEEP, NCE, H-score, LogME, GBC, TransRate,
  JC-OTCE), also pure functions.
"""

# Bump with any change that can move a score for the same inputs (a solver fix, a new stopping rule, a baseline's
# formula): a rerun then rescores instead of reusing results computed before the change.
ENGINE_VERSION = 3
