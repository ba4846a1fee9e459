"""otce-ray: rank pretrained segmentation models by OTCE transferability to a target dataset, on Ray.

Data flow (one subpackage each): datasets -> models -> extraction -> store (Parquet pixel stores)
-> scoring (OT numerics and the K-repeat estimator) -> leaderboard.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["OTCEResult", "RepeatRecord", "calibrate", "otce_score", "rank", "__version__"]


def __getattr__(name: str) -> Any:
    """Import the estimator (and torch), the run and the calibration on first use, so ``otce-ray --help`` and
    light imports stay fast."""
    if name in ("OTCEResult", "RepeatRecord", "otce_score"):
        from otce_ray.scoring import estimator

        return getattr(estimator, name)
    if name == "rank":  # the leaderboard of a run config, as a DataFrame (otce_ray.pipeline.run.rank)
        from otce_ray.pipeline import rank

        return rank
    if name == "calibrate":  # a check of it on the user's data (otce_ray.evaluation.calibration.calibrate)
        from otce_ray.evaluation.calibration import calibrate

        return calibrate
    raise AttributeError(f"module 'otce_ray' has no attribute {name!r}")
