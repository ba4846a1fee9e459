"""Does OTCE predict transfer on the procedural benchmark? The paper's intra- and inter-dataset experiments in
miniature (``harness``) and other OTCE settings re-scored on the same pixel stores (``alternatives``)."""

from otce_ray.validation.alternatives import Setting, default_settings, rescore, summarise
from otce_ray.validation.harness import INTER, INTRA, Plan, Source, run_target, run_validation, train_sources

__all__ = ["INTER", "INTRA", "Plan", "Setting", "Source", "default_settings", "rescore", "run_target",
           "run_validation", "summarise", "train_sources"]
