"""otce-ray: rank pretrained segmentation models by OTCE transferability to a target dataset, on Ray.

Data flow (one subpackage each): datasets -> models -> extraction -> store (Parquet pixel stores)
-> scoring (OT numerics and the K-repeat estimator) -> leaderboard.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["OTCEResult", "RepeatRecord", "otce_score", "__version__"]


def __getattr__(name: str) -> Any:
    """Import the estimator (and torch) on first use, so ``otce-ray --help`` and light imports stay fast."""
    if name in ("OTCEResult", "RepeatRecord", "otce_score"):
        from otce_ray.scoring import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'otce_ray' has no attribute {name!r}")
