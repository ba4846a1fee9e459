"""Feature extraction: sample labelled pixels, take the source model's features there, write pixel stores on Ray.

``extract_model`` / ``run_extraction`` (driver.py) are the entry points; ``run_shard`` (shard.py) is the unit of
work; ``extract_pixels`` (pixels.py) and ``sampling.py`` are the pure computation.
"""

from otce_ray.extraction.driver import ExtractionSummary, extract_model, run_extraction
from otce_ray.extraction.pixels import PixelColumns, extract_pixels
from otce_ray.extraction.sampling import pixel_rng, sample_map, sample_pixels
from otce_ray.extraction.shard import ExtractionRequest, ShardResult, run_shard

__all__ = [
    "ExtractionRequest",
    "ExtractionSummary",
    "PixelColumns",
    "ShardResult",
    "extract_model",
    "extract_pixels",
    "pixel_rng",
    "run_extraction",
    "run_shard",
    "sample_map",
    "sample_pixels",
]
