"""Parquet pixel stores: ``{store}/{dataset}/{model}/part-{shard:05d}.parquet`` plus a completion manifest.

``store`` is a local folder or ``s3://bucket/prefix``. Writers (extraction) use ``pixel_table``/``write_part``/
``write_manifest``; readers (scoring) use ``is_complete``, ``read_pixels`` and ``read_samples``.
"""

from otce_ray.store.layout import manifest_uri, model_uri, part_uri
from otce_ray.store.parts import (
    is_complete,
    part_metadata,
    read_manifest,
    retract_manifest,
    write_manifest,
    write_part,
)
from otce_ray.store.reader import PixelSamples, Pixels, read_pixels, read_samples
from otce_ray.store.schema import FEATURE_DTYPES, StoreError, pixel_schema, pixel_table

__all__ = [
    "FEATURE_DTYPES",
    "PixelSamples",
    "Pixels",
    "StoreError",
    "is_complete",
    "manifest_uri",
    "model_uri",
    "part_metadata",
    "part_uri",
    "pixel_schema",
    "pixel_table",
    "read_manifest",
    "read_pixels",
    "read_samples",
    "retract_manifest",
    "write_manifest",
    "write_part",
]
