"""The run plan: everything a run needs, resolved once and frozen before any work is dispatched.

Each dataset is listed once per run (not once per model, nor per shard), each model's files are stamped once, and
from these come the fingerprints that decide what a previous run already recorded, the GPU policy, and for each
model still to run the stores it needs with the exact files of every shard. Listings and stamps are read with a
few threads, since on S3 each is a round trip. Nothing here touches Ray beyond reading the cluster's size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping

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
    """One model of the run: reuse its recorded result, run it (extract what its stores lack, score), or fail it."""

    spec: Mapping[str, Any]
    action: str  # "reuse" | "run" | "fail"
    fingerprint: str = ""
    stores: tuple[StorePlan | ExtractionSummary, ...] = ()  # "run": source store, then target unless the same
    error: str | None = None
    result: ModelResult | None = None  # "reuse": the recorded result

    @property
    def name(self) -> str:
        return self.spec["name"]


@dataclass(frozen=True)
class RunPlan:
    config: RunConfig
    resources: Resources
    datasets: Mapping[str, SegmentationDataset | DatasetError]
    models: tuple[ModelPlan, ...]
    seconds: float
    damaged_records: tuple[str, ...] = ()  # result records that could not be read: their models run again

    def by_action(self, action: str) -> list[ModelPlan]:
        return [model for model in self.models if model.action == action]

    def summary(self) -> dict[str, Any]:
        """The plan in numbers, for run.json."""
        shards = sum(len(store.shards) for model in self.models for store in model.stores
                     if isinstance(store, StorePlan))
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
    datasets = open_datasets([config.target, *(spec["source"] for spec in config.models)])
    target = datasets[config.target["name"]]
    if isinstance(target, DatasetError):
        raise target
    damaged: list[str] = []
    previous = {result.model: result for result in load_results(config.output, damaged)} if reuse else {}
    for problem in damaged:
        logger.warning("%s; its model is scored again", problem)
    fingerprints = {name: dataset.fingerprint for name, dataset in datasets.items()
                    if isinstance(dataset, SegmentationDataset)}

    def plan_model(spec: Mapping[str, Any]) -> ModelPlan:
        try:
            model = ModelSpec.from_dict(spec)
            identity = model_identity(model)
        except ValueError as error:  # e.g. its files cannot be reached: the model fails, the run goes on
            return ModelPlan(spec, "fail", error=describe(spec["name"], error))
        names = _datasets_of(spec, config.target)
        missing = [datasets[name] for name in names if isinstance(datasets[name], DatasetError)]
        if missing:
            return ModelPlan(spec, "fail", error=f"model {spec['name']!r}: {missing[0]}")
        fingerprint = model_fingerprint(config, spec, identity, fingerprints)
        done = previous.get(spec["name"])
        if done is not None and done.status == "ok" and done.fingerprint == fingerprint:
            return ModelPlan(spec, "reuse", fingerprint, result=done)
        stores = tuple(
            plan_store(model, datasets[name], config.store, pixels_per_image=config.extraction.pixels_per_image,
                       seed=config.otce.seed, num_shards=config.extraction.num_shards, feature_dtype=FEATURE_DTYPE,
                       model_identity=identity, dataset_fingerprint=fingerprints[name],
                       allowed_entrypoints=config.allowed_entrypoints)
            for name in names
        )
        return ModelPlan(spec, "run", fingerprint, stores)

    with ThreadPoolExecutor(max_workers=PLANNING_THREADS) as pool:
        models = tuple(pool.map(plan_model, config.models))
    return RunPlan(config, resources, datasets, models, time.perf_counter() - started, tuple(damaged))


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
    """A hash of everything that determines a model's score, so a rerun reuses a result only if it matches.

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
