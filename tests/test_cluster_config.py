"""cluster.yaml passes Ray's own offline config preparation and schema validation, says what the README promises,
and that validation does catch mistakes (so a pass means something)."""

from __future__ import annotations

import copy
import platform
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _validate(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validation(cluster):
    prepared = _validate(cluster)
    assert prepared["provider"]["type"] == "aws"
    assert set(prepared["available_node_types"]) == {"head.cpu", "worker.gpu", "worker.cpu"}


def test_head_runs_no_tasks_and_workers_are_spot_gpu_for_extraction_and_cpu_for_scoring(cluster):
    nodes = cluster["available_node_types"]
    assert nodes[cluster["head_node_type"]]["resources"] == {"CPU": 0}
    for name, instance in (("worker.gpu", "g5.xlarge"), ("worker.cpu", "c6i.2xlarge")):
        worker = nodes[name]
        assert worker["node_config"]["InstanceType"] == instance
        assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
        assert worker["min_workers"] == 0 and worker["max_workers"] >= 2
        assert worker["node_config"]["IamInstanceProfile"]["Name"]  # workers write to S3 with their own role
    assert nodes["worker.cpu"]["docker"]["worker_image"].endswith("-cpu")
    assert "whl/cpu" in nodes["worker.cpu"]["worker_setup_commands"][0]  # no multi-GB CUDA torch on CPU nodes


def test_every_node_runs_with_token_authentication(cluster):
    assert cluster["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    for commands in (cluster["head_start_ray_commands"], cluster["worker_start_ray_commands"]):
        start = next(command for command in commands if "ray start" in command)
        assert "export RAY_AUTH_MODE=token;" in start
    assert "--env RAY_AUTH_MODE=token" in cluster["docker"]["run_options"]


def test_image_pins_the_installed_ray_and_python(cluster):
    python = "py" + "".join(platform.python_version_tuple()[:2])
    assert cluster["docker"]["image"] == f"rayproject/ray:{ray.__version__}-{python}-gpu"
    options = cluster["docker"]["head_run_options"] + cluster["docker"]["worker_run_options"]
    assert sum(option.startswith("--shm-size=") for option in options) == 2


def test_nodes_install_otce_ray_and_hide_the_dashboard(cluster):
    assert cluster["file_mounts"]["/home/ray/otce-ray"] == "."
    cpu_worker = cluster["available_node_types"]["worker.cpu"]["worker_setup_commands"]
    for commands in (cluster["head_setup_commands"], cluster["worker_setup_commands"], cpu_worker):
        assert commands[0].startswith("pip install --quiet torch==")  # torch pinned before the project
        assert commands[-1] == "pip install --quiet -e /home/ray/otce-ray"
    start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start


def _broken(cluster: dict, edit) -> dict:
    config = copy.deepcopy(cluster)
    edit(config)
    return config


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda c: c.update(max_worker=c.pop("max_workers")), jsonschema.ValidationError, "max_worker"),
        (lambda c: c["available_node_types"]["worker.gpu"].update(min_worker=1), jsonschema.ValidationError,
         "min_worker"),
        (lambda c: c.update(max_workers="eight"), jsonschema.ValidationError, "'eight' is not of type 'integer'"),
        (lambda c: c.update(head_node_type="head.gpu"), ValueError, "`head_node_type` must be one of"),
        (lambda c: c["available_node_types"]["worker.gpu"].update(min_workers=17), ValueError,
         "max_workers` is smaller than the sum of `min_workers`"),
    ],
    ids=["misspelled top-level key", "misspelled node type key", "wrong type", "unknown head node type",
         "min workers above the global max"],
)
def test_validation_catches_mistakes(cluster, edit, error, message):
    with pytest.raises(error, match=message):
        _validate(_broken(cluster, edit))
