"""``make gpu-check`` proven on CPU: the dry run end to end on a Python where Ray and boto3 do not import (as on the
card), its report's fields, the time boxes, and the DeepLabV3-ResNet50 it extracts with."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from otce_ray.bench import gpu_check, timebox
from otce_ray.bench.deeplab import deeplabv3_resnet50

ROOT = Path(__file__).resolve().parent.parent
# Installed as sitecustomize on PYTHONPATH, so every Python the check starts (the forkserver, its measuring
# processes, pytest) refuses the two packages the card does not have.
BLOCKER = '''
import importlib.abc, sys

class NotOnTheCard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "boto3", "botocore"):
            raise ModuleNotFoundError(f"{name} is not installed on the GPU host", name=name)
        return None

sys.meta_path.insert(0, NotOnTheCard())
'''


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """The dry run's output folder and its JSON report (one run for the module's tests)."""
    base = tmp_path_factory.mktemp("gpu-check")
    (base / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(base), str(ROOT)]), "OUT": str(base / "out")}
    refused = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "not installed on the GPU host" in refused.stderr  # the blocker works
    done = subprocess.run([sys.executable, "-m", "otce_ray.bench.gpu_check", "--dry"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # ~15 s on 2 idle cores
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = base / "out"
    lines = (out / "gpu_check.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(done.stdout.splitlines()[-1]) == json.loads(lines[0])
    return out, json.loads(lines[0])


def test_dry_run_reports_every_step_with_every_field(dry_run):
    out, report = dry_run
    steps = {row["step"]: row for row in report["steps"]}
    assert list(steps) == ["install", "cuda_tests", "ot_torch_400", "ot_flash_400", "ot_pot_400", "extract_run_shard",
                           "extract_bare_loop", "repeats_k10", "ot_torch_600", "ot_flash_600", "ot_torch_800",
                           "ot_flash_800"]
    assert report["dry"] and report["fields"] == list(gpu_check.FIELDS)
    assert all(list(row) == list(gpu_check.FIELDS) for row in report["steps"])
    table = (out / "gpu_check.md").read_text().splitlines()
    header = table.index("| " + " | ".join(gpu_check.FIELDS) + " |")
    body = table[header + 2:header + 2 + len(steps)]
    assert [line.split(" | ")[0].lstrip("| ") for line in body] == list(steps)
    assert all(line.count(" | ") == len(gpu_check.FIELDS) - 1 for line in body)


def test_dry_run_goes_through_each_path_and_says_what_it_could_not_run(dry_run):
    _, report = dry_run
    steps = {row["step"]: row for row in report["steps"]}
    assert steps["install"]["status"] == "skipped: dry run" and "--no-index --no-deps" in steps["install"]["note"]
    assert steps["cuda_tests"]["status"] == "ok" and "skipped" in steps["cuda_tests"]["note"]
    for n in (400, 600, 800):
        torch_row, flash = steps[f"ot_torch_{n}"], steps[f"ot_flash_{n}"]
        assert torch_row["status"] == "ok" and torch_row["backend"] == "torch_tiles"
        assert torch_row["marginal_error"] <= 1e-3 and "converged" in torch_row["note"] and torch_row["peak_mib"] > 0
        assert flash["status"] == "unavailable: flash-sinkhorn needs a CUDA device (it refuses CPU tensors)"
    pot = steps["ot_pot_400"]
    assert pot["status"] == "ok" and abs(pot["ce_diff_vs_torch"]) < 5e-3 and pot["iterations"] > 0
    shard, bare = steps["extract_run_shard"], steps["extract_bare_loop"]
    for row in (shard, bare):
        assert row["status"] == "ok" and row["images_per_s"] > 0 and row["gpu_util"] == "n/a (no nvidia-smi)"
    assert shard["ratio"] == pytest.approx(shard["images_per_s"] / bare["images_per_s"], rel=1e-6)
    assert shard["d"] == 256 and "float32" in shard["note"] and "forward" in shard["note"]
    repeats = steps["repeats_k10"]
    assert repeats["status"] == "ok" and repeats["note"].startswith("not batched: 10 calls")


def test_a_step_that_fails_hangs_or_dies_is_a_row_and_the_next_step_runs():
    started = time.monotonic()
    with pytest.raises(timebox.StepTimeout):
        timebox.call(time.sleep, (60,), limit=2)
    assert time.monotonic() - started < 30
    with pytest.raises(timebox.StepFailed, match="ValueError: math domain error"):
        timebox.call(math.sqrt, (-1.0,), limit=30)
    with pytest.raises(timebox.StepFailed, match=r"its process died \(exit code 3\)"):
        timebox.call(os._exit, (3,), limit=30)

    def hangs(limit):
        raise timebox.StepTimeout(f"over its {limit:.0f} s limit")

    def fails(limit):
        raise KeyError("boom")

    def two_rows(limit):
        time.sleep(0.5)  # leaves less than MIN_STEP_SECONDS of the budget: the next step is not started
        return [{"seconds": 0.5}, {"status": "unavailable: why"}]

    steps = [gpu_check.Step(("slow",), 5, hangs), gpu_check.Step(("broken",), 5, fails),
             gpu_check.Step(("a", "b"), 5, two_rows), gpu_check.Step(("late",), 5, two_rows)]
    rows = gpu_check.run_steps(steps, budget=gpu_check.MIN_STEP_SECONDS + 0.2)
    assert [(row["step"], row["status"]) for row in rows] == [
        ("slow", "timeout: over its 5 s limit"), ("broken", rows[1]["status"]), ("a", "ok"), ("b", "unavailable: why"),
        ("late", "skipped: out of time (budget 10 s)")]
    assert rows[1]["status"].startswith("error: KeyError: 'boom' (at test_gpu_check.py:")
    assert [row["seconds"] for row in rows] == [5, rows[1]["seconds"], 0.5, None, None] and rows[1]["seconds"] < 1


def test_the_extraction_model_is_torchvisions_deeplabv3_resnet50():
    segmentation = pytest.importorskip("torchvision.models.segmentation")
    reference = segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=19,
                                                aux_loss=False).eval()
    ours = deeplabv3_resnet50(19).eval()
    theirs = reference.state_dict()
    assert {key: value.shape for key, value in ours.state_dict().items()} == \
        {key: value.shape for key, value in theirs.items()}
    ours.load_state_dict(theirs)
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x)["out"], reference(x)["out"])
