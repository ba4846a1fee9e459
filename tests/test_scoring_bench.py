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
