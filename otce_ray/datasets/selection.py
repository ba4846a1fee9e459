"""Which images of a dataset are used: a seeded subset, then shards. Pure functions over sorted image ids."""

from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

T = TypeVar("T")


def seeded_order(image_ids: Sequence[str], seed: int | str) -> list[str]:
    """``image_ids`` ranked by a seeded hash, sha256(seed, id): a random generator would not make the order identical
    on every platform and Python version. Any prefix of it is a seeded subset (``seeded_subset``, a racing stage's
    shards)."""
    return sorted(image_ids, key=lambda image_id: hashlib.sha256(f"{seed}:{image_id}".encode()).digest())


def seeded_subset(image_ids: Sequence[str], count: int | None, seed: int) -> list[str]:
    """``count`` ids chosen by a seeded hash (``seeded_order``), returned sorted; all ids when ``count`` is None or
    not smaller. Nested: raising ``count`` keeps every image chosen before.
    """
    if count is None or count >= len(image_ids):
        return sorted(image_ids)
    return sorted(seeded_order(image_ids, seed)[:count])


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Shard ``index`` of ``count``: every ``count``-th item from position ``index``.

    Striding (rather than cutting blocks) spreads each city over all shards, so shards cost about the same.
    Every item lands in exactly one shard; a shard is empty when there are fewer items than shards.
    """
    return list(items[index::count])
