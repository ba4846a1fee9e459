"""Reading a complete pixel store back as arrays, optionally a seeded uniform sample of its rows.

Only what is needed is read: the manifest says how many rows each part holds, a sample touches only the row groups
that contain chosen rows, and the logits column is skipped unless asked for. A uniform sample still touches nearly
every row group of a large store, so several samples of one store are read together with ``read_samples`` (one pass
over the store, holding only the union of their rows) and then taken apart with ``PixelSamples.sample``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from otce_ray import fs
from otce_ray.store.layout import model_uri, store_uri
from otce_ray.store.parts import complete_keys, parts_manifest, read_manifest
from otce_ray.store.schema import StoreError, decode_metadata, descale


@dataclass(frozen=True)
class Pixels:
    """Sampled pixels of one (dataset, model) store, row-aligned arrays.

    Where each pixel comes from (``image_ids``, ``rows``, ``cols``) is None when it was not read: scoring never
    needs it, and at 1,000 pixels per image the image ids alone cost more than a small model's features.
    """

    features: np.ndarray  # (n, d) float32 (in ``PixelSamples``: as stored, float16 by default, scaled)
    labels: np.ndarray  # (n,) int64
    logits: np.ndarray | None  # (n, C) float32, None when not stored or not asked for
    image_ids: np.ndarray | None  # (n,) str objects
    rows: np.ndarray | None  # (n,) int32, label resolution
    cols: np.ndarray | None  # (n,) int32
    manifest: dict[str, Any]
    # (n, 2) int8: the feature and logit exponents of each row's part (``otce_ray.store.schema``), while the arrays
    # are as stored; None once they are in float32 units
    exponents: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, positions: np.ndarray, *, with_logits: bool = True) -> "Pixels":
        """The rows at ``positions`` (indices into these arrays), in that order; logits only if asked and held."""
        def rows_of(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[positions]

        return Pixels(
            features=self.features[positions],
            labels=self.labels[positions],
            logits=rows_of(self.logits) if with_logits else None,
            image_ids=rows_of(self.image_ids),
            rows=rows_of(self.rows),
            cols=rows_of(self.cols),
            manifest=self.manifest,
            exponents=rows_of(self.exponents),
        )

    def as_float32(self) -> "Pixels":
        """These pixels with float32 features and logits in the model's own units, as the numerics take them."""
        if self.exponents is None:
            return self
        logits = None if self.logits is None else descale(self.logits, self.exponents[:, 1])
        return dataclasses.replace(self, features=descale(self.features, self.exponents[:, 0]), logits=logits,
                                   exponents=None)


@dataclass(frozen=True)
class PixelSamples:
    """The rows that some seeded samples of one store pick, read once (``read_samples``), as a Ray object.

    It travels to every scoring task of a model, so it is kept small: features and logits in their stored dtype
    (float16: half of float32), and no pixel provenance. ``sample(size, seed)`` gives back any of those samples
    exactly as ``read_pixels(..., sample=size, seed=seed)`` reads it: the same rows in the same order, in float32.
    """

    pixels: Pixels  # the union of the samples' rows, in store order
    held: np.ndarray | None  # their (sorted) row indices in the store; None: every row
    total: int  # rows in the store
    where: str  # the store's URI, for errors

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held: what this object costs in the object store."""
        arrays = (self.pixels.features, self.pixels.labels, self.pixels.logits, self.pixels.exponents, self.held)
        return sum(array.nbytes for array in arrays if array is not None)

    def sample(self, size: int, seed: int, *, with_logits: bool = True) -> Pixels:
        chosen = choose_rows(self.total, size, seed)
        if self.held is None and chosen is None:
            whole = self.pixels if with_logits else dataclasses.replace(self.pixels, logits=None)
            return whole.as_float32()
        if self.held is None:
            return self.pixels.take(chosen, with_logits=with_logits).as_float32()
        positions = None if chosen is None else np.searchsorted(self.held, chosen)
        if positions is None or positions[-1] >= len(self.held) or not np.array_equal(self.held[positions], chosen):
            raise ValueError(f"the sample (size {size}, seed {seed}) of {self.where} was not among those read")
        return self.pixels.take(positions, with_logits=with_logits).as_float32()


def read_pixels(
    store: str,
    dataset: str,
    model: str,
    sample: int | None = None,
    seed: int = 0,
    *,
    with_logits: bool = True,
    key: str | None = None,
) -> Pixels:
    """Read the pixels of (dataset, model); with ``sample``, at most that many rows drawn uniformly by ``seed``.

    ``key`` picks the store written for those settings; without it, the one complete store of the pair is read.
    Raises ``StoreError`` when there is none (or several, without ``key``), or when a part is unreadable or was
    written for other settings than its manifest's.
    """
    manifest, where, total = _open(store, dataset, model, key)
    return _read_rows(where, manifest, choose_rows(total, sample, seed), with_logits).as_float32()


def read_samples(
    store: str,
    dataset: str,
    model: str,
    samples: Iterable[tuple[int, int]],
    *,
    with_logits: bool = True,
    key: str | None = None,
    shards: Sequence[int] | None = None,
) -> PixelSamples:
    """Read, in one pass over (dataset, model), every row that any ``(size, seed)`` of ``samples`` picks.

    K samples read one by one with ``read_pixels`` cost K reads of nearly the whole store; this costs one, and
    holds at most the sum of the sizes in rows, without pixel provenance. ``shards`` (with ``key``) reads only those
    shards' parts, as if they were the whole store, complete or not (a racing stage's images; their footers say what
    they hold: ``parts_manifest``). Raises ``StoreError`` as ``read_pixels`` does.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("samples: expected at least one (size, seed) pair")
    manifest, where, total = _open(store, dataset, model, key, shards)
    chosen = [choose_rows(total, size, seed) for size, seed in samples]
    held = None if any(rows is None for rows in chosen) else np.unique(np.concatenate(chosen))
    if held is not None and len(held) == total:
        held = None
    pixels = _read_rows(where, manifest, held, with_logits, provenance=False)
    return PixelSamples(pixels, held, total, where)


def _open(store: str, dataset: str, model: str, key: str | None,
          shards: Sequence[int] | None = None) -> tuple[dict[str, Any], str, int]:
    """The store's manifest (of ``shards`` only, when given), URI and row count; ``StoreError`` when it is missing or
    incomplete, or ambiguous."""
    if shards is not None:
        if key is None:
            raise ValueError("shards: reading some shards of a store needs its key")
        manifest = parts_manifest(store, dataset, model, key, shards)
        return manifest, store_uri(store, dataset, model, key), manifest["rows"]
    where = model_uri(store, dataset, model)
    if key is None:
        keys = complete_keys(store, dataset, model)
        if len(keys) > 1:
            raise StoreError(f"{where} holds complete stores for {len(keys)} settings ({', '.join(keys)}): pass key")
        key = keys[0] if keys else None
    manifest = None if key is None else read_manifest(store, dataset, model, key)
    if manifest is None:
        raise StoreError(f"no complete pixel store for model {model!r} on dataset {dataset!r} at {where}"
                         + (f" for key {key}" if key else ""))
    return manifest, store_uri(store, dataset, model, key), sum(int(part["rows"]) for part in manifest["parts"])


def _read_rows(where: str, manifest: dict[str, Any], chosen: np.ndarray | None, with_logits: bool,
               provenance: bool = True) -> Pixels:
    """The store's rows ``chosen`` (sorted global indices; None: all), reading only the row groups that hold them;
    features and logits in their stored dtype, ``provenance`` (image id, row, col) only when asked for.

    A part that cannot be read (truncated, overwritten, gone) is a ``StoreError`` naming it and the store.
    """
    columns = (["image_id", "row", "col"] if provenance else []) + ["label", "features"]
    if with_logits and manifest.get("logit_dim"):
        columns.append("logits")
    counts = np.array([part["rows"] for part in manifest["parts"]], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    tables, exponents = [], []
    for part, start, stop in zip(manifest["parts"], starts[:-1], starts[1:]):
        local = None if chosen is None else chosen[(chosen >= start) & (chosen < stop)] - start
        if local is None or local.size:
            uri = fs.join(where, part["file"])
            try:
                table, footer = _read_part(uri, columns, local, manifest["key"])
            except (OSError, pa.ArrowException, ValueError, IndexError) as error:
                raise StoreError(f"pixel store {where}: cannot read part {uri} ({type(error).__name__}: {error})",
                                 damaged=where) from error
            tables.append(table)
            exponents.append(np.tile([footer.get("feature_exponent", 0), footer.get("logit_exponent", 0)],
                                     (table.num_rows, 1)))
    table = pa.concat_tables(tables)
    return Pixels(
        features=_matrix(table, "features", manifest["feature_dim"]),
        labels=table.column("label").to_numpy().astype(np.int64),
        logits=_matrix(table, "logits", manifest["logit_dim"]) if "logits" in columns else None,
        image_ids=table.column("image_id").to_numpy(zero_copy_only=False) if provenance else None,
        rows=table.column("row").to_numpy() if provenance else None,
        cols=table.column("col").to_numpy() if provenance else None,
        manifest=manifest,
        exponents=np.concatenate(exponents).astype(np.int8),
    )


def choose_rows(total: int, sample: int | None, seed: int) -> np.ndarray | None:
    """The sorted indices of ``sample`` rows of ``total`` drawn uniformly without replacement by ``seed``; None when
    every row is taken (``sample`` None, or >= ``total``). The one seeded draw of rows: the store reads what it
    picks, and every OTCE repeat samples by it (``otce_ray.scoring.repeat``)."""
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be a positive number of pixels, got {sample}")
    if sample is None or sample >= total:
        return None
    return np.sort(np.random.default_rng(seed).choice(total, size=sample, replace=False))


def _read_part(uri: str, columns: list[str], local: np.ndarray | None, key: str) -> tuple[pa.Table, dict[str, Any]]:
    """Read a part, or only the row groups that hold the ``local`` row indices (sorted) and take those rows, with its
    footer's metadata; a part whose footer names another key than its manifest (a writer that did not respect the
    layout) is refused."""
    filesystem, path = fs.resolve(uri)
    with filesystem.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        footer = decode_metadata(parquet.metadata.metadata) or {}
        if footer.get("key") != key:
            raise ValueError(f"its footer was written for key {footer.get('key')!r}, its manifest is for {key!r}")
        if local is None:
            return parquet.read(columns=columns), footer
        sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        group_starts = np.concatenate([[0], np.cumsum(sizes)])
        groups = np.unique(np.searchsorted(group_starts, local, side="right") - 1)
        table = parquet.read_row_groups(groups.tolist(), columns=columns)
    kept_starts = group_starts[groups]
    offsets = np.concatenate([[0], np.cumsum(np.asarray(sizes)[groups])])
    group_of = np.searchsorted(kept_starts, local, side="right") - 1
    return table.take(pa.array(local - kept_starts[group_of] + offsets[group_of])), footer


def _matrix(table: pa.Table, column: str, width: int) -> np.ndarray:
    values = table.column(column).combine_chunks().flatten()
    return values.to_numpy(zero_copy_only=False).reshape(-1, width)
