"""The run plan: everything a run needs, resolved once and frozen before any work is dispatched.

Each dataset is listed once per run (not once per model, nor per shard), each model's files are stamped once, and
from these come the fingerprints that decide what a previous run already recorded, the GPU policy, and for each
model still to run the stores it needs with the exact files of every shard. Listings and stamps are read with a
few threads, since on S3 each is a round trip. Nothing here touches Ray beyond reading the cluster's size.

A run of several targets (``targets:``) plans one ``ModelPlan`` per (model, target) pair, each reused or run on its
own, against its target's records; the stores of a model are planned once per dataset, so its source store is one
``StorePlan`` shared by its pairs and extracted once for every target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from otce_ray.cluster import ClusterView, check_gpus, resolve_num_gpus
from otce_ray.config import RunConfig
from otce_ray.datasets import DatasetError, SegmentationDataset, open_datasets
from otce_ray.extraction import ExtractionSummary, StorePlan, describe, plan_store
from otce_ray.extraction.shard import EXTRACTION_VERSION
from otce_ray.leaderboard import ModelResult, load_results
from otce_ray.models import ModelSpec
from otce_ray.models.identity import model_identity
from otce_ray.pipeline.tasks import result_key

logger = logging.getLogger("otce_ray")
PLANNING_THREADS = 16  # file stamps and manifests read side by side (S3 round trips)
FEATURE_DTYPE = "float16"


@dataclass(frozen=True)
class Resources:
    """The GPU policy of a run, decided once from the cluster it starts on (see ``resolve_num_gpus``)."""

    extraction_gpus: float
    extraction_cpus: float
    scoring_gpus: float
    scoring_device: str  # "cpu" or "cuda"


@dataclass(frozen=True)
class ModelPlan:
    """One model of the run for one target: reuse its recorded result, run it (extract what its stores lack, score),
    or fail it."""

    spec: Mapping[str, Any]
    action: str  # "reuse" | "run" | "fail"
    fingerprint: str = ""
    stores: tuple[StorePlan | ExtractionSummary, ...] = ()  # "run": source store, then target unless the same
    error: str | None = None
    result: ModelResult | None = None  # "reuse": the recorded result
    target: str = ""  # the target dataset's name

    @property
    def name(self) -> str:
        return self.spec["name"]


@dataclass(frozen=True)
class RunPlan:
    config: RunConfig
    resources: Resources
    datasets: Mapping[str, SegmentationDataset | DatasetError]
    models: tuple[ModelPlan, ...]  # one per (model, target), model by model
    seconds: float
    damaged_records: tuple[str, ...] = ()  # result records that could not be read: their models run again

    @property
    def views(self) -> dict[str, RunConfig]:
        """The run of each target (``RunConfig.per_target``)."""
        return self.config.per_target()

    def by_action(self, action: str) -> list[ModelPlan]:
        return [model for model in self.models if model.action == action]

    def summary(self) -> dict[str, Any]:
        """The plan in numbers, for run.json."""
        shards = sum(len(store.todo) for store in unique_stores(self.models) if isinstance(store, StorePlan))
        return {"datasets_listed": len(self.datasets), "models_to_run": len(self.by_action("run")),
                "models_reused": len(self.by_action("reuse")), "models_failed_to_plan": len(self.by_action("fail")),
                "shards_to_extract": shards, "planning_seconds": round(self.seconds, 3),
                "damaged_records": list(self.damaged_records),
                "resources": dataclasses.asdict(self.resources)}


def make_plan(config: RunConfig, cluster: ClusterView, *, reuse: bool = True) -> RunPlan:
    """Resolve ``config`` against the cluster and the data as they are now.

    With ``reuse`` False (extraction alone) every model gets its stores planned, recorded results or not. Raises
    ``DatasetError`` when the target cannot be listed: no model could be scored.
    """
    started = time.perf_counter()
    resources = decide_resources(config, cluster)
    views = config.per_target()
    datasets = open_datasets([*(view.target for view in views.values()), *(spec["source"] for spec in config.models)])
    for name in views:
        if isinstance(datasets[name], DatasetError):
            raise datasets[name]
    damaged: list[str] = []
    previous = {(name, result.model): result for name, view in views.items()
                for result in (load_results(view.output, damaged) if reuse else [])}
    for problem in damaged:
        logger.warning("%s; its model is scored again", problem)
    fingerprints = {name: dataset.fingerprint for name, dataset in datasets.items()
                    if isinstance(dataset, SegmentationDataset)}

    def plan_model(spec: Mapping[str, Any]) -> list[ModelPlan]:
        """The model's pair with each target; its stores planned once per dataset, shared by its pairs."""
        try:
            model = ModelSpec.from_dict(spec)
            identity = model_identity(model)
        except ValueError as error:  # e.g. its files cannot be reached: the model fails, the run goes on
            return [ModelPlan(spec, "fail", error=describe(spec["name"], error), target=name) for name in views]
        stores: dict[str, StorePlan | ExtractionSummary] = {}

        def store(name: str) -> StorePlan | ExtractionSummary:
            if name not in stores:
                stores[name] = plan_store(
                    model, datasets[name], config.store, pixels_per_image=config.extraction.pixels_per_image,
                    seed=config.otce.seed, num_shards=config.extraction.num_shards, feature_dtype=FEATURE_DTYPE,
                    model_identity=identity, dataset_fingerprint=fingerprints[name],
                    allowed_entrypoints=config.allowed_entrypoints)
            return stores[name]

        pairs = []
        for target, view in views.items():
            names = _datasets_of(spec, view.target)
            missing = [datasets[name] for name in names if isinstance(datasets[name], DatasetError)]
            if missing:
                pairs.append(ModelPlan(spec, "fail", error=f"model {spec['name']!r}: {missing[0]}", target=target))
                continue
            fingerprint = model_fingerprint(view, spec, identity, fingerprints)
            done = previous.get((target, spec["name"]))
            if done is not None and done.status == "ok" and done.fingerprint == fingerprint:
                pairs.append(ModelPlan(spec, "reuse", fingerprint, result=done, target=target))
            else:
                pairs.append(ModelPlan(spec, "run", fingerprint, tuple(map(store, names)), target=target))
        return pairs

    with ThreadPoolExecutor(max_workers=PLANNING_THREADS) as pool:
        models = tuple(pair for pairs in pool.map(plan_model, config.models) for pair in pairs)
    return RunPlan(config, resources, datasets, models, time.perf_counter() - started, tuple(damaged))


def unique_stores(models: Iterable[ModelPlan]) -> list[StorePlan | ExtractionSummary]:
    """Every store the pairs ``models`` need, once (a model's source store is shared by its pairs), in plan order."""
    found: dict[tuple[str, str], StorePlan | ExtractionSummary] = {}
    for model in models:
        for store in model.stores:
            found.setdefault(store_of(store), store)
    return list(found.values())


def store_of(store: StorePlan | ExtractionSummary) -> tuple[str, str]:
    """(model, dataset) of a planned store or its summary."""
    return (store.model, store.request.dataset) if isinstance(store, StorePlan) else (store.model, store.dataset)


def decide_resources(config: RunConfig, cluster: ClusterView) -> Resources:
    """GPUs per extraction worker and per scoring task: explicit settings win; "auto" follows the GPUs up now.

    Asking for more GPUs per task than any node has is refused while GPU nodes are up; with none up yet it is only
    a warning, since an autoscaler adds them once work asks for them.
    """
    gpus_up, largest = cluster.total("GPU"), cluster.largest("GPU")
    extraction = resolve_num_gpus(config.extraction.num_gpus, gpus_up)
    check_gpus(extraction, largest, "extraction.num_gpus")
    if config.scoring.device == "cpu":
        return Resources(extraction, config.extraction.num_cpus, 0.0, "cpu")
    scoring = resolve_num_gpus(config.scoring.num_gpus, gpus_up)
    if scoring == 0 and config.scoring.device == "cuda":
        raise ValueError("scoring.device is 'cuda' but the Ray cluster has no GPU: set scoring.num_gpus explicitly "
                         "on an autoscaling cluster, or use device 'auto'")
    check_gpus(scoring, largest, "scoring.num_gpus")
    return Resources(extraction, config.extraction.num_cpus, scoring, "cuda" if scoring > 0 else "cpu")


def model_fingerprint(config: RunConfig, spec: Mapping[str, Any], identity: Mapping[str, Any],
                      datasets: Mapping[str, str]) -> str:
    """A hash of everything that determines a model's score for ``config``'s target, so a rerun reuses a result only
    if it matches.

    The model's spec (by its reader's fingerprint, so two spellings agree), the content of its files and the source
    of its code (``models.identity``), both datasets as listed (``SegmentationDataset.fingerprint``), the extraction
    settings and code version, and the scoring settings with every default resolved and the engine's version
    (``result_key``): a new default or a solver fix rescores what it changes.
    """
    inputs = {
        "model": ModelSpec.from_dict(spec).fingerprint(),
        "identity": dict(identity),
        "source": datasets[spec["source"]["name"]],
        "target": datasets[config.target["name"]],
        "scoring": result_key(config.otce, config.baselines),
        "pixels_per_image": config.extraction.pixels_per_image,
        "extraction": EXTRACTION_VERSION,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _datasets_of(spec: Mapping[str, Any], target: Mapping[str, Any]) -> list[str]:
    """The source and the target, once when the model was trained on the target dataset itself."""
    source = spec["source"]["name"]
    return [source] if source == target["name"] else [source, target["name"]]
