"""``otce-ray bench ot`` end to end on tiny sizes: the command's output and what its JSON claims, not timings."""

from __future__ import annotations

import json
import math

import pytest
from scoring_cases import one_torch_thread  # noqa: F401 (fixture: the stress corpus solves in this process)

from otce_ray.bench import ot as bench
from otce_ray.bench.ot import PIXELS_EPSILON
from otce_ray.cli import main
from otce_ray.scoring.sinkhorn import DEFAULT_TOLERANCE


def _run(capsys, arguments):
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


def test_bench_ot_prints_a_table_and_a_json_summary_last(capsys, monkeypatch):
    # The solves run in spawned children: one OpenMP thread each keeps them quick on a shared machine.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["bench", "ot", "--sizes", "300", "--dim", "8"]) == 0
    lines, summary = _run(capsys, None)
    assert (summary["corpus"], summary["n"], summary["dim"]) == ("pixels", 300, 8)
    assert (summary["epsilon"], summary["tolerance"]) == (PIXELS_EPSILON, DEFAULT_TOLERANCE)
    assert summary["device"] == "otce-ray (cpu)" and summary["peer"].startswith("POT sinkhorn float")
    assert summary["converged"] is True and summary["remedy"] is None
    assert summary["ours_iterations"] > 0 and summary["pot_iterations"] > 0
    assert summary["ours_seconds"] > 0 and summary["pot_seconds"] > 0
    assert summary["speedup_vs_pot"] == pytest.approx(summary["pot_seconds"] / summary["ours_seconds"], rel=0.1)
    assert summary["ours_peak_mib"] >= 0 and summary["pot_peak_mib"] > 0 and summary["peak_memory_ratio_vs_pot"] >= 0
    # Both solved the same problem to the same tolerance: the conditional entropies agree, as the table shows.
    rows = {" ".join(line.split()[1:-5]): line.split() for line in lines if line.split()[:1] == ["300"]}
    ours, peer = rows["otce-ray (cpu)"], rows[summary["peer"]]
    assert float(ours[-3]) <= DEFAULT_TOLERANCE and float(peer[-3]) <= DEFAULT_TOLERANCE  # marginal errors
    assert summary["ce_abs_diff"] == pytest.approx(abs(float(ours[-1]) - float(peer[-1])), abs=1e-5)
    assert summary["ce_abs_diff"] <= 1e-3
    assert summary["ours_ce_error"] == pytest.approx(abs(float(ours[-1]) - summary["reference_ce"]), abs=1e-5)
    assert summary["ours_ce_error"] <= 1e-3 and summary["pot_ce_error"] <= 1e-3
    [size] = summary["per_size"]
    assert size == {key: summary[key] for key in size}


def test_the_stress_corpus_reports_convergence_passes_and_agreement(capsys, monkeypatch):
    """The bench's mechanics on a small corpus (tests/test_scoring_stress.py holds every case to POT): the cases
    up to the largest size run, three clouds each, and the summary is what the rows say."""
    from otce_ray.bench import stress

    monkeypatch.setattr(stress, "BENCH_CORPUS", (("relu_flat", 300), ("duplicates", 200), ("relu_flat", 5000)))
    assert bench.main(sizes=[300], corpus="stress") == 0
    lines, summary = _run(capsys, None)
    assert summary["corpus"] == "stress" and summary["tolerance"] == DEFAULT_TOLERANCE
    cases = summary["cases"]
    assert [(case["case"], case["n"]) for case in cases] == [("relu_flat", 300), ("duplicates", 200)]
    assert all(case["converged"] == bench.STRESS_SEEDS == len(case["passes"]) for case in cases)
    assert summary["solves"] == 2 * bench.STRESS_SEEDS and summary["fraction_converged"] == 1.0
    assert summary["worst_marginal_error"] == max(case["max_marginal_error"] for case in cases) <= DEFAULT_TOLERANCE
    assert summary["passes_max"] == max(max(case["passes"]) for case in cases) and summary["passes_median"] > 0
    assert all(case["reference_marginal_error"] <= DEFAULT_TOLERANCE / 10 for case in cases)
    assert summary["max_ce_abs_diff_vs_pot"] == max(case["ce_abs_diff"] for case in cases) <= 1e-3
    assert [line.split()[0] for line in lines[2:4]] == ["relu_flat", "duplicates"]
    assert lines[-2].startswith("# worst marginal error")


def test_an_unknown_corpus_is_refused():
    with pytest.raises(ValueError, match="corpus: unknown corpus 'pixel'"):
        bench.main(sizes=[100], corpus="pixel")


def test_without_room_for_pot_only_ours_runs_and_the_json_says_so(capsys, monkeypatch):
    """Where POT's n x n arrays cannot fit (N = 1,000,000 on one card), ours still runs and is reported alone."""
    # In-process stand-in for the child processes, with no free memory reported for POT.
    monkeypatch.setattr(bench, "_in_child", lambda function, *args: 0 if function is bench._free_bytes
                        else function(*args))
    monkeypatch.setattr(bench, "peak_meter", lambda device: lambda: 0.0)  # /proc/self/clear_refs is per process
    assert bench._pot_peers(200, 8, 0, 0.05, 1e-3, "cpu", free=0) == []
    assert bench.main(sizes=[200], dim=8) == 0
    lines, summary = _run(capsys, None)
    assert any("no POT peer" in line and "exceed the 0.0 GiB free" in line for line in lines)
    assert "speedup_vs_pot" not in summary and summary["per_size"] == []
    [only] = summary["ours_only"]
    assert only["n"] == 200 and only["converged"] and only["ours_seconds"] > 0 and math.isfinite(only["ours_seconds"])
