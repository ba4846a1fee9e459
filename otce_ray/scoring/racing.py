"""Racing settings, declared once: the run config's ``racing:`` section (off unless given).

A race scores every model on a small share of its images and few, small repeats (stage 1), stops the models whose
upper bound on the full-budget score cannot reach the k-th best lower bound, and gives the survivors more images and
repeats, stage by stage; the last stage is always the run's own settings (every image, ``otce.n_pixels``,
``otce.repeats``), so the models that reach it are scored exactly as a run without racing scores them. The stopping
rule is ``otce_ray.scoring.stopping``; the driver is ``otce_ray.pipeline.racing``.

A stage reads ``ceil(images x num_shards)`` shards of each pixel store (at least 2): the first ones in a seeded
hash order of the store's shards (``shard_order``). On the target every model reads the same images at a stage (the
order is the run's seed and the target's name), so which target images a stage read moves every model's score alike,
as far as it can; on a source the order is also the model's, so two models of one source read different images and
their stage errors are independent, as the stopping rule's pooled estimate of them assumes (with one shared sample,
every model of a source would be off by the same amount, and the spread over models would not show it). A stage's
shards are a prefix of the next stage's, so a store grows by adding shards, never by extracting again, under its one
key. Shards deal a dataset's selected images by striding
(``otce_ray.datasets.selection.shard``), so one shard is already spread over the whole dataset, and a stage's shards
are a random sample of those: taking the first m shards instead would read m consecutive images out of every n,
runs of neighbouring frames of one sequence, and a stage would then miss the full score by more than its two halves
disagree (measured: ``otce-ray bench racing``). How fine the stages can be is the shard layout's grain: racing needs
many shards per store (``extraction.num_shards``, which is part of the store key: keep it when racing is removed, so
a full run reuses the stores).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from otce_ray.datasets.selection import seeded_order
from otce_ray.schema import REQUIRED, Interval, ListOf, Rule, check_record, declared, fields_of
from otce_ray.scoring.settings import MAX_REPEATS, OTCESettings

MIN_STAGE_SHARDS = 2  # a stage splits its shards into two halves (the image-noise estimate of the stopping rule)


def _even(repeats: int) -> str | None:
    return None if repeats % 2 == 0 else f"must be even (half of a stage's repeats on each half of its images), " \
                                         f"got {repeats}"


@dataclass(frozen=True)
class Stage:
    """One stage before the final one: the share of each store's shards it reads, the pixels per repeat (a share of
    ``otce.n_pixels``) and the repeats each surviving model gets (even: half on each half of the stage's shards)."""

    images: float = declared(Interval(Real, 0, 1, closed="neither"), REQUIRED,
                             "share of each pixel store's shards (its first ones) the stage reads")
    pixels: float = declared(Interval(Real, 0, 1, closed="right"), 1.0,
                             "pixels per side per repeat, as a share of `otce.n_pixels`")
    repeats: int = declared(Interval(Integral, 4, MAX_REPEATS), 6,
                            "repeats per surviving model (even: half on each half of the stage's shards)")

    def __post_init__(self) -> None:
        check_record(self)
        problem = _even(self.repeats)
        if problem:
            raise ValueError(f"repeats: {problem}")

    def count(self, num_shards: int) -> int:
        """How many of a store's ``num_shards`` shards this stage reads: ``ceil(images x num_shards)``, at least
        ``MIN_STAGE_SHARDS`` (every shard of a store with fewer)."""
        return min(num_shards, max(MIN_STAGE_SHARDS, math.ceil(self.images * num_shards - 1e-9)))

    def shards(self, store: str, num_shards: int, seed: int) -> tuple[int, ...]:
        """The shards of a store this stage reads (``store``: what its order is seeded by, see ``shard_order``), in
        that order: those at even places of it are half A of the stage, those at odd places half B."""
        return shard_order(store, num_shards, seed)[:self.count(num_shards)]

    def settings(self, otce: OTCESettings) -> OTCESettings:
        """The estimator of this stage: the run's, with its pixels and repeats."""
        return dataclasses.replace(otce, n_pixels=max(2, round(self.pixels * otce.n_pixels)), repeats=self.repeats)


def shard_order(store: str, num_shards: int, seed: int) -> tuple[int, ...]:
    """The order in which racing stages take the shards of a store: ranked by a hash of the run's ``seed`` and
    ``store`` (``seeded_order``; the same on every platform). ``store`` is the target's name for a target store, the
    same for every model, and ``{dataset}/{model}`` for a source store (``order_of``)."""
    ranked = seeded_order([str(index) for index in range(num_shards)], f"{seed}:{store}")
    return tuple(int(index) for index in ranked)


def order_of(dataset: str, model: str, target: str) -> str:
    """What the shard order of the store of (``dataset``, ``model``) is seeded by, in a race for ``target``: the
    target's own name on the target (every model reads the same images), the dataset and the model on a source."""
    return dataset if dataset == target else f"{dataset}/{model}"


STAGE = fields_of(Stage, (Rule(("repeats",), _even),))
DEFAULT_STAGES = ({"images": 0.125, "pixels": 0.25, "repeats": 6}, {"images": 0.375, "pixels": 0.5, "repeats": 6})


def _growing(stages: Any) -> str | None:
    shares = [stage["images"] if isinstance(stage, dict) else stage.images for stage in stages]
    if any(later <= earlier for earlier, later in zip(shares, shares[1:])):
        return f"each stage must read more images than the one before (images {shares})"
    return None


@dataclass(frozen=True)
class RacingSettings:
    """The ``racing:`` section: keep each target's ``top_k`` and stop the rest early (``otce_ray.scoring.stopping``).

    ``confidence`` is family-wise: every bound of every model at every stage holds at once with this probability (a
    union bound), under the rule's assumptions (its module docstring).
    """

    top_k: int = declared(Interval(Integral, 1, 10_000), 5, "models each target's race keeps to the final stage "
                                                            "(at least)")
    confidence: float = declared(Interval(Real, 0.5, 1, closed="left"), 0.95,
                                 "that no bound of any model at any stage fails (union bound over models and stages)")
    stages: tuple[Stage, ...] = declared(ListOf(STAGE, "stages", min_length=1), DEFAULT_STAGES,
                                         "the stages before the final one (which reads every image with the `otce` "
                                         "settings), images growing", "two: `{images: 0.125, pixels: 0.25, "
                                         "repeats: 6}`, `{images: 0.375, pixels: 0.5, repeats: 6}`")

    def __post_init__(self) -> None:
        given = tuple(dataclasses.asdict(stage) if isinstance(stage, Stage) else stage for stage in self.stages)
        object.__setattr__(self, "stages", given)
        check_record(self)
        problem = _growing(given)
        if problem:
            raise ValueError(f"stages: {problem}")
        object.__setattr__(self, "stages", tuple(Stage(**stage) for stage in given))


RACING_RULES = (Rule(("stages",), _growing),)
