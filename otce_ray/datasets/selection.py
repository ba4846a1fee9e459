"""Which images of a dataset are used: a seeded subset, then shards. Pure functions over sorted image ids."""

from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

T = TypeVar("T")


def seeded_subset(image_ids: Sequence[str], count: int | None, seed: int) -> list[str]:
    """``count`` ids chosen by a seeded hash, returned sorted; all ids when ``count`` is None or not smaller.

    Ranking by sha256(seed, id) instead of a random generator makes the choice identical on every platform and
    Python version, and nested: raising ``count`` keeps every image chosen before.
    """
    if count is None or count >= len(image_ids):
        return sorted(image_ids)
    ranked = sorted(image_ids, key=lambda image_id: hashlib.sha256(f"{seed}:{image_id}".encode()).digest())
    return sorted(ranked[:count])


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Shard ``index`` of ``count``: every ``count``-th item from position ``index``.

    Striding (rather than cutting blocks) spreads each city over all shards, so shards cost about the same.
    Every item lands in exactly one shard; a shard is empty when there are fewer items than shards.
    """
    return list(items[index::count])
