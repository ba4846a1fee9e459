"""Whole runs on multi-node Ray clusters whose shape changes under them, as a cloud cluster's does.

Each test starts a ``ray.cluster_utils.Cluster`` on this machine and submits the run as a separate driver process
(``otce-ray score``, connected through RAY_ADDRESS), so the test can add nodes, remove them without warning, or kill
the driver while the run goes on. A fake GPU is only a resource: extraction workers that ask for one run on CPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from otce_ray.datasets.synth import write_benchmark
from otce_ray.leaderboard import load_results
from otce_ray.pipeline.scoring import RESIDENT_FRACTION

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
STORE_MEMORY = 80 << 20


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cities = write_benchmark(str(root), cities=3, images_per_city=4, size=(32, 64), seed=0)
    return str(root), cities


@pytest.fixture
def cluster(monkeypatch):
    """A head that runs no tasks (``CPU: 0``, as in cluster.yaml); the test adds the worker nodes it needs."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", TESTS_DIR)  # workers import the helper nets by module name
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "object_store_memory": STORE_MEMORY})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _dataset(root: str, city: str) -> dict:
    return {"name": city, "format": "cityscapes", "root": root, "split": "train", "cities": [city]}


def _write_config(path, benchmark, store, output, *, models: int = 3, delay: float = 0.0, racing=None,
                  **extraction) -> str:
    root, cities = benchmark
    specs = [{"name": f"conv{index}", "format": "python", "entrypoint": "test_extraction_nets:slow_conv",
              "kwargs": {"delay": delay, "channels": 8, "seed": index}, "source": _dataset(root, cities[index % 2])}
             for index in range(models)]
    raw = {"store": str(store), "output": str(output), "target": _dataset(root, cities[2]), "models": specs,
           "otce": {"n_pixels": 100, "repeats": 3}, "baselines": {"metrics": []},
           "extraction": {"pixels_per_image": 50, "batch_size": 1, "num_shards": 4, **extraction},
           **({"racing": racing} if racing else {})}
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _start(cluster, config: str, log) -> subprocess.Popen:
    env = dict(os.environ, RAY_ADDRESS=cluster.address, PYTHONPATH=TESTS_DIR + os.pathsep + REPO)
    return subprocess.Popen([sys.executable, "-m", "otce_ray.cli", "score", "--config", config, "--quiet"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _finish(process: subprocess.Popen, log_path) -> None:
    try:
        process.wait(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, open(log_path).read()[-3000:]


def _files(folder) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names)


def _scores(output) -> dict[str, tuple[float, ...]]:
    results = load_results(str(output))
    assert results and all(r.status == "ok" for r in results), [(r.model, r.error) for r in results]
    return {r.model: r.scores for r in results}


def test_gpu_work_waits_for_gpu_nodes_that_join_during_the_run(cluster, benchmark, tmp_path):
    cluster.add_node(num_cpus=2, object_store_memory=STORE_MEMORY)  # CPU only: no GPU anywhere yet
    config = _write_config(tmp_path / "run.yaml", benchmark, tmp_path / "store", tmp_path / "out", num_gpus=1)
    log_path = tmp_path / "driver.log"
    with open(log_path, "w") as log:
        process = _start(cluster, config, log)
        _wait_for(lambda: "the Ray cluster has no GPU now" in log_path.read_text(), "the no-GPU warning", process)
        time.sleep(5)  # the run is up and waiting: nothing can be extracted without a GPU
        assert process.poll() is None and not _files(tmp_path / "store")
        cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=STORE_MEMORY)  # the autoscaler's GPU node
        _finish(process, log_path)
    assert set(_scores(tmp_path / "out")) == {"conv0", "conv1", "conv2"}
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["plan"]["resources"]["extraction_gpus"] == 1.0
    assert set(record["extraction"]) == {"conv0", "conv1", "conv2"}


def test_worker_nodes_lost_mid_extraction_and_mid_scoring_change_nothing(cluster, benchmark, tmp_path):
    nodes = [cluster.add_node(num_cpus=2, object_store_memory=STORE_MEMORY) for _ in range(2)]
    config = _write_config(tmp_path / "run.yaml", benchmark, tmp_path / "store", tmp_path / "out", models=4,
                           delay=0.3)
    log_path = tmp_path / "driver.log"
    with open(log_path, "w") as log:
        process = _start(cluster, config, log)
        _wait_for(lambda: any(f.endswith(".parquet") for f in _files(tmp_path / "store")), "a first part", process)
        cluster.remove_node(nodes[0], allow_graceful=False)  # mid-extraction, without warning
        cluster.add_node(num_cpus=2, object_store_memory=STORE_MEMORY)
        _wait_for(lambda: _files(tmp_path / "out" / "results"), "a first result", process)
        cluster.remove_node(nodes[1], allow_graceful=False)  # mid-scoring
        cluster.add_node(num_cpus=2, object_store_memory=STORE_MEMORY)
        _finish(process, log_path)
    interrupted = _scores(tmp_path / "out")
    solo = _write_config(tmp_path / "solo.yaml", benchmark, tmp_path / "solo-store", tmp_path / "solo-out", models=4)
    with open(tmp_path / "solo.log", "w") as log:
        _finish(_start(cluster, solo, log), tmp_path / "solo.log")
    assert interrupted == _scores(tmp_path / "solo-out")  # bit for bit: retries recompute the same numbers


def test_a_killed_driver_resumes_without_recomputing_what_it_recorded(cluster, benchmark, tmp_path):
    cluster.add_node(num_cpus=2, object_store_memory=STORE_MEMORY)
    config = _write_config(tmp_path / "run.yaml", benchmark, tmp_path / "store", tmp_path / "out", models=4,
                           delay=0.2)
    results = tmp_path / "out" / "results"
    with open(tmp_path / "first.log", "w") as log:
        process = _start(cluster, config, log)
        _wait_for(lambda: _files(results), "a first result", process)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    recorded = {path: os.stat(path).st_mtime_ns for path in _files(results)}
    assert 0 < len(recorded) < 4
    done = {os.path.basename(path)[: -len(".json")] for path in recorded}
    stores = {path: os.stat(path).st_mtime_ns for path in _files(tmp_path / "store")
              if os.path.basename(os.path.dirname(path)) in done}
    with open(tmp_path / "second.log", "w") as log:
        _finish(_start(cluster, config, log), tmp_path / "second.log")
    assert {path: os.stat(path).st_mtime_ns for path in recorded} == recorded
    assert all(os.stat(path).st_mtime_ns == stamp for path, stamp in stores.items())
    assert json.loads((tmp_path / "out" / "run.json").read_text())["timings"]["models_reused"] == len(recorded)
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert len(board) == 4 and (board["status"] == "ok").all()


def test_a_driver_killed_mid_race_resumes_at_the_stage_it_reached(cluster, benchmark, tmp_path):
    cluster.add_node(num_cpus=2, object_store_memory=STORE_MEMORY)
    racing = {"top_k": 2, "stages": [{"images": 0.25, "pixels": 0.25, "repeats": 4},
                                     {"images": 0.75, "pixels": 0.5, "repeats": 4}]}
    config = _write_config(tmp_path / "run.yaml", benchmark, tmp_path / "store", tmp_path / "out", models=4,
                           delay=0.5, racing=racing)
    records = tmp_path / "out" / "racing"
    with open(tmp_path / "first.log", "w") as log:
        process = _start(cluster, config, log)
        _wait_for(lambda: len(_files(records)) == 4, "every racer's stage-1 record", process)
        os.killpg(process.pid, signal.SIGKILL)  # stage 1 is decided by its records: the race is past it
        process.wait()
    first = {path: json.loads(open(path).read())["stages"]["1"] for path in _files(records)}
    with open(tmp_path / "second.log", "w") as log:
        _finish(_start(cluster, config, log), tmp_path / "second.log")
    race = json.loads((tmp_path / "out" / "run.json").read_text())["racing"]
    one, two = race["stages"]
    assert (one["racers"], one["scored"], one["from_records"]) == (4, 0, 4)  # stage 1 was not scored again
    assert two["scored"] + two["from_records"] == two["racers"] == 4 - len(one["stopped"])
    assert {path: json.loads(open(path).read())["stages"]["1"] for path in first} == first
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert len(board) == 4 and set(board["status"]) <= {"ok", "stopped"} and (board["status"] == "ok").sum() >= 2


def test_forty_models_with_2048_d_features_fit_a_1_gb_object_store(cluster, tmp_path):
    """Loaded pixels are admitted by bytes: 40 models hold ~1.3 GB of loaded pixels in all, more than the store."""
    import torch

    cluster.add_node(num_cpus=2, object_store_memory=1 << 30)
    root, cities = str(tmp_path / "data"), write_benchmark(str(tmp_path / "data"), cities=3, images_per_city=8,
                                                          size=(32, 64), seed=1)
    models = []
    for index in range(40):
        path = tmp_path / f"wide{index}.pt"
        torch.manual_seed(index)
        torch.jit.script(torch.nn.Conv2d(3, 2048, 1)).save(str(path))
        models.append({"name": f"wide{index}", "format": "torchscript", "path": str(path),
                       "source": _dataset(root, cities[index % 2])})
    raw = {"store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": _dataset(root, cities[2]),
           "models": models, "otce": {"n_pixels": 400, "repeats": 10, "solver": "emd"}, "baselines": {"metrics": []},
           "extraction": {"pixels_per_image": 500, "batch_size": 8}, "scoring": {"max_in_flight": 400}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    with open(tmp_path / "driver.log", "w") as log:
        _finish(_start(cluster, str(tmp_path / "run.yaml"), log), tmp_path / "driver.log")
    assert len(_scores(tmp_path / "out")) == 40
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    per_model = 2 * 8 * 500 * (2048 * 2 + 8)  # both stores read whole (10 x 400 rows > 4,000), float16 features
    assert 40 * per_model > 1 << 30  # held all at once, they would not fit
    budget = RESIDENT_FRACTION * (STORE_MEMORY + (1 << 30))  # of the object store of the head and the worker
    assert 0 < record["dispatch"]["peak_resident_pixel_bytes"] <= budget
