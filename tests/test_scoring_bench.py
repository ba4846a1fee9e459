"""``otce-ray bench ot`` end to end on a tiny size: a correctness check of the command, not a timing test."""

from __future__ import annotations

import json
import math

from otce_ray.cli import main


def test_bench_ot_prints_a_table_and_a_json_summary_last(capsys, monkeypatch):
    # The solves run in spawned children: one OpenMP thread each keeps them quick on a shared machine.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["bench", "ot", "--sizes", "300", "--dim", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["n"] == 300 and summary["dim"] == 8
    assert summary["speedup_vs_pot"] > 0 and math.isfinite(summary["speedup_vs_pot"])
    assert summary["peak_memory_ratio_vs_pot"] >= 0
    assert summary["ce_abs_diff"] <= 1e-3  # both solved the same problem to the same tolerance
    assert any(line.split()[:2] == ["300", "otce-ray"] for line in lines)
    assert any(line.split()[:3] == ["300", "POT", "sinkhorn"] for line in lines)


def test_without_room_for_pot_only_ours_runs_and_the_json_says_so(capsys, monkeypatch):
    """Where POT's n x n arrays cannot fit (N = 1,000,000 on one card), ours still runs and is reported alone."""
    from otce_ray.bench import ot as bench

    # In-process stand-in for the child processes, with no free memory reported for POT.
    monkeypatch.setattr(bench, "_in_child", lambda function, *args: 0 if function is bench._free_bytes
                        else function(*args))
    monkeypatch.setattr(bench, "_peak_meter", lambda device: lambda: 0.0)  # /proc/self/clear_refs is per process
    assert bench._pot_peers(200, 8, 0, 0.05, 1e-3, "cpu", free=0) == []
    assert bench.main(sizes=[200], dim=8) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any("no POT peer" in line and "exceed the 0.0 GiB free" in line for line in lines)
    summary = json.loads(lines[-1])
    assert "speedup_vs_pot" not in summary
    [only] = summary["ours_only"]
    assert only["n"] == 200 and only["converged"] and only["ours_seconds"] > 0
