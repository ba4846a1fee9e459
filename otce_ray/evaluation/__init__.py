"""Does a transferability score predict transfer? Correlations of each metric with fine-tuning ground truth.

``measures`` holds the pure statistics and the bootstrap, ``evaluate`` the join and the per-metric table, and
``report`` the files (CSV, scatter PNGs, a self-contained HTML page), written through otce_ray.fs.
``across_targets`` judges a metric over many targets and a replicated ground truth: Fisher-z means, the noise
ceiling, a block bootstrap over source models shared by targets, and paired differences between metrics.
"""

from otce_ray.evaluation.evaluate import (
    COLUMNS,
    LOG_MEASURES,
    METRICS,
    STATISTICS,
    evaluate,
    join_ground_truth,
    metric_columns,
    read_table,
)
from otce_ray.evaluation.measures import (
    Estimate,
    bootstrap,
    degenerate_reason,
    kendall,
    pearson,
    spearman,
    top1_relative,
    weighted_kendall,
)
from otce_ray.evaluation.report import evaluate_to, evaluation_markdown, write_report

__all__ = [
    "COLUMNS", "Estimate", "LOG_MEASURES", "METRICS", "STATISTICS", "bootstrap", "degenerate_reason", "evaluate",
    "evaluate_to", "evaluation_markdown", "join_ground_truth", "kendall", "metric_columns", "pearson", "read_table", "spearman",
    "top1_relative", "weighted_kendall", "write_report",
]
