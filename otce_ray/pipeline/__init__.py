"""The job: extract what is missing, fan the K OTCE repeats of each model out as Ray tasks, write the leaderboard."""

from otce_ray.pipeline.run import extract, rank, run

__all__ = ["extract", "rank", "run"]
