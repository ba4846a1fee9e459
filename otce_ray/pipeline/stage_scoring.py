"""A racing stage's repeats as a source of the dispatch loop: per racer, its stage's K repeats on two halves of the
stage's shards.

A stage reads m shards of each of a racer's stores, in a seeded order (``Stage.shards``); repeat r draws its pixels
from those at even places of that order (half A) when r is even, from those at odd places (half B) when odd: two
disjoint random samples of the store's shards, whose disagreement measures how much a score moves with the images
read (``otce_ray.scoring.stopping``). Each half of each store
is read once, by a loader task (``read_samples`` of those shards' parts, whether the store is complete or not), for
the half's repeats only; the repeat tasks take the loaders' refs as arguments, so Ray starts them when the pixels are
in and a loader's failure comes back as the failure of its repeats. Repeat r is seeded as repeat r of a full run
(``sample_seeds``), on the stage's pixels, with the stage's N: the repeat unit itself (``score_repeat``).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import ray

from otce_ray.cluster import Call, Cluster, one_line
from otce_ray.config import RunConfig
from otce_ray.pipeline.plan import ModelPlan, Resources
from otce_ray.pipeline.scoring import in_flight_cap, repeat_task
from otce_ray.pipeline.tasks import store_reads
from otce_ray.scoring.baselines import BaselineSettings
from otce_ray.scoring.repeat import RepeatRecord
from otce_ray.scoring.settings import OTCESettings
from otce_ray.scoring.stopping import StageScores
from otce_ray.store import read_samples

logger = logging.getLogger("otce_ray")
NO_BASELINES = BaselineSettings(metrics=())


@dataclass(eq=False)
class Racer:
    """One (model, target) pair in a race: its plan, its target's output, and what each stage it ran gave."""

    pair: ModelPlan
    output: str
    stages: dict[int, list[RepeatRecord]] = field(default_factory=dict)  # stage -> its repeats' records
    keys: dict[int, dict[str, Any]] = field(default_factory=dict)  # stage -> what decided them (``stage_key``)
    error: str | None = None
    extract_seconds: float = 0.0
    params: int | None = None

    @property
    def name(self) -> str:
        return self.pair.name

    @property
    def target(self) -> str:
        return self.pair.target

    def scores(self, stage: int) -> StageScores:
        """The stage's converged repeat scores, by half."""
        records = [record for record in self.stages[stage] if record.converged]
        return StageScores(tuple(r.score for r in records if r.repeat % 2 == 0),
                           tuple(r.score for r in records if r.repeat % 2 == 1))


@dataclass(eq=False)
class _Work:
    racer: Racer
    keys: Mapping[str, str]  # dataset -> its store's key
    shards: Mapping[str, tuple[int, ...]]  # dataset -> the stage's shards of its store
    tasks: deque = field(default_factory=deque)
    records: dict[int, RepeatRecord] = field(default_factory=dict)
    pixels: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # half -> refs to (source, target) pixels


class StageScoring:
    """The repeats of one stage. ``expect`` announces racers still being extracted, ``ready`` hands one over;
    ``on_done`` gets each racer once, with the stage's records (``Racer.stages``) or its ``error`` set."""

    name = "racing"

    def __init__(self, config: RunConfig, resources: Resources, cluster: Cluster, stage: int,
                 settings: OTCESettings, on_done: Callable[[Racer], None]) -> None:
        self.config, self.resources, self.cluster = config, resources, cluster
        self.stage, self.settings, self.on_done = stage, settings, on_done
        self._repeat = repeat_task(resources)
        self._load = ray.remote(read_samples).options(num_cpus=1, max_retries=2)
        self._queue: deque[_Work] = deque()
        self._expected = 0
        self._in_flight = 0

    def expect(self, count: int) -> None:
        self._expected += count

    def ready(self, racer: Racer, keys: Mapping[str, str], shards: Mapping[str, tuple[int, ...]]) -> None:
        """A racer whose stores hold the stage's shards (``shards``, per dataset; ``keys``: their stores' keys)."""
        self._expected -= 1
        self._queue.append(_Work(racer, keys, shards, deque(range(self.settings.repeats))))

    def idle(self) -> bool:
        return not self._queue and self._expected == 0

    def start(self) -> list[Call]:
        calls = []
        cap = in_flight_cap(self.config, self.resources, self.cluster)
        while self._queue and self._in_flight < cap:
            work = self._queue[0]
            repeat = work.tasks.popleft()
            if not work.tasks:
                self._queue.popleft()
            half = repeat % 2
            if half not in work.pixels:
                work.pixels[half] = self._load_half(work, half)
            ref = self._repeat.remote(*work.pixels[half], self.settings, repeat, self.resources.scoring_device)
            self._in_flight += 1
            calls.append(Call((work, repeat), ref, f"racing stage {self.stage}, repeat {repeat} of model "
                                                   f"{work.racer.name!r} for {work.racer.target!r}"))
        return calls

    def done(self, key: tuple, value: Any) -> None:
        self._in_flight -= 1
        work, repeat = key
        if work.racer.error is not None:
            return
        work.records[repeat] = value
        if len(work.records) == self.settings.repeats:
            work.racer.stages[self.stage] = [work.records[index] for index in sorted(work.records)]
            work.pixels.clear()
            self.on_done(work.racer)

    def failed(self, key: tuple, error: BaseException) -> None:
        self._in_flight -= 1
        work, repeat = key
        logger.warning("model %r: racing stage %d, repeat %d failed: %s", work.racer.name, self.stage, repeat, error)
        if work.racer.error is not None:
            return
        work.racer.error = (f"model {work.racer.name!r}: racing stage {self.stage}, repeat {repeat} failed: "
                            f"{one_line(error)}")
        work.tasks.clear()
        if work in self._queue:
            self._queue.remove(work)
        work.pixels.clear()
        self.on_done(work.racer)

    def _load_half(self, work: _Work, half: int) -> tuple[Any, Any]:
        """Loader tasks for one half of the stage's shards of each store of the racer; refs to (source, target)."""
        spec, target = work.racer.pair.spec, work.racer.target
        repeats = range(half, self.settings.repeats, 2)
        reads = store_reads(spec["source"]["name"], target, self.settings, NO_BASELINES, repeats)
        refs = {dataset: self._load.remote(self.config.store, dataset, spec["name"], samples, with_logits=False,
                                           key=work.keys[dataset], shards=work.shards[dataset][half::2])
                for dataset, (samples, _) in reads.items()}
        return refs[spec["source"]["name"]], refs[target]
