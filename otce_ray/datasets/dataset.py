"""The dataset object handed to extraction: a spec plus a sorted file list, loading pixels only when asked.

It is shipped to Ray tasks, so it holds strings and a small lookup table, never decoded images.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from otce_ray.datasets.images import read_image, read_mask
from otce_ray.datasets.labels import LabelLookup
from otce_ray.datasets.layouts import Sample, list_samples
from otce_ray.datasets.selection import shard
from otce_ray.datasets.errors import DatasetError
from otce_ray.datasets.spec import check_shard, dataset_fingerprint, normalize_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 train ids, 255 = ignore
    image_id: str


class SkippedFile(NamedTuple):
    uri: str
    reason: str


class SegmentationDataset:
    """Images with train-id masks of one dataset spec (or one shard of it), in image-id order.

    ``ds[i]`` always raises on a broken file. Iterating honours ``on_error``: under ``skip`` a broken file is
    logged as a warning and recorded in :attr:`skipped` (file and reason), and iteration goes on.
    """

    def __init__(self, spec: dict[str, Any], samples: list[Sample], lookup: LabelLookup, content: str = ""):
        self.spec = spec
        self._samples = samples
        self._lookup = lookup
        self.content = content  # digest of the listed files' names, sizes and modification times
        self.skipped: list[SkippedFile] = []

    @property
    def fingerprint(self) -> str:
        """What determines the pixels this dataset yields: its spec's fingerprint and its files as listed, so a
        rewritten mask or an added image changes it."""
        payload = f"{dataset_fingerprint(self.spec)}\0{self.content}"
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def num_classes(self) -> int:
        return self._lookup.num_classes

    @property
    def image_ids(self) -> list[str]:
        return [sample.image_id for sample in self._samples]

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Item:
        return self.load(self._samples[index])

    @property
    def samples(self) -> tuple[Sample, ...]:
        """The files this dataset (or shard view) reads: what a Ray task is given instead of listing them again."""
        return tuple(self._samples)

    def __iter__(self) -> Iterator[Item]:
        for sample in self._samples:
            try:
                yield self.load(sample)
            except DatasetError as error:
                self.skip_or_raise(sample, error)

    def skip_or_raise(self, sample: Sample, error: DatasetError) -> None:
        """Apply ``on_error`` to a file that failed to load: record and log it under ``skip``, else re-raise."""
        if self.spec["on_error"] != "skip":
            raise error
        self.skipped.append(SkippedFile(error.uri or sample.image_uri, str(error)))
        logger.warning("dataset %r: skipped %s (%d skipped so far)", self.name, error, len(self.skipped))

    def shard(self, index: int, count: int) -> SegmentationDataset:
        """The view holding shard ``index`` of ``count``: each image lies in exactly one shard."""
        index, count = check_shard(index, count, f"dataset {self.name!r}: shard")
        return SegmentationDataset(self.spec, shard(self._samples, index, count), self._lookup, self.content)

    def load(self, sample: Sample) -> Item:
        """Read and decode one image and its mask (thread-safe); ``DatasetError`` names a broken file."""
        if sample.mask_uri is None:
            raise DatasetError(f"{sample.image_uri}: missing mask", uri=sample.image_uri)
        image = read_image(sample.image_uri)
        raw = read_mask(sample.mask_uri)
        if raw.shape != image.shape[:2]:
            raise DatasetError(
                f"{sample.mask_uri}: mask is {raw.shape[1]}x{raw.shape[0]} but its image {sample.image_uri} is "
                f"{image.shape[1]}x{image.shape[0]} (width x height)", uri=sample.mask_uri,
            )
        return Item(image, self._lookup.apply(raw, sample.mask_uri), sample.image_id)

    def __repr__(self) -> str:
        return f"SegmentationDataset({self.name!r}, format={self.spec['format']!r}, images={len(self)})"


def open_dataset(spec: Mapping[str, Any]) -> SegmentationDataset:
    """Check a spec, list its files (local or S3) and return the dataset; pixels load lazily per item.

    Spec keys 'shard_index' and 'num_shards', when given, return that shard directly.
    """
    canonical = normalize_spec(spec)
    dataset = SegmentationDataset(canonical, *list_samples(canonical))
    if "num_shards" in canonical:
        return dataset.shard(canonical["shard_index"], canonical["num_shards"])
    return dataset


LISTING_THREADS = 8  # datasets listed side by side: each listing is a few round trips to S3


def open_datasets(specs: Iterable[Mapping[str, Any]]) -> dict[str, SegmentationDataset | DatasetError]:
    """Open every dataset once, by name (the first spec of each name), listing them in parallel.

    A dataset that cannot be opened maps to its ``DatasetError`` (any other failure is wrapped in one, naming the
    dataset), so the caller fails the models that need it and goes on with the others.
    """
    unique: dict[str, Mapping[str, Any]] = {}
    for spec in specs:
        unique.setdefault(str(spec.get("name")), spec)

    def open_one(spec: Mapping[str, Any]) -> SegmentationDataset | DatasetError:
        try:
            return open_dataset(spec)
        except DatasetError as error:
            return error
        except Exception as error:  # noqa: BLE001 - e.g. an unreachable S3 endpoint: this dataset fails, not the run
            return DatasetError(f"dataset {spec.get('name')!r}: cannot list its files: {type(error).__name__}: "
                                f"{error}")

    with ThreadPoolExecutor(max_workers=LISTING_THREADS) as pool:
        return dict(zip(unique, pool.map(open_one, unique.values())))
