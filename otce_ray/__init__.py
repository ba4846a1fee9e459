"""otce-ray: rank pretrained segmentation models by OTCE transferability to a target dataset, on Ray.

Data flow (one subpackage each): datasets -> models -> extraction -> store (Parquet pixel stores)
-> scoring (OT numerics and the K-repeat estimator) -> leaderboard.
"""

from otce_ray.scoring.estimator import OTCEResult, RepeatRecord, otce_score

__version__ = "0.1.0"
__all__ = ["OTCEResult", "RepeatRecord", "otce_score", "__version__"]
