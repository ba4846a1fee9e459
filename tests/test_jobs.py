"""A real Ray head on 127.0.0.1 and the Jobs API: ``jobs/score.py`` submitted as users do, run to completion.

The head runs under ``ray start --block`` so that terminating that one process stops this cluster only
(``ray stop`` would also stop the session's other local Ray).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from otce_ray.datasets.synth import write_benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT_FLAGS = ("--port", "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
              "--metrics-export-port", "--ray-client-server-port", "--node-manager-port", "--object-manager-port",
              "--runtime-env-agent-port")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path_factory.mktemp("head") / "ray-start.log", "w")
    command = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
               "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1", "--num-cpus=2",
               "--object-store-memory=100000000", "--disable-usage-stats",
               *(f"{flag}={port}" for flag, port in ports.items())]
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 90
        while True:
            try:
                yield JobSubmissionClient(address)
                break
            except Exception:  # noqa: BLE001 - the dashboard is not up yet
                if time.monotonic() > deadline or head.poll() is not None:
                    raise
                time.sleep(1)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()


def test_score_job_runs_to_completion_through_the_jobs_api(ray_head, tmp_path):
    from ray.job_submission import JobStatus

    cities = write_benchmark(str(tmp_path / "bench"), cities=2, images_per_city=2, size=(48, 96), seed=0)
    dataset = lambda city: {"name": city, "format": "cityscapes", "root": str(tmp_path / "bench"),  # noqa: E731
                            "split": "train", "cities": [city]}
    config = {
        "store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": dataset(cities[1]),
        "models": [{"name": "unet_alpha", "format": "builtin", "architecture": "unet", "source": dataset(cities[0])}],
        "otce": {"n_pixels": 100, "repeats": 2}, "extraction": {"pixels_per_image": 60, "batch_size": 2},
    }
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))

    job = ray_head.submit_job(entrypoint=f"python jobs/score.py --config {config_path} --quiet",
                              runtime_env={"working_dir": REPO})
    deadline = time.monotonic() + 300
    while (status := ray_head.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(1)
    logs = ray_head.get_job_logs(job)
    assert status == JobStatus.SUCCEEDED, logs
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    assert list(board["model"]) == ["unet_alpha"] and list(board["status"]) == ["ok"]
    assert "unet_alpha" in logs  # the job printed its leaderboard


def test_failing_entrypoint_ends_failed(ray_head, tmp_path):
    from ray.job_submission import JobStatus

    job = ray_head.submit_job(entrypoint=f"python jobs/score.py --config {tmp_path / 'missing.yaml'}",
                              runtime_env={"working_dir": REPO})
    deadline = time.monotonic() + 120
    while (status := ray_head.get_job_status(job)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline
        time.sleep(1)
    assert status == JobStatus.FAILED
    assert "missing.yaml" in ray_head.get_job_logs(job)
