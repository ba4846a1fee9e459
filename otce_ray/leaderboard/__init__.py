"""The leaderboard: per-model result records in, ranked table with intervals and groups out, in five formats.

Pure functions build and render; ``record_result`` / ``load_results`` and the writers are the only I/O, all
through otce_ray.fs so ``output`` may be ``s3://``.
"""

from otce_ray.leaderboard.columns import COLUMNS, Column
from otce_ray.leaderboard.explain import breakdown, per_class_table
from otce_ray.leaderboard.results import ModelResult, load_results, record_result
from otce_ray.leaderboard.table import build_leaderboard, indistinguishable_groups
from otce_ray.leaderboard.writers import write_leaderboard, write_per_class, write_run_json

__all__ = [
    "COLUMNS", "Column", "ModelResult", "breakdown", "build_leaderboard", "indistinguishable_groups",
    "load_results", "per_class_table", "record_result", "write_leaderboard", "write_per_class",
    "write_run_json",
]
