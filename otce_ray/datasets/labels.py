"""Raw mask values -> train ids (255 = ignore), as lookup tables that reject values outside the map.

A value the map does not know is an error, not "ignore": it usually means the wrong mask type (a colour or
instance mask) or the wrong label_map, and silently ignoring it would corrupt every score computed downstream.
``LabelMap`` holds a spec's ``label_map`` to what a table can take (class ids below the ignore id 255).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral
from typing import Any, Mapping

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from otce_ray.datasets.errors import DatasetError
from otce_ray.schema import Checked, Constraint, Interval, Problem, Resolver, shown

IGNORE = 255
CITYSCAPES_NUM_CLASSES = 19
_UNMAPPED = -1


@dataclass(frozen=True)
class LabelLookup:
    """``table[raw]`` is the train id of a raw mask value, or -1 when the value is outside the map."""

    table: np.ndarray
    num_classes: int
    source: str  # names the map in error messages, e.g. "spec key 'label_map'"

    def apply(self, raw: np.ndarray, uri: str) -> np.ndarray:
        """Map a raw (H, W) mask to uint8 train ids; raise naming the file and the first unknown values."""
        inside = raw < len(self.table)
        mapped = np.where(inside, self.table[np.where(inside, raw, 0)], _UNMAPPED)
        if (mapped == _UNMAPPED).any():
            bad = np.unique(raw[mapped == _UNMAPPED])
            values = ", ".join(str(v) for v in bad[:8]) + (", ..." if len(bad) > 8 else "")
            raise DatasetError(f"{uri}: mask value(s) {values} not in {self.source}", uri=uri)
        return mapped.astype(np.uint8)


def _table(pairs: dict[int, int], size: int = 256) -> np.ndarray:
    table = np.full(max(size, max(pairs) + 1), _UNMAPPED, dtype=np.int16)
    for raw, train_id in pairs.items():
        table[raw] = train_id
    return table


@lru_cache(maxsize=None)
def cityscapes_lookup() -> LabelLookup:
    """Cityscapes label ids (also GTA5's) -> the 19 train ids, from the official cityscapesscripts table."""
    pairs = {
        label.id: label.trainId if 0 <= label.trainId < CITYSCAPES_NUM_CLASSES else IGNORE
        for label in _CITYSCAPES_LABELS
        if label.id >= 0
    }
    return LabelLookup(_table(pairs), CITYSCAPES_NUM_CLASSES, "the Cityscapes label ids")


@lru_cache(maxsize=None)
def train_id_lookup() -> LabelLookup:
    """Masks that already hold the 19 train ids with 255 = ignore (BDD100K)."""
    pairs = {**{i: i for i in range(CITYSCAPES_NUM_CLASSES)}, IGNORE: IGNORE}
    return LabelLookup(_table(pairs), CITYSCAPES_NUM_CLASSES, f"the train ids 0-{CITYSCAPES_NUM_CLASSES - 1}, 255")


def label_map_lookup(label_map: dict[int, int], ignore_index: int | None) -> LabelLookup:
    """An explicit ``label_map`` (raw value -> class id) plus an optional raw ``ignore_index`` mapped to 255."""
    pairs = dict(label_map)
    source = "spec key 'label_map'"
    if ignore_index is not None:
        pairs[ignore_index] = IGNORE
        source += " nor 'ignore_index'"
    return LabelLookup(_table(pairs), max(label_map.values()) + 1, source)


@lru_cache(maxsize=None)
def cityscapes_class_names() -> dict[int, str]:
    """The 19 Cityscapes train ids' names (road, sidewalk, ...), from the official table."""
    return {label.trainId: label.name for label in _CITYSCAPES_LABELS if 0 <= label.trainId < CITYSCAPES_NUM_CLASSES}



class LabelMap(Constraint):
    """Raw mask value -> class id. Class ids stop at 254 because 255 is the ignore id of every item's label."""

    raw, class_id = Interval(Integral, 0), Interval(Integral, 0, 254)

    def __str__(self) -> str:
        return "a non-empty mapping of raw mask value -> class id"

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping) or not value:
            return value, [Problem((), f"expected {self}, got {shown(value)}")]
        return value, [Problem((), f"entry {raw!r}: {class_id!r} must map a raw value >= 0 to a class id 0-254")
                       for raw, class_id in value.items()
                       if not (self.raw.allows(raw) and self.class_id.allows(class_id))]
