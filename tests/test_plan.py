"""The run plan, without Ray: datasets listed once per run, exact shard files, reuse by fingerprint, GPU policy."""

from __future__ import annotations

import copy

import pytest

from otce_ray import fs
from otce_ray.cluster import ClusterView, resolve_num_gpus
from otce_ray.config import parse_config
from otce_ray.datasets import DatasetError
from otce_ray.datasets.synth import write_benchmark
from otce_ray.extraction import ExtractionSummary, StorePlan
from otce_ray.leaderboard import ModelResult, record_result
from otce_ray.pipeline.plan import decide_resources, make_plan
from store_cases import write_store

LAPTOP = ClusterView(({"CPU": 2.0, "object_store_memory": 1e8},))
NO_GPU_YET = ClusterView(({"CPU": 0.0},))  # an autoscaling cluster's head, before any worker
TWO_GPU_NODES = ClusterView(({"CPU": 0.0}, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}))


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cities = write_benchmark(str(root), cities=3, images_per_city=5, size=(32, 64), seed=0)
    return str(root), cities


def _dataset(root: str, city: str) -> dict:
    return {"name": city, "format": "cityscapes", "root": root, "split": "train", "cities": [city]}


def _raw(benchmark, tmp_path, **sections) -> dict:
    root, cities = benchmark
    models = [{"name": f"unet_{city}", "format": "builtin", "architecture": "unet", "source": _dataset(root, city)}
              for city in cities]
    return {"store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": _dataset(root, cities[2]),
            "models": models, "extraction": {"num_shards": 2}, **sections}


def _fingerprint(config, name: str) -> str:
    """The fingerprint the plan gives ``name``."""
    return next(model.fingerprint for model in make_plan(config, LAPTOP, reuse=False).models if model.name == name)


def test_each_dataset_is_listed_once_per_run_and_shards_carry_their_files(benchmark, tmp_path, monkeypatch):
    listed: list[str] = []
    original = fs.list_stamped
    monkeypatch.setattr(fs, "list_stamped", lambda uri: listed.append(uri) or original(uri))
    config = parse_config(_raw(benchmark, tmp_path), base_dir=str(tmp_path))
    plan = make_plan(config, LAPTOP)

    root = benchmark[0]
    assert len([uri for uri in listed if uri.startswith(root)]) == 2 * 3  # images and masks of each dataset, once
    assert [model.action for model in plan.models] == ["run", "run", "run"]
    alpha, _, gamma = plan.models
    assert [store.request.dataset for store in alpha.stores] == ["alpha", "gamma"]
    assert [store.request.dataset for store in gamma.stores] == ["gamma"]  # trained on the target: one store
    store = alpha.stores[0]
    assert isinstance(store, StorePlan) and store.request.num_shards == 2
    files = [sample for shard in store.shards for sample in shard.samples]
    assert sorted(files) == sorted(plan.datasets["alpha"].samples)  # each image in exactly one shard
    assert plan.summary()["shards_to_extract"] == 2 + 2 + 2 + 2 + 2


def test_recorded_results_are_reused_by_fingerprint(benchmark, tmp_path):
    config = parse_config(_raw(benchmark, tmp_path), base_dir=str(tmp_path))
    name = "unet_alpha"
    record_result(config.output, ModelResult(model=name, source="alpha", scores=(-0.5, -0.4),
                                             fingerprint=_fingerprint(config, name)))
    record_result(config.output, ModelResult(model="unet_beta", source="beta", scores=(-0.5, -0.4),
                                             fingerprint="stale"))
    plan = make_plan(config, LAPTOP)
    assert [(model.name, model.action) for model in plan.models] == [
        ("unet_alpha", "reuse"), ("unet_beta", "run"), ("unet_gamma", "run")]
    assert plan.by_action("reuse")[0].stores == ()
    assert len(make_plan(config, LAPTOP, reuse=False).by_action("run")) == 3  # extraction alone plans every store


def test_a_complete_store_is_planned_as_cached(benchmark, tmp_path):
    config = parse_config(_raw(benchmark, tmp_path), base_dir=str(tmp_path))
    first = make_plan(config, LAPTOP).models[2].stores[0]
    write_store(config.store, [5, 5], key=first.request.key, dataset="gamma", model="unet_gamma")
    cached = make_plan(config, LAPTOP).models[2].stores[0]
    assert isinstance(cached, ExtractionSummary) and (cached.status, cached.feature_dim) == ("cached", 6)


def test_models_whose_inputs_cannot_be_reached_fail_alone(benchmark, tmp_path, monkeypatch):
    raw = _raw(benchmark, tmp_path)
    raw["models"][0]["source"] = {**raw["models"][0]["source"], "name": "lost", "root": str(tmp_path)}
    raw["models"][1]["checkpoint"] = "s3://otce-no-bucket/w.pt"
    config = parse_config(raw, base_dir=str(tmp_path))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    plan = make_plan(config, LAPTOP)
    lost, remote, fine = plan.models
    assert (lost.action, fine.action, remote.action) == ("fail", "run", "fail")
    assert lost.error.startswith("model 'unet_alpha': dataset 'lost': directory") and "does not exist" in lost.error
    assert remote.error.startswith("model 'unet_beta': cannot reach s3://otce-no-bucket/w.pt")
    assert isinstance(plan.datasets["lost"], DatasetError)


def test_an_unlistable_target_ends_the_run_before_any_work(benchmark, tmp_path):
    raw = _raw(benchmark, tmp_path)
    raw["target"] = {**raw["target"], "name": "nowhere", "root": str(tmp_path)}
    with pytest.raises(DatasetError, match="dataset 'nowhere'"):
        make_plan(parse_config(raw, base_dir=str(tmp_path)), LAPTOP)


def test_gpu_policy_is_decided_once_from_the_cluster_it_starts_on(benchmark, tmp_path, caplog):
    def resources(view, **sections):
        return decide_resources(parse_config(_raw(benchmark, tmp_path, **sections), base_dir=str(tmp_path)), view)

    assert resolve_num_gpus(None, cluster_gpus=0) == 0.0  # a laptop without a GPU
    assert resolve_num_gpus(None, cluster_gpus=4) == 1.0
    assert resolve_num_gpus(0.5, cluster_gpus=0) == 0.5  # explicit always wins (autoscaling clusters)
    laptop = resources(LAPTOP)
    assert (laptop.extraction_gpus, laptop.scoring_gpus, laptop.scoring_device) == (0.0, 0.0, "cpu")
    gpus = resources(TWO_GPU_NODES)
    assert (gpus.extraction_gpus, gpus.scoring_gpus, gpus.scoring_device) == (1.0, 1.0, "cuda")
    # an autoscaling cluster before its first GPU node: explicit GPUs wait for the autoscaler, with a warning
    waiting = resources(NO_GPU_YET, extraction={"num_gpus": 1})
    assert waiting.extraction_gpus == 1.0 and waiting.scoring_device == "cpu"
    assert "the Ray cluster has no GPU now: tasks wait for the autoscaler" in caplog.text
    with pytest.raises(ValueError, match=r"extraction.num_gpus=2 per task, but the largest node .* has 1 GPUs"):
        resources(TWO_GPU_NODES, extraction={"num_gpus": 2})  # two 1-GPU nodes are not one 2-GPU node
    with pytest.raises(ValueError, match="scoring.device is 'cuda' but the Ray cluster has no GPU"):
        resources(LAPTOP, scoring={"device": "cuda"})


def test_cluster_view_counts_slots_node_by_node():
    view = ClusterView(({"CPU": 0.0}, {"CPU": 3.0, "GPU": 1.0}, {"CPU": 8.0}))
    assert view.slots({"CPU": 1.0, "GPU": 0.0}) == 11
    assert view.slots({"CPU": 1.0, "GPU": 0.5}) == 2
    assert view.slots({"CPU": 4.0, "GPU": 0.0}) == 2  # 3 CPUs on one node and 8 on another: no 4 on the first
    assert view.total("GPU") == 1.0 and view.largest("CPU") == 8.0 and ClusterView().total("GPU") == 0.0


def test_model_fingerprint_tracks_what_determines_the_score(benchmark, tmp_path):
    raw = _raw(benchmark, tmp_path)
    config = parse_config(raw, base_dir=str(tmp_path))
    again = parse_config(copy.deepcopy(raw), base_dir=str(tmp_path))
    assert _fingerprint(config, "unet_alpha") == _fingerprint(again, "unet_alpha")
    reordered = copy.deepcopy(raw)
    reordered["target"]["cities"] = [reordered["target"]["cities"][0]] * 2  # the same dataset, spelled differently
    assert _fingerprint(parse_config(reordered, base_dir=str(tmp_path)), "unet_alpha") == _fingerprint(
        config, "unet_alpha")
    assert _fingerprint(config, "unet_alpha") != _fingerprint(config, "unet_beta")
    for section, key, value in (("otce", "n_pixels", 1000), ("otce", "standardise", False),
                                ("extraction", "pixels_per_image", 10), ("baselines", "n_pixels", 100)):
        changed = copy.deepcopy(raw)
        changed.setdefault(section, {})[key] = value
        assert _fingerprint(parse_config(changed, base_dir=str(tmp_path)), "unet_alpha") != _fingerprint(
            config, "unet_alpha"), key
