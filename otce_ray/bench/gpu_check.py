"""``make gpu-check``: every figure the project needs from a card, from one command, in under 8 minutes.

    python -m otce_ray.bench.gpu_check [--dry] [--out DIR] [--wheelhouse DIR] [--budget SECONDS]

A card is lent for minutes at a time, so this is written and proven beforehand: ``--dry`` runs the same script end to
end on CPU at tiny sizes (CI does), through the same code paths except the calls that need CUDA. It imports nothing
that needs Ray or boto3 (a card host has neither): OT runs through ``otce_score``, extraction through ``run_shard``.

The steps, in order (``plan``). Each is time-boxed (``otce_ray.bench.timebox``): a step that fails or runs past its
limit becomes a row that says so and the next one runs; a step the overall budget no longer covers is reported as
skipped. The big sizes come last, so a slow card loses them first.

1. ``install``: the wheelhouse (``make wheelhouse PY=3.12``: POT, flash-sinkhorn, cityscapesscripts, pytest, this
   project) into ``build/gpu-check/site`` with the host's pip, offline (``--no-index --no-deps``). The host's Python
   is left as it is; the later steps find these packages first. Skipped by ``--dry`` (it says so).
2. ``cuda_tests``: the ``cuda``-marked tests of the Ray-free test files (``CUDA_TESTS``).
3. ``ot_*_10k``: one OTCE repeat at N = 10,000, d = 64, the engine's defaults, with the torch backend, with
   flash-sinkhorn (its first call at a shape autotunes: timed apart, then a warm call) and POT's plain Sinkhorn on
   torch (the materialised peer); ``ce_diff_vs_torch`` is each conditional entropy minus the torch backend's.
4. ``extract_*``: ``run_shard`` against a bare torch loop, DeepLabV3-ResNet50 (random weights) at 512 x 1024:
   images/s, their ratio, peak memory, the card's utilisation while it ran.
5. ``repeats_k10``: K = 10 repeats at N = 10,000 (the engine does not batch them: 10 calls).
6. ``ot_*_100k``, ``ot_*_1m``: N = 100,000 and 1,000,000 with the streamed backends, cold: time and peak memory.

Output: ``gpu_check.md`` (one Markdown table) and ``gpu_check.jsonl`` (one JSON line) in ``--out``, else ``$OUT``,
else ``build/``; every row has every field of ``FIELDS`` (None where it does not apply; on the extraction rows ``n``
is the number of images and ``d`` the feature channels).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from otce_ray import __version__
from otce_ray.bench import gpu_steps, timebox

FIELDS = ("step", "status", "seconds", "n", "d", "device", "backend", "ce", "ce_diff_vs_torch", "marginal_error",
          "iterations", "peak_mib", "images_per_s", "ratio", "gpu_util", "note")
DEFAULT_BUDGET = 450.0  # seconds for every step together: 7.5 minutes, with the start and the report inside 8
MIN_STEP_SECONDS = 10.0  # a step with less time left than this is skipped, not started
WHEELHOUSE = "build/wheelhouse"
SITE = "build/gpu-check/site"
CUDA_TESTS = ("tests/test_scoring_flash.py", "tests/test_extraction_device.py")  # Ray-free, with `cuda` tests
# Imported once by the forkserver that starts every measuring process (see timebox): not POT or flash-sinkhorn,
# which the install step may only just have put in place.
PRELOAD = ("otce_ray.bench.gpu_steps",)


@dataclass(frozen=True)
class Sizes:
    n: int  # the paper's N: the one-repeat comparisons and the K repeats
    streamed: tuple[int, ...]  # larger N, streamed backends only
    dim: int
    repeats: int
    image: tuple[int, int]  # (height, width)
    images: int
    batch: int


CARD = Sizes(n=10_000, streamed=(100_000, 1_000_000), dim=64, repeats=10, image=(512, 1024), images=256, batch=8)
DRY = Sizes(n=400, streamed=(600, 800), dim=64, repeats=10, image=(64, 128), images=8, batch=4)


@dataclass(frozen=True)
class Step:
    rows: tuple[str, ...]  # the report rows it gives, in order
    limit: float  # seconds
    run: Callable[[float], list[dict[str, Any]]]  # given its limit, its rows' measured fields


def _measured(function: Callable[..., list[dict[str, Any]]], *args: Any) -> Callable[[float], list[dict[str, Any]]]:
    return lambda limit: timebox.call(function, args, limit, PRELOAD)


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k" if n >= 1000 else str(n)


def plan(sizes: Sizes, device: str, dry: bool, wheelhouse: Path, site: Path) -> list[Step]:
    """The steps of the module docstring, at ``sizes`` on ``device``."""
    n, d = sizes.n, sizes.dim
    steps = [
        Step(("install",), 120, lambda limit: install(wheelhouse, site, dry, limit)),
        Step(("cuda_tests",), 150, lambda limit: cuda_tests(site, limit)),
        Step((f"ot_torch_{_label(n)}",), 60, _measured(gpu_steps.ot_solve, n, d, "torch_tiles", device, True)),
        Step((f"ot_flash_{_label(n)}",), 120, _measured(gpu_steps.ot_solve, n, d, "flash_sinkhorn", device, True)),
        Step((f"ot_pot_{_label(n)}",), 60, _measured(gpu_steps.pot_peer, n, d, device)),
        Step(("extract_run_shard", "extract_bare_loop"), 120,
             _measured(gpu_steps.extraction, sizes.images, sizes.image, sizes.batch, device)),
        Step((f"repeats_k{sizes.repeats}",), 90, _measured(gpu_steps.repeats, n, d, sizes.repeats, device)),
    ]
    for big in sizes.streamed:
        for name, backend in (("torch", "torch_tiles"), ("flash", "flash_sinkhorn")):
            steps.append(Step((f"ot_{name}_{_label(big)}",), 90,
                              _measured(gpu_steps.ot_solve, big, d, backend, device, False)))
    return steps


def install(wheelhouse: Path, site: Path, dry: bool, limit: float) -> list[dict[str, Any]]:
    """pip-install every wheel of the wheelhouse into ``site``, offline and without resolving dependencies (the
    wheelhouse is the list); then put ``site`` on this process's path, which the later steps inherit."""
    wheels = sorted(str(path) for path in wheelhouse.glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--disable-pip-version-check",
           "--target", str(site)]
    if dry:
        return [{"status": "skipped: dry run", "note": f"would run: {' '.join(pip)} {wheelhouse}/*.whl"}]
    if not wheels:
        raise timebox.StepFailed(f"no wheels in {wheelhouse} (run `make wheelhouse PY=3.12` and carry it here)")
    started = time.perf_counter()
    shutil.rmtree(site, ignore_errors=True)  # pip --target keeps what a previous run left there
    timebox.command([*pip, *wheels], limit)
    sys.path.insert(1, str(site))  # after the checkout: the project's own code is the one under test
    return [{"seconds": time.perf_counter() - started, "note": f"{len(wheels)} wheels into {site}"}]


def cuda_tests(site: Path, limit: float) -> list[dict[str, Any]]:
    """``pytest -m cuda`` over CUDA_TESTS, with the installed packages on the path; the note is pytest's summary."""
    paths = [str(Path.cwd()), str(site), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    argv = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *CUDA_TESTS]
    started = time.perf_counter()
    output = timebox.command(argv, limit, env)
    return [{"seconds": time.perf_counter() - started, "note": output.splitlines()[-1].strip("= ")}]


def run_steps(steps: list[Step], budget: float) -> list[dict[str, Any]]:
    """Every step in order within ``budget`` seconds; one complete row (every FIELD) per name of every step."""
    deadline = time.monotonic() + budget
    rows: list[dict[str, Any]] = []
    for step in steps:
        left = deadline - time.monotonic()
        started = time.perf_counter()
        if left < MIN_STEP_SECONDS:
            results = [{"status": f"skipped: out of time (budget {budget:.0f} s)"}] * len(step.rows)
        else:
            results = _outcome(step, min(step.limit, left))
        for name, result in zip(step.rows, results):
            row = {field: None for field in FIELDS} | {"status": "ok"} | result | {"step": name}
            if row["seconds"] is None and row["status"].startswith("error"):
                row["seconds"] = time.perf_counter() - started  # how long it took to fail
            rows.append(row)
            print(f"[gpu-check] {name}: {row['status']} ({row['seconds'] or 0:.1f} s)", flush=True)
    return _with_ce_differences(rows)


def _outcome(step: Step, limit: float) -> list[dict[str, Any]]:
    try:
        results = step.run(limit)
    except timebox.StepTimeout as error:
        return [{"status": f"timeout: {error}", "seconds": limit}] * len(step.rows)
    except Exception as error:  # noqa: BLE001 - a failing step is a row; the next step runs
        message = str(error) if isinstance(error, timebox.StepFailed) else timebox.describe(error)
        return [{"status": f"error: {message}"}] * len(step.rows)
    if len(results) != len(step.rows):
        raise RuntimeError(f"step {step.rows} gave {len(results)} rows")
    return results


def _with_ce_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ce_diff_vs_torch: a row's conditional entropy minus the torch backend's at the same N (one repeat)."""
    torch_ce = {row["n"]: row["ce"] for row in rows if row["step"].startswith("ot_torch_") and row["ce"] is not None}
    for row in rows:
        if row["step"].startswith("ot_") and row["ce"] is not None and not row["step"].startswith("ot_torch_"):
            reference = torch_ce.get(row["n"])
            row["ce_diff_vs_torch"] = None if reference is None else row["ce"] - reference
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if math.isfinite(value) and abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "/")


def markdown(report: dict[str, Any]) -> str:
    """The report as one Markdown table under a line saying where and how it ran."""
    mode = "dry run: CPU, tiny sizes" if report["dry"] else "on the card"
    lines = [f"# GPU check ({mode})", "",
             f"{report['started']}, python {report['python']}, torch {report['torch']}, otce-ray {report['otce_ray']}; "
             f"{report['seconds']:.0f} s of a {report['budget_s']:.0f} s budget.", "",
             "| " + " | ".join(FIELDS) + " |", "|" + " --- |" * len(FIELDS)]
    lines += ["| " + " | ".join(_cell(row[field]) for field in FIELDS) + " |" for row in report["steps"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otce_ray.bench.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes, no install: proves the script runs")
    parser.add_argument("--out", default=os.environ.get("OUT") or "build", help="report folder (default $OUT or build)")
    parser.add_argument("--wheelhouse", default=WHEELHOUSE, help=f"wheels to install (default {WHEELHOUSE})")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET, help="seconds for all steps together")
    args = parser.parse_args(argv)
    # Inherited by every step: POT would import JAX where it is installed, and JAX takes 75% of the card at start.
    os.environ.setdefault("POT_BACKEND_DISABLE_JAX", "1")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.dry:  # tiny solves on a busy CI machine: torch threads waiting on each other make them 20-40x slower
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.time()
    sizes, device = (DRY, "cpu") if args.dry else (CARD, "cuda")
    rows = run_steps(plan(sizes, device, args.dry, Path(args.wheelhouse), Path(SITE)), args.budget)
    report = {"check": "gpu", "dry": args.dry, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
              "python": platform.python_version(), "torch": torch.__version__, "otce_ray": __version__,
              "budget_s": args.budget, "seconds": time.time() - started, "fields": list(FIELDS), "steps": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    (out / "gpu_check.md").write_text(table)
    (out / "gpu_check.jsonl").write_text(json.dumps(report, default=str) + "\n")
    print(table)
    print(f"[gpu-check] wrote {out / 'gpu_check.md'} and {out / 'gpu_check.jsonl'}")
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
