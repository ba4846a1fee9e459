"""Run a loaded model over images and keep the sampled pixels: compute only, the caller does the I/O.

The caller hands in decoded items (``otce_ray.extraction.decode`` decodes them ahead in threads); a ``Stopwatch``,
when given, receives the seconds of the forward passes and of the pixel sampling.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, TypeVar

import numpy as np

from otce_ray.extraction.decode import Stopwatch
from otce_ray.extraction.sampling import pixel_rng, sample_map, sample_pixels
from otce_ray.models import LoadedModel, ModelError

T = TypeVar("T")


class ImageItem(Protocol):
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) ints, 255 = ignore
    image_id: str


@dataclass(frozen=True)
class PixelColumns:
    """Row-aligned columns of sampled pixels, ready for ``otce_ray.store.pixel_table``."""

    image_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    labels: np.ndarray
    features: np.ndarray  # (n, d) float32
    logits: np.ndarray | None  # (n, C) float32
    images: int


def extract_pixels(
    model: LoadedModel,
    items: Iterable[ImageItem],
    *,
    pixels_per_image: int,
    batch_size: int,
    seed: int,
    stopwatch: Stopwatch | None = None,
) -> PixelColumns:
    """Sample ``pixels_per_image`` labelled pixels per image (seeded by (seed, image_id)) and their features/logits.

    Raises ``ModelError`` naming the image when a sampled feature or logit is NaN/Inf.
    """
    def measure(phase: str) -> contextlib.AbstractContextManager:
        return stopwatch.measure(phase) if stopwatch is not None else contextlib.nullcontext()

    parts: list[tuple] = []
    for batch in _batches(items, batch_size):
        for group in _same_size_runs(batch):
            with measure("forward"):
                output = model(np.stack([item.image for item in group]), synchronize=True)
            with measure("sample"):
                for index, item in enumerate(group):
                    rows, cols = sample_pixels(item.label, pixels_per_image, pixel_rng(seed, item.image_id))
                    features = sample_map(output.features[index], rows, cols, item.label.shape).cpu().numpy()
                    logits = None
                    if output.logits is not None:
                        logits = sample_map(output.logits[index], rows, cols, item.label.shape).cpu().numpy()
                    _check_values(model.spec.name, item.image_id, features, logits)
                    parts.append((item.image_id, rows, cols, item.label[rows, cols], features, logits))
    return _columns(parts, model)


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _same_size_runs(batch: list[ImageItem]) -> Iterator[list[ImageItem]]:
    """Consecutive images of one size, which can be stacked into one forward pass."""
    for _, group in itertools.groupby(batch, key=lambda item: item.image.shape):
        yield list(group)


def _check_values(model: str, image_id: str, features: np.ndarray, logits: np.ndarray | None) -> None:
    """Finite values only; any finite magnitude is stored faithfully (each part is scaled: ``otce_ray.store.schema``)."""
    for what, values in (("features", features), ("logits", logits)):
        if values is not None and values.size and not np.isfinite(values).all():
            raise ModelError(model, f"{what} contain NaN/Inf on image {image_id!r}")


def _columns(parts: list[tuple], model: LoadedModel) -> PixelColumns:
    if not parts:
        raise ModelError(model.spec.name, "no images to extract (empty shard or every image skipped)")
    image_ids, rows, cols, labels, features, logits = zip(*parts)
    has_logits = logits[0] is not None
    return PixelColumns(
        image_ids=np.repeat(np.array(image_ids, dtype=object), [len(r) for r in rows]),
        rows=np.concatenate(rows),
        cols=np.concatenate(cols),
        labels=np.concatenate(labels).astype(np.int16),
        features=np.concatenate(features),
        logits=np.concatenate(logits) if has_logits else None,
        images=len(parts),
    )
