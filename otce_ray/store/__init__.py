"""Parquet pixel stores: ``{store}/{dataset}/{model}/{key}/part-{shard:05d}.parquet`` plus a completion manifest.

``store`` is a local folder or ``s3://bucket/prefix``; ``key`` hashes the settings that decide the store's content.
Writers (extraction) use ``pixel_table``/``write_part``/``write_manifest``; the run plan uses ``read_manifest`` to
tell a complete store; readers (scoring) use ``read_pixels`` and ``read_samples``.

Pixels on their way from a store to a score, one container per stage:

- ``Pixels``: rows of one store as read, row-aligned arrays (features, labels, logits when asked for, and where each
  pixel came from when asked for). What ``read_pixels`` returns and what scoring tasks compute on.
- ``PixelSamples``: the rows every seeded sample of a model's tasks draws from one store, read in one pass and kept
  small (stored float16, no provenance), shipped to those tasks as one Ray object; ``sample(size, seed)`` gives
  each task its ``Pixels``.
- ``otce_ray.scoring.inputs.PixelSet``: the engine's own checked view of any features and labels (torch tensors,
  labels as class indices, ignored pixels dropped), built inside ``otce_score`` from arrays or ``Pixels``.
- ``otce_ray.scoring.baselines.PixelsLike``: the protocol the baseline metrics accept: anything with ``features``,
  ``labels`` and ``logits``, as ``Pixels`` has.
"""

from otce_ray.store.layout import manifest_uri, model_uri, part_uri, store_uri
from otce_ray.store.parts import (
    complete_keys,
    missing_parts,
    part_metadata,
    parts_manifest,
    read_manifest,
    set_aside,
    write_manifest,
    write_part,
)
from otce_ray.store.reader import PixelSamples, Pixels, choose_rows, read_pixels, read_samples
from otce_ray.store.schema import FEATURE_DTYPES, StoreError, pixel_schema, pixel_table

__all__ = [
    "FEATURE_DTYPES",
    "PixelSamples",
    "Pixels",
    "StoreError",
    "choose_rows",
    "complete_keys",
    "manifest_uri",
    "missing_parts",
    "model_uri",
    "part_metadata",
    "part_uri",
    "parts_manifest",
    "pixel_schema",
    "pixel_table",
    "read_manifest",
    "read_pixels",
    "read_samples",
    "set_aside",
    "store_uri",
    "write_manifest",
    "write_part",
]
