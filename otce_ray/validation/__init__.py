"""Does OTCE predict transfer? The paper's experiments in miniature on the procedural benchmark, under a
leakage-free protocol, with a noise ceiling, the estimator grid, paired tests and held-out benchmark seeds.

``plan`` says what runs, ``tasks`` writes cross-task targets, ``harness`` runs one benchmark seed (data, sources,
leaderboards with baselines, ground truth per fine-tuning seed), ``grid`` re-scores OTCE from the stores under each
estimator setting, ``stats`` holds the statistics as pure functions, ``analysis`` turns scores and ground truth
into correlations, ``choice`` picks the defaults on the selection seeds, ``report`` writes the tables.
"""
