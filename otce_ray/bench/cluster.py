"""``otce-ray bench cluster``: whole runs of M models on a multi-node Ray cluster with models and data on S3.

What a cloud run costs besides the numerics: driver time and memory per model as M grows, object-store use, and the
requests made to S3. Everything runs on this machine: a ``ray.cluster_utils.Cluster`` (a head that runs no tasks, as
in ``cluster.yaml``, and ``--nodes`` worker nodes of one CPU each) and a moto S3 server on loopback, whose access log
counts the requests (model-file GETs, LIST requests per dataset). Each M runs in a fresh child process with a fresh
cluster and server, so peaks are its own. The models are M small TorchScript convolutions (distinct weights) on two
source datasets and one target of a few tiny images, so what grows with M is the orchestration, not the numerics.

Printed per M: wall seconds per model, driver peak RSS, object-store peak and spilled bytes, model-file GETs per
model (max), LIST requests per dataset, Ray calls. The last line is one JSON object, with the issue's targets:
seconds per model at the largest M within 1.2x of the smallest, driver memory under 1 GB, model GETs per model at
most the number of worker nodes, a few LIST requests per dataset.
"""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

BUCKET = "otce-bench"
SOURCES = ("alpha", "beta")
TARGET = "gamma"
_REQUEST = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) (\S+) HTTP')
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
TARGETS = {"seconds_per_model_ratio": 1.2, "driver_peak_mib": 1024, "list_requests_per_dataset": 5}


def main(models: list[int], nodes: int = 2, images: int = 4) -> int:
    rows = []
    print(f"# {nodes} worker nodes of 1 CPU, head with 0 CPUs; {images} images per dataset; S3: moto on loopback")
    print(f"{'models':>7} {'s/model':>8} {'wall s':>8} {'driver MiB':>10} {'store peak MiB':>14} {'spilled MiB':>11} "
          f"{'GETs/model':>10} {'LIST/dataset':>12} {'ray calls':>9}")
    for count in models:
        child = subprocess.run([sys.executable, "-m", "otce_ray.bench.cluster", str(count), str(nodes), str(images)],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stdout[-2000:], child.stderr[-4000:], file=sys.stderr)
            raise RuntimeError(f"bench cluster: the run of {count} models failed (exit {child.returncode})")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{count:>7} {row['seconds_per_model']:>8.3f} {row['wall_seconds']:>8.1f} {row['driver_peak_mib']:>10.0f} "
              f"{row['object_store_peak_mib']:>14.1f} {row['spilled_mib']:>11.1f} {row['model_gets_per_model_max']:>10} "
              f"{max(row['list_requests_per_dataset'].values()):>12} {sum(row['ray_calls'].values()):>9}")
    first, last = rows[0], rows[-1]
    summary = {
        "bench": "cluster", "nodes": nodes, "images_per_dataset": images, "runs": rows,
        "seconds_per_model_ratio": round(last["seconds_per_model"] / first["seconds_per_model"], 3),
        "targets": TARGETS,
    }
    summary["targets_met"] = {
        "seconds_per_model_ratio": summary["seconds_per_model_ratio"] <= TARGETS["seconds_per_model_ratio"],
        "driver_peak_mib": all(r["driver_peak_mib"] < TARGETS["driver_peak_mib"] for r in rows),
        "model_gets_per_model": all(r["model_gets_per_model_max"] <= nodes for r in rows),
        "list_requests_per_dataset": all(max(r["list_requests_per_dataset"].values())
                                         <= TARGETS["list_requests_per_dataset"] for r in rows),
        "every_model_ok": all(r["models_ok"] == r["models"] for r in rows),
    }
    print(f"seconds per model at {last['models']} / at {first['models']}: {summary['seconds_per_model_ratio']:.3f}")
    print(json.dumps(summary))
    return 0


def run_one(models: int, nodes: int, images: int) -> dict[str, Any]:
    """One run of ``models`` models on a fresh cluster and S3 server; what it cost (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="otce-bench-cluster-") as work:
        log_path = os.path.join(work, "s3.log")
        server, endpoint = _start_s3(log_path)
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1",
                          OTCE_RAY_CACHE_DIR=os.path.join(work, "cache"))
        try:
            config = _upload(work, models, images)
            return {"models": models, "nodes": nodes, **_run(config, nodes, work),
                    **_requests(log_path, models, config)}
        finally:
            server.terminate()
            server.wait()


def _start_s3(log_path: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("bench cluster: the moto S3 server did not start") from None
            time.sleep(0.2)


def _upload(work: str, models: int, images: int) -> dict[str, Any]:
    """Data and models written locally, uploaded to the bucket; the run config pointing at them."""
    import boto3
    import torch

    from otce_ray.datasets.synth import write_benchmark

    data = os.path.join(work, "data")
    cities = write_benchmark(data, cities=3, images_per_city=images, size=(32, 64), seed=0)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for folder, _, files in os.walk(data):
        for name in files:
            path = os.path.join(folder, name)
            s3.upload_file(path, BUCKET, "data/" + os.path.relpath(path, data))
    local = os.path.join(work, "model.pt")
    specs = []
    for index in range(models):
        torch.manual_seed(index)
        torch.jit.script(torch.nn.Conv2d(3, 16, 3, padding=1)).save(local)
        s3.upload_file(local, BUCKET, f"zoo/m{index:04d}.pt")
        specs.append({"name": f"m{index:04d}", "format": "torchscript", "path": f"s3://{BUCKET}/zoo/m{index:04d}.pt",
                      "source": _dataset(cities[index % 2])})
    return {"store": f"s3://{BUCKET}/store", "output": f"s3://{BUCKET}/out", "target": _dataset(cities[2]),
            "models": specs, "otce": {"n_pixels": 100, "repeats": 2}, "baselines": {"metrics": []},
            "extraction": {"pixels_per_image": 50, "batch_size": 4}}


def _dataset(city: str) -> dict[str, Any]:
    return {"name": city, "format": "cityscapes", "root": f"s3://{BUCKET}/data", "split": "train", "cities": [city]}


def _run(raw: dict[str, Any], nodes: int, work: str) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    from otce_ray import fs
    from otce_ray.config import parse_config
    from otce_ray.pipeline import run

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 0, "object_store_memory": 100 << 20})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, object_store_memory=200 << 20)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        sampler = _StoreSampler()
        sampler.start()
        started, cpu = time.perf_counter(), _cpu_seconds()
        board = run(parse_config(raw, base_dir=work), progress=False)
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        sampler.stop()
        record = json.loads(fs.read_bytes(f"s3://{BUCKET}/out/run.json"))
        return {"wall_seconds": round(wall, 2), "seconds_per_model": round(wall / len(raw["models"]), 4),
                "models_ok": int((board["status"] == "ok").sum()), "driver_cpu_seconds": round(cpu, 2),
                "driver_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "object_store_peak_mib": round(sampler.peak / 2**20, 1), "spilled_mib": round(sampler.spilled / 2**20, 1),
                "ray_calls": record["dispatch"]["calls"], "extraction_workers_started":
                    record["dispatch"]["extraction_workers_started"]}
    finally:
        ray.shutdown()
        cluster.shutdown()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _StoreSampler(threading.Thread):
    """Polls the cluster's object-store use (bytes used, bytes spilled) once a second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = self.spilled = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import ray
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        state = get_state_from_address(ray.get_runtime_context().gcs_address)
        while not self._halt.wait(1.0):
            self._sample(get_memory_info_reply, state)

    def _sample(self, reply_of: Any, state: Any) -> None:
        try:
            stats = reply_of(state).store_stats
        except Exception:  # noqa: BLE001 - a missed sample, not a failed bench
            return
        self.peak = max(self.peak, stats.object_store_bytes_used)
        self.spilled = max(self.spilled, stats.spilled_bytes_total)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _requests(log_path: str, models: int, config: dict[str, Any]) -> dict[str, Any]:
    """What the access log says: GETs of each model file, LIST requests under each dataset's folders."""
    gets: Counter = Counter()
    lists: Counter = Counter()
    for line in open(log_path, errors="replace"):
        match = _REQUEST.search(_COLOUR.sub("", line))
        if not match:
            continue
        method, target = match.groups()
        url = urlparse(target)
        query = parse_qs(url.query)
        if method == "GET" and url.path.startswith(f"/{BUCKET}/zoo/") and not query:
            gets[url.path] += 1
        elif method == "GET" and url.path.rstrip("/") == f"/{BUCKET}" and "prefix" in query:
            lists[unquote(query["prefix"][0])] += 1
    datasets = {spec["name"] for spec in [config["target"], *(m["source"] for m in config["models"])]}
    # every dataset of this benchmark lists the same two folders (leftImg8bit/train and gtFine/train)
    data_lists = sum(count for prefix, count in lists.items() if prefix.startswith("data/"))
    return {"model_gets_per_model_max": max(gets.values(), default=0),
            "model_gets_total": sum(gets.values()),
            "list_requests_per_dataset": {name: round(data_lists / len(datasets), 2) for name in sorted(datasets)},
            "list_requests_total": sum(lists.values())}


if __name__ == "__main__":
    print(json.dumps(run_one(*(int(arg) for arg in sys.argv[1:4]))))
