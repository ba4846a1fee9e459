"""The decision columns and summary on a small run through ``otce_ray.rank``; params counted at extraction and read
back from a cached store; the prior a label that rescores nothing; the OTCE presets in the config and the CLI."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import yaml

import otce_ray
from otce_ray.cli import main
from otce_ray.config import ConfigError, load_config, parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.models import ModelSpec, build_module
from otce_ray.scoring.settings import PRESETS, OTCESettings


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cities = write_benchmark(str(root), cities=3, images_per_city=3, size=(48, 96), seed=0)
    return str(root), cities


def _raw(tmp_path, benchmark, output: str = "out", priors: tuple = (0.9, 0.2, None)) -> dict:
    root, cities = benchmark
    dataset = lambda i: {"name": cities[i], "format": "cityscapes", "root": root, "split": "train",  # noqa: E731
                         "cities": [cities[i]]}
    models = [{"name": name, "format": "builtin", "architecture": arch, "init_seed": 1, "source": dataset(i)}
              for name, arch, i in (("unet_a", "unet", 0), ("fcn_b", "fcn8s", 1), ("psp_a", "pspnet", 0))]
    for model, prior in zip(models, priors):
        if prior is not None:
            model["prior"] = prior
    return {"store": str(tmp_path / "store"), "output": str(tmp_path / output), "target": dataset(2),
            "models": models, "otce": {"n_pixels": 200, "repeats": 3},
            "extraction": {"pixels_per_image": 80, "batch_size": 2},
            "baselines": {"metrics": ["hscore_shrinkage", "logme", "nleep"], "n_pixels": 150},
            "decisions": {"top_k": 2, "resamples": 1000}}


def test_a_run_has_every_decision_column_and_its_summary(ray_local, benchmark, tmp_path):
    raw = _raw(tmp_path, benchmark)
    board = otce_ray.rank(raw)  # a mapping, as a notebook holds it
    assert isinstance(board, pd.DataFrame) and (board["status"] == "ok").all()
    rows = board.set_index("model")
    for name in ("unet_a", "fcn_b", "psp_a"):
        spec = next(model for model in raw["models"] if model["name"] == name)
        assert rows.loc[name, "params"] == sum(p.numel() for p in build_module(spec).parameters())
    assert rows.loc["unet_a", "prior"] == 0.9 and pd.isna(rows.loc["psp_a", "prior"])
    assert board["p_best"].sum() == pytest.approx(1.0) and board["p_top_k"].sum() == pytest.approx(2.0)
    assert board["consensus"].between(0, 1).all() and board["p_best"].iloc[0] == board["p_best"].max()

    out = raw["output"]
    decisions = json.loads(open(os.path.join(out, "run.json")).read())["decisions"]
    assert decisions["top_k"] == 2 and decisions["consensus_of"] == ["otce", "hscore_shrinkage", "logme", "nleep"]
    assert {row["metric"] for row in decisions["agreement"]} == {"otce", "hscore_shrinkage", "logme", "nleep",
                                                                   "consensus"}
    lines = {(line["metric"], line["reference"]): line for line in decisions["reference_lines"]}
    assert lines[("otce", "params")]["n_models"] == 3 and lines[("otce", "prior")]["n_models"] == 2
    assert "fewer than 3" in lines[("otce", "prior")]["note"]
    flagged = [row["metric"] for row in decisions["agreement"] if not row["otce_top1_in_top_k"]]
    assert len(decisions["flags"]) == len(flagged)
    parquet = pd.read_parquet(os.path.join(out, "leaderboard.parquet"))
    assert {"p_best", "p_top_k", "consensus", "params", "prior"} <= set(parquet.columns)
    assert "## Decisions" in open(os.path.join(out, "leaderboard.md")).read()
    assert '<section id="decisions">' in open(os.path.join(out, "leaderboard.html")).read()

    # A cached store (another output, the same store) never loads the network: params come from its manifest.
    # A changed prior is a label: it changes the column, never the scores.
    again = otce_ray.rank(_raw(tmp_path, benchmark, output="out2", priors=(0.1, 0.2, 0.3)))
    assert list(again["params"]) == list(board["params"]) and list(again["otce"]) == list(board["otce"])
    assert again.set_index("model").loc["psp_a", "prior"] == 0.3
    stamps = {name: os.stat(os.path.join(out, "results", name)).st_mtime_ns for name in os.listdir(
        os.path.join(out, "results"))}
    otce_ray.rank(_raw(tmp_path, benchmark, priors=(0.5, 0.5, 0.5)))
    assert stamps == {name: os.stat(os.path.join(out, "results", name)).st_mtime_ns for name in stamps}


def test_the_prior_is_declared_and_out_of_the_fingerprint():
    spec = {"name": "m", "format": "builtin", "architecture": "unet"}
    assert ModelSpec.from_dict({**spec, "prior": 0.7}).fingerprint() == ModelSpec.from_dict(spec).fingerprint()
    assert ModelSpec.from_dict({**spec, "prior": 0.7}).prior == 0.7
    with pytest.raises(ValueError, match="prior"):
        ModelSpec.from_dict({**spec, "prior": "high"})


def _config_file(tmp_path, otce: dict) -> str:
    raw = {"store": "store", "output": "out", "target": {"name": "t", "format": "cityscapes", "root": ".",
                                                         "split": "train"},
           "models": [{"name": "m", "format": "builtin", "architecture": "unet",
                       "source": {"name": "s", "format": "cityscapes", "root": ".", "split": "train"}}],
           "otce": otce}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_the_paper_presets_in_the_config():
    base = {"store": "s", "output": "o", "target": {"name": "t", "format": "cityscapes", "root": ".", "split": "x"},
            "models": [{"name": "m", "format": "builtin", "architecture": "unet",
                        "source": {"name": "s", "format": "cityscapes", "root": ".", "split": "x"}}]}
    paper = parse_config({**base, "otce": {"preset": "paper", "seed": 4}}, base_dir="/tmp").otce
    assert paper == OTCESettings(**PRESETS["paper"], seed=4) == OTCESettings.from_preset("paper", seed=4)
    assert (paper.solver, paper.standardise, paper.n_pixels, paper.repeats, paper.paper) == ("emd", False, 10_000,
                                                                                             10, True)
    sinkhorn = parse_config({**base, "otce": {"preset": "paper-sinkhorn"}}, base_dir="/tmp").otce
    assert (sinkhorn.epsilon, sinkhorn.cost_scale, sinkhorn.standardise, sinkhorn.paper) == (0.1, "none", False, True)
    assert sinkhorn.label == "sinkhorn eps 0.1 raw, N 10000, K 10"
    with pytest.raises(ConfigError) as caught:
        parse_config({**base, "otce": {"preset": "paper", "n_pixels": 2000, "epsilon": 0.05}}, base_dir="/tmp")
    assert caught.value.problems == (
        "otce.n_pixels: set here and by preset 'paper' (which sets it to 10000): keep one",
        "otce.solver: epsilon only apply to solver 'sinkhorn', not 'emd' (solver 'emd' comes from preset 'paper')")
    with pytest.raises(ConfigError, match=r"otce.preset: expected one of paper, paper-sinkhorn, got 'papr' \(did you"):
        parse_config({**base, "otce": {"preset": "papr"}}, base_dir="/tmp")
    with pytest.raises(ValueError, match="epsilon only apply to solver 'sinkhorn'"):
        OTCESettings.from_preset("paper", epsilon=0.1)


def test_the_command_line_preset_replaces_the_files_estimator(tmp_path, monkeypatch, capsys):
    path = _config_file(tmp_path, {"epsilon": 0.05, "n_pixels": 500, "seed": 3, "tolerance": 1e-4})
    config = load_config(path, preset="paper")  # what `otce-ray score --preset paper` reads
    assert config.otce == OTCESettings.from_preset("paper", seed=3)  # seed kept; eps, tolerance: sinkhorn only
    assert load_config(path, preset="paper-sinkhorn").otce.tolerance == 1e-4
    seen = []
    monkeypatch.setattr("otce_ray.pipeline.run", lambda config, **_: seen.append(config) or pd.DataFrame(
        {"status": []}))
    monkeypatch.setattr("otce_ray.leaderboard.render.leaderboard_markdown", lambda *a, **k: "")
    monkeypatch.setattr("otce_ray.leaderboard.decisions.summarise", lambda *a, **k: None)
    assert main(["score", "--config", path, "--preset", "paper", "--quiet"]) == 1  # nothing scored by the stub
    assert seen[0].otce.solver == "emd" and seen[0].otce.seed == 3
    assert main(["score", "--config", path, "--preset", "papr"]) == 2
    assert "otce.preset: expected one of paper, paper-sinkhorn" in capsys.readouterr().err
