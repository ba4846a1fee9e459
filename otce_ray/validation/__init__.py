"""Does OTCE predict transfer, and which ordering should a user act on? Validation v3: the paper's experiments in
miniature on the procedural benchmark (v3: a single-family intra experiment, non-affine shifts, a zoo with a
quality spread), under a leakage-free protocol, with ground-truth replicates, a noise ceiling, decision-level
results and a pre-registered choice among the estimators, judged on fresh benchmark seeds.

``plan`` says what runs on a seed, ``harness`` runs it (data, sources, leaderboards with baselines, ground truth),
``grid`` re-scores the pre-registered OTCE settings from the stores, ``tables`` writes the per-cell table the
report is computed from, ``protocol`` holds the pre-registered rules, ``analysis`` applies them, ``report`` writes
the tables of the write-up, ``study`` runs it all.
"""
