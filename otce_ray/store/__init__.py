"""Parquet pixel stores: ``{store}/{dataset}/{model}/{key}/part-{shard:05d}.parquet`` plus a completion manifest.

``store`` is a local folder or ``s3://bucket/prefix``; ``key`` hashes the settings that decide the store's content.
Writers (extraction) use ``pixel_table``/``write_part``/``write_manifest``; the run plan uses ``read_manifest`` to
tell a complete store; readers (scoring) use ``read_pixels`` and ``read_samples``.
"""

from otce_ray.store.layout import manifest_uri, model_uri, part_uri, store_uri
from otce_ray.store.parts import complete_keys, part_metadata, read_manifest, write_manifest, write_part
from otce_ray.store.reader import PixelSamples, Pixels, read_pixels, read_samples
from otce_ray.store.schema import FEATURE_DTYPES, StoreError, pixel_schema, pixel_table

__all__ = [
    "FEATURE_DTYPES",
    "PixelSamples",
    "Pixels",
    "StoreError",
    "complete_keys",
    "manifest_uri",
    "model_uri",
    "part_metadata",
    "part_uri",
    "pixel_schema",
    "pixel_table",
    "read_manifest",
    "read_pixels",
    "read_samples",
    "store_uri",
    "write_manifest",
    "write_part",
]
