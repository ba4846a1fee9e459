"""The Parquet schema of a pixel store: one row per sampled pixel, provenance in the file metadata.

Columns: ``image_id`` (string), ``row``/``col`` (int32, label resolution), ``label`` (int16), ``features``
(fixed-size list of float16 or float32, width d) and, when the model has them, ``logits`` (fixed-size list, width C).
File metadata key ``otce_ray`` holds a JSON object (model, dataset fingerprint, feature layer, d, pixels_per_image,
seed, otce-ray version and the extraction ``key`` that decides whether a part can be reused).
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

METADATA_KEY = b"otce_ray"
FEATURE_DTYPES = {"float16": pa.float16(), "float32": pa.float32()}


class StoreError(ValueError):
    """A pixel store that is missing, incomplete or not what the caller asked for; the message names the path."""


def pixel_schema(feature_dim: int, logit_dim: int | None, feature_dtype: str = "float16") -> pa.Schema:
    value_type = FEATURE_DTYPES[feature_dtype]
    fields = [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("col", pa.int32(), nullable=False),
        pa.field("label", pa.int16(), nullable=False),
        pa.field("features", pa.list_(value_type, feature_dim), nullable=False),
    ]
    if logit_dim is not None:
        fields.append(pa.field("logits", pa.list_(value_type, logit_dim), nullable=False))
    return pa.schema(fields)


def pixel_table(
    image_ids: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    labels: np.ndarray,
    features: np.ndarray,
    logits: np.ndarray | None,
    metadata: Mapping[str, Any],
    feature_dtype: str = "float16",
) -> pa.Table:
    """Build the table for one part from column arrays (features (n, d), logits (n, C) or None)."""
    numpy_dtype = np.dtype(feature_dtype)
    schema = pixel_schema(features.shape[1], None if logits is None else logits.shape[1], feature_dtype)
    columns = [
        pa.array(image_ids, pa.string()),
        pa.array(rows, pa.int32()),
        pa.array(cols, pa.int32()),
        pa.array(labels, pa.int16()),
        _fixed_size_list(features.astype(numpy_dtype, copy=False)),
    ]
    if logits is not None:
        columns.append(_fixed_size_list(logits.astype(numpy_dtype, copy=False)))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(encode_metadata(metadata)))


def encode_metadata(metadata: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True).encode()}


def decode_metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, Any] | None:
    if not raw or METADATA_KEY not in raw:
        return None
    return json.loads(raw[METADATA_KEY])


def _fixed_size_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).reshape(-1)), matrix.shape[1])
