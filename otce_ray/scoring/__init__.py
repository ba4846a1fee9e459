"""Scoring: the OTCE numerics (pure functions over arrays) and the K-repeat estimator.

- ``inputs``: validation, ``ignore_index`` filtering and seeded pixel sampling.
- ``cost_scale``: the scale eps is measured against, so that a model's score does not depend on its feature units.
- ``sinkhorn``: streamed log-domain entropic OT with eps-scaling, and the streamed label joint.
- ``exact``: exact OT (POT's network simplex), as in the authors' public code.
- ``entropy``: conditional entropy of target labels given source labels from a joint table.
- ``estimator``: ``otce_score``, the user-facing estimator over K repeats.
- ``baselines``: the published metrics OTCE is compared with (LEEP, N-LEEP, NCE, H-score, LogME, GBC, TransRate,
  JC-OTCE), also pure functions.
"""

# Bump with any change that can move a score for the same inputs (a solver fix, a new stopping rule, a baseline's
# formula): a rerun then rescores instead of reusing results computed before the change.
ENGINE_VERSION = 2
