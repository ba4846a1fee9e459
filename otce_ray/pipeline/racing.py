"""Racing (``racing:``): score every model cheaply first, stop those that cannot reach the top k, give the rest more.

``race`` runs the stages before the final one (``otce_ray.scoring.racing``) and hands back the plan of the final
stage: the (model, target) pairs still racing, which ``otce_ray.pipeline.run`` then extracts in full and scores with
the run's own settings, exactly as a run without racing would (the same stores, the same repeats, the same record).

Per stage: every racer's stores are extracted up to the stage's shards (``Stage.shards``, ``StorePlan.only``:
parts already there are found by their footer key and kept, so stores only grow, and no manifest is written until a
store is whole), its repeats run as soon as its stores hold them (``StageScoring``), and when every racer of the
stage has its scores, each target's race decides who stops (``otce_ray.scoring.stopping.decide``). A stopped pair
gets a result record of status ``stopped``: its stage score, the stage, and the bound it stopped on.

Every racer's repeat records are kept per stage in ``{output}/racing/{model}.json`` (its target's output) as soon
as the racer's stage is scored. A rerun (a killed driver, a grown zoo) replays the race from those records: stages
a racer has records for are not scored again, and the decisions, which depend only on the records, come out the same,
so the race resumes at the stage it reached. Pairs reused from earlier results take part with the records they have
(their result stays, being a full score).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Mapping

from otce_ray import fs
from otce_ray.cluster import Cluster, drive
from otce_ray.extraction import ExtractionJobs, ExtractionSummary, StorePlan, WorkerPool
from otce_ray.leaderboard import ModelResult, record_result
from otce_ray.config import RunConfig
from otce_ray.pipeline.plan import RunPlan, store_of
from otce_ray.pipeline.progress import Progress
from otce_ray.pipeline.stage_scoring import Racer, StageScoring
from otce_ray.schema import require_name
from otce_ray.scoring.racing import Stage, order_of
from otce_ray.scoring.repeat import RepeatRecord
from otce_ray.scoring.settings import OTCESettings
from otce_ray.scoring.stopping import StageDecision, decide, quantile

logger = logging.getLogger("otce_ray")
RACING_DIR = "racing"
RECORD_VERSION = 1
WRITE_THREADS = 8  # records written side by side (on S3 each is a PUT), never in the dispatch loop's way


def race(plan: RunPlan, cluster: Cluster, pool: WorkerPool, bar: Progress,
         results: dict[tuple[str, str], ModelResult]) -> tuple[RunPlan, dict[str, dict[str, Any]]]:
    """Run the stages before the final one; the plan of the final stage (the pairs still racing, and the pairs that
    fail), and run.json's ``racing`` section per target. Stopped and failed racers' results go to ``results``."""
    config = plan.config
    settings = config.racing
    outputs = {name: view.output for name, view in plan.views.items()}
    racers = _racers(plan, outputs)
    count = {target: sum(racer.target == target for racer in racers) for target in outputs}
    bounds = {target: quantile(settings.confidence, count[target], len(settings.stages)) for target in outputs}
    sections = {target: {"top_k": settings.top_k, "confidence": settings.confidence, "quantile": bounds[target],
                         "racers": count[target], "stages": []} for target in outputs}
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as writer:
        for number, stage in enumerate(settings.stages, start=1):
            scored, written = _run_stage(plan, cluster, pool, writer, number, stage, racers)
            for racer in [racer for racer in racers if racer.error is not None]:
                results[(racer.target, racer.name)] = ModelResult.from_repeats(
                    model=racer.name, source=racer.pair.spec["source"]["name"],
                    architecture=racer.pair.spec.get("architecture"), settings=stage.settings(config.otce),
                    records=[], error=racer.error, fingerprint=racer.pair.fingerprint,
                    extract_seconds=racer.extract_seconds)
                bar.scored(failed=True)
            racers = [racer for racer in racers if racer.error is None]
            for target in outputs:
                entrants = [racer for racer in racers if racer.target == target and number in racer.stages]
                decision = decide({racer.name: racer.scores(number) for racer in entrants}, top_k=settings.top_k,
                                  images=stage.images, quantile=bounds[target])
                stopped = set(decision.stopped)
                for racer in entrants:
                    if racer.name in stopped and racer.pair.action == "run":
                        result = _stopped(racer, number, len(settings.stages) + 1, stage, decision, config)
                        results[(target, racer.name)] = result
                        writer.submit(record_result, racer.output, result)
                        bar.scored()
                sections[target]["stages"].append(_stage_record(number, stage, config.otce, entrants, scored,
                                                                written, decision))
                logger.info("racing %r, stage %d: %d racers, %d stopped (k-th lower bound %.4f, image allowance "
                            "%.4f)", target, number, len(entrants), len(stopped), decision.threshold,
                            decision.allowance)
                racers = [racer for racer in racers if racer.target != target
                          or (racer.name not in stopped and number in racer.stages)]
    finalists = [racer.pair for racer in racers if racer.pair.action == "run"]
    for target in outputs:
        sections[target]["final"] = [racer.name for racer in racers if racer.target == target]
    return dataclasses.replace(plan, models=tuple(finalists + plan.by_action("fail"))), sections


def _racers(plan: RunPlan, outputs: Mapping[str, str]) -> list[Racer]:
    """Every pair the race is run among: those to run, and those reused whose stage records are there; each with the
    stage records it has (read side by side)."""
    candidates = [Racer(pair, outputs[pair.target]) for pair in plan.models if pair.action in ("run", "reuse")]
    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as reader:
        found = list(reader.map(lambda racer: read_stages(racer.output, racer.name, racer.pair.fingerprint),
                                candidates))
    for racer, (stages, keys) in zip(candidates, found):
        racer.stages, racer.keys = stages, keys
    return [racer for racer in candidates if racer.pair.action == "run" or 1 in racer.stages]


def _run_stage(plan: RunPlan, cluster: Cluster, pool: WorkerPool, writer: ThreadPoolExecutor, number: int,
               stage: Stage, racers: list[Racer]) -> tuple[list[Racer], int]:
    """Extract and score stage ``number`` for the racers that have no valid record of it; (those racers, shards
    written). Each racer's record is written as soon as its stage is scored; all are written on return."""
    config = plan.config
    settings = stage.settings(config.otce)
    key = stage_key(number, stage, config.otce, config.extraction.num_shards)
    for racer in racers:  # a record under other settings is scored again
        if racer.keys.get(number) != key:
            racer.stages.pop(number, None)
    todo = [racer for racer in racers if number not in racer.stages and racer.pair.action == "run"]
    if not todo:
        return [], 0
    readers: dict[tuple[str, str], list[Racer]] = defaultdict(list)
    waiting: dict[Racer, int] = {}
    shards: dict[Racer, dict[str, tuple[int, ...]]] = {}
    keys: dict[Racer, dict[str, str]] = {}
    plans: dict[tuple[str, str], StorePlan] = {}
    pending: list[Future] = []
    written = [0]

    def on_done(racer: Racer) -> None:
        if racer.error is None:
            racer.keys[number] = key
            pending.append(writer.submit(write_stages, racer.output, racer.name, racer.pair.fingerprint,
                                         racer.stages, racer.keys))

    scoring = StageScoring(config, plan.resources, cluster, number, settings, on_done)

    def on_store(summary: ExtractionSummary) -> None:
        written[0] += summary.shards_written
        for racer in readers[(summary.model, summary.dataset)]:
            racer.extract_seconds += summary.seconds
            racer.params = racer.params if racer.params is not None else summary.params
            if summary.status == "failed" and racer.error is None:
                racer.error = summary.error
            waiting[racer] -= 1
            if waiting[racer] == 0:
                if racer.error is None:
                    scoring.ready(racer, keys[racer], shards[racer])
                else:
                    scoring.expect(-1)

    for racer in todo:
        waiting[racer] = len(racer.pair.stores)
        shards[racer], keys[racer] = {}, {}
        scoring.expect(1)
        for store in racer.pair.stores:
            readers[store_of(store)].append(racer)
            dataset = store_of(store)[1]
            order = order_of(dataset, racer.name, racer.target)
            if isinstance(store, StorePlan):
                shards[racer][dataset] = stage.shards(order, len(store.shards), config.otce.seed)
                plans.setdefault(store_of(store), store.only(shards[racer][dataset]))
                keys[racer][dataset] = store.request.key
            else:  # complete already (its parts are there to read; its summary counts them), or failed to plan
                shards[racer][dataset] = stage.shards(order, store.shards_reused, config.otce.seed)
                keys[racer][dataset] = store.key
    extraction = ExtractionJobs(pool, batch_size=config.extraction.batch_size, on_store=on_store,
                                resource_wait_seconds=config.cluster.resource_wait_seconds)
    extraction.add(plans.values())
    for store in {store_of(store): store for racer in todo for store in racer.pair.stores}.values():
        if isinstance(store, ExtractionSummary):
            on_store(store)
    drive([extraction, scoring], stuck_seconds=config.cluster.stuck_task_seconds)
    for future in pending:
        future.result()
    return todo, written[0]


def stage_key(number: int, stage: Stage, otce: OTCESettings, num_shards: int | None) -> dict[str, Any]:
    """What decides a stage's records besides the pair's fingerprint (which covers the model, the data and the run's
    estimator): the stage and its estimator, and the shard layout its images are taken from."""
    return json.loads(json.dumps({"stage": number, "images": stage.images, "settings": stage.settings(otce).key(),
                                  "num_shards": num_shards}))


def _stopped(racer: Racer, number: int, stages: int, stage: Stage, decision: StageDecision,
             config: RunConfig) -> ModelResult:
    """The result record of a racer stopped at stage ``number``: its stage score, where and why it stopped."""
    bound = decision.bounds[racer.name]
    note = (f"stopped by racing at stage {number} of {stages} (images {stage.images:g} of each store, N "
            f"{stage.settings(config.otce).n_pixels}, K {stage.repeats}): its upper bound {bound.high:.4f} is below "
            f"the {config.racing.top_k}th best lower bound {decision.threshold:.4f}; its score is that stage's")
    result = ModelResult.from_repeats(
        model=racer.name, source=racer.pair.spec["source"]["name"], architecture=racer.pair.spec.get("architecture"),
        settings=stage.settings(config.otce), records=racer.stages[number], notes=[note],
        fingerprint=racer.pair.fingerprint, extract_seconds=racer.extract_seconds, params=racer.params)
    info = {"stage": number, "stages": stages, "bound": bound.high, "threshold": decision.threshold,
            "allowance": decision.allowance, "quantile": decision.quantile, "images": stage.images}
    return dataclasses.replace(result, status="stopped", racing=info)


def _stage_record(number: int, stage: Stage, otce: OTCESettings, entrants: list[Racer], scored: list[Racer],
                  written: int, decision: StageDecision) -> dict[str, Any]:
    """One stage of one target's race, for run.json."""
    names = {racer.name for racer in entrants}
    return {"stage": number, "images": stage.images, "n_pixels": stage.settings(otce).n_pixels,
            "repeats": stage.repeats, "racers": len(entrants),
            "scored": sum(racer.name in names for racer in scored),
            "from_records": len(names) - sum(racer.name in names for racer in scored),
            "shards_written": written, "stopped": list(decision.stopped), "threshold": decision.threshold,
            "allowance": decision.allowance, "repeat_variance": decision.repeat_variance,
            "repeat_seconds": sum(record.seconds for racer in entrants for record in racer.stages[number]),
            "notes": list(decision.notes)}


# --- records --------------------------------------------------------------------------------------------------------


def stages_uri(output: str, model: str) -> str:
    return fs.join(output, RACING_DIR, f"{require_name(model, 'model')}.json")


def write_stages(output: str, model: str, fingerprint: str, stages: Mapping[int, Iterable[RepeatRecord]],
                 keys: Mapping[int, Mapping[str, Any]]) -> None:
    """Write a racer's record: per stage, its key and its repeats' records (atomically, replacing the last)."""
    body = {"version": RECORD_VERSION, "model": model, "fingerprint": fingerprint,
            "stages": {str(number): {"key": keys[number], "records": [dataclasses.asdict(r) for r in records]}
                       for number, records in sorted(stages.items())}}
    fs.write_bytes_atomic(stages_uri(output, model), json.dumps(body, indent=1).encode())


def read_stages(output: str, model: str, fingerprint: str | None = None
                ) -> tuple[dict[int, list[RepeatRecord]], dict[int, dict[str, Any]]]:
    """A racer's recorded stages (records, keys), or none when there is no record, it is unreadable (logged) or it
    was written for another ``fingerprint`` than the one given (the model, its data or the run's settings
    changed); None takes any."""
    uri = stages_uri(output, model)
    try:
        body = json.loads(fs.read_bytes(uri))
        if body.get("version") != RECORD_VERSION or fingerprint not in (None, body.get("fingerprint")):
            return {}, {}
        stages = {int(number): [_repeat(record) for record in stage["records"]]
                  for number, stage in body["stages"].items()}
        keys = {int(number): stage["key"] for number, stage in body["stages"].items()}
    except FileNotFoundError:
        return {}, {}
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        logger.warning("%s: not a valid racing record (%s); its stages are scored again", uri, error)
        return {}, {}
    return stages, keys


def _repeat(data: Mapping[str, Any]) -> RepeatRecord:
    """A repeat's record from JSON (its tuples came back as lists)."""
    return RepeatRecord(**{**data, "source_classes": tuple(data["source_classes"]),
                           "target_classes": tuple(data["target_classes"]),
                           "joint": tuple(tuple(row) for row in data["joint"])})

