"""The Parquet schema of a pixel store: one row per sampled pixel, provenance in the file metadata.

Columns: ``image_id`` (string), ``row``/``col`` (int32, label resolution), ``label`` (int16), ``features``
(fixed-size list of float16 or float32, width d) and, when the model has them, ``logits`` (fixed-size list, width C).
File metadata key ``otce_ray`` holds a JSON object (model, dataset fingerprint, feature layer, d, pixels_per_image,
seed, otce-ray version and the extraction ``key`` that decides whether a part can be reused).

float16 has about three significant digits over a range of 6e-8 to 65504: features of any other magnitude would
underflow to zero (or overflow) there. So each part stores its features, and its logits, times a power of two
``2**exponent`` that brings their largest magnitude to ``SCALED_MAX``, and records the exponents in its metadata
(``feature_exponent``, ``logit_exponent``); readers multiply back (``descale``). A power of two scales exactly, so the
stored values carry float16's relative precision whatever the model's feature units.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import pyarrow as pa

METADATA_KEY = b"otce_ray"
FEATURE_DTYPES = {"float16": pa.float16(), "float32": pa.float32()}
SCALED_MAX = 2.0**14  # a float16 part's largest |value| after scaling: well inside the range (max 65504), and 2**28
# above its smallest normal number


def scale_exponent(values: np.ndarray | None, feature_dtype: str) -> int:
    """The power of two a part's ``values`` are stored times: 0 for float32, and for float16 the one that brings
    their largest magnitude into [SCALED_MAX / 2, SCALED_MAX] (0 for an all-zero or empty array)."""
    if feature_dtype != "float16" or values is None or not values.size:
        return 0
    largest = float(np.abs(values).max())
    return 0 if largest == 0 else int(np.floor(np.log2(SCALED_MAX / largest)))


def descale(values: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """Stored rows back in float32 units: each row divided by 2**its part's exponent (exact for powers of two)."""
    return np.ldexp(values.astype(np.float32), -exponents.astype(np.int32)[:, None]).astype(np.float32, copy=False)


class StoreError(ValueError):
    """A pixel store that is missing, incomplete or not what the caller asked for; the message names the path.
    ``damaged`` is the folder of a store whose manifest or parts are broken (None for a store that is merely absent
    or ambiguous): a run sets such a store aside and extracts it again (``otce_ray.store.set_aside``)."""

    def __init__(self, message: str, damaged: str | None = None) -> None:
        super().__init__(message)
        self.damaged = damaged


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
    """Build the table for one part from column arrays (features (n, d), logits (n, C) or None), scaled as the module
    docstring says; ``metadata`` gains the exponents."""
    numpy_dtype = np.dtype(feature_dtype)
    schema = pixel_schema(features.shape[1], None if logits is None else logits.shape[1], feature_dtype)
    exponents = {"feature_exponent": scale_exponent(features, feature_dtype),
                 "logit_exponent": scale_exponent(logits, feature_dtype)}
    columns = [
        pa.array(image_ids, pa.string()),
        pa.array(rows, pa.int32()),
        pa.array(cols, pa.int32()),
        pa.array(labels, pa.int16()),
        _fixed_size_list(np.ldexp(features, exponents["feature_exponent"]).astype(numpy_dtype, copy=False)),
    ]
    if logits is not None:
        columns.append(_fixed_size_list(np.ldexp(logits, exponents["logit_exponent"]).astype(numpy_dtype, copy=False)))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(encode_metadata({**metadata, **exponents})))


def encode_metadata(metadata: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {METADATA_KEY: json.dumps(dict(metadata), sort_keys=True).encode()}


def decode_metadata(raw: Mapping[bytes, bytes] | None) -> dict[str, Any] | None:
    if not raw or METADATA_KEY not in raw:
        return None
    return json.loads(raw[METADATA_KEY])


def _fixed_size_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).reshape(-1)), matrix.shape[1])
