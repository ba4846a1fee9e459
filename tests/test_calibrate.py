"""``otce-ray calibrate`` end to end: the shipped demo zoo fine-tuned under the protocol of its own ground truth
(gamma's 20 scored images to train, its 20 others to test), its report checked against the correlations that ground
truth gives for the same models; resuming; bad input (no subset, no image left, a model without a head)."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from otce_ray.cli import main
from otce_ray.config import parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.evaluation.calibration import calibrate, calibration_table, limits, pick_models
from otce_ray.evaluation.measures import kendall, pearson
from otce_ray.finetune import FineTuneSettings
from otce_ray.leaderboard import ModelResult, build_leaderboard, record_result
from otce_ray.models import build_architecture
from otce_ray.pipeline.run import publish
from otce_ray.zoo import GROUND_TRUTH, read_zoo, zoo_models
from otce_ray.zoo.run_config import scored_target
from otce_ray.zoo.truth import SETTINGS

ZOO = read_zoo()


def _zoo_results() -> list[ModelResult]:
    """The zoo as a leaderboard would hold it, from numbers known before fine-tuning: OTCE stands in as the
    zero-shot target pixel accuracy, LogME as the zero-shot target mIoU, the prior is the source mIoU, and params
    are the real networks'."""
    results = []
    for entry in ZOO["models"]:
        accuracy = ZOO["accuracy"][entry["name"]]
        net = build_architecture(entry["architecture"], entry.get("num_classes", 19), **entry.get("kwargs", {}))
        base = accuracy["target_pixel_accuracy"] - 1
        results.append(ModelResult(entry["name"], entry["source"]["name"], architecture=entry["architecture"],
                                   scores=(base - 0.01, base, base + 0.01), metrics={"logme": accuracy["target_miou"]},
                                   params=sum(p.numel() for p in net.parameters())))
    return results


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    """A run config of the shipped zoo on gamma (only gamma written: the zoo's models are not re-scored) and its
    leaderboard, as ``otce-ray score`` leaves them."""
    folder = tmp_path_factory.mktemp("zoo-calibration")
    write_benchmark(str(folder / "benchmark"), ["gamma"], ZOO["benchmark"]["images_per_city"],
                    tuple(ZOO["benchmark"]["size"]), ZOO["benchmark"]["seed"])
    models = [{**entry, "prior": ZOO["accuracy"][entry["name"]]["source_miou"]}
              for entry in zoo_models(str(folder / "benchmark"))]
    raw = {"store": str(folder / "store"), "output": str(folder / "out"),
           "target": scored_target(str(folder / "benchmark")), "models": models}
    config = parse_config(raw, base_dir=str(folder))
    results = _zoo_results()
    for result in results:
        record_result(config.output, result)
    board, _ = publish(config, results)
    return config, board


def test_picks_the_top_then_one_model_per_stratum_seeded():
    board = build_leaderboard([ModelResult(f"m{i:02d}", "s", scores=(-i - 0.1, -i + 0.1)) for i in range(12)]
                              + [ModelResult("broken", "s", status="failed", error="x")])
    picked = pick_models(board, 4, seed=0)
    ranks = dict(zip(board["model"], board["rank"]))
    assert picked[0] == "m00" and [ranks[m] for m in picked] == sorted(ranks[m] for m in picked)
    strata = [range(2, 6), range(6, 9), range(9, 13)]  # the 11 below the top in three consecutive strata
    assert all(ranks[model] in stratum for model, stratum in zip(picked[1:], strata))
    assert pick_models(board, 4, seed=0) == picked and "broken" not in pick_models(board, 20)
    assert len({tuple(pick_models(board, 4, seed=s)) for s in range(5)}) > 1
    assert "0.73" in limits(6) and "cannot tell any ordering from chance" in limits(3)


def test_calibrate_the_demo_zoo_against_its_own_ground_truth(ray_local, zoo_run):
    config, board = zoo_run
    table = calibrate(config, models=4, seed=0, settings=SETTINGS)
    models = table.attrs["models"]
    truth = pd.read_csv(GROUND_TRUTH).set_index("model")

    picked = list(models["model"])
    assert len(picked) == 4 and picked[0] == board["model"].iloc[0] and (models["status"] == "ok").all()
    assert models["rank"].is_monotonic_increasing and models["rank"].iloc[-1] >= 12  # the bottom stratum too
    # The same protocol as the shipped ground truth's seed 0 (images, schedule, seed): the same numbers.
    shipped = truth.loc[picked, "log_likelihood@0"].to_numpy()
    np.testing.assert_allclose(models["log_likelihood"], shipped, rtol=1e-4)
    assert kendall(models["log_likelihood"].to_numpy(), truth.loc[picked, "log_likelihood"].to_numpy()) >= 0.99

    # Each ordering's correlations are those the shipped ground truth gives for the same models.
    indexed = board.set_index("model").loc[picked]
    assert list(table["ordering"]) == ["otce", "logme", "consensus", "params", "prior"]
    for row in table.itertuples(index=False):
        values = indexed[row.ordering].to_numpy(dtype=float)
        assert row.pearson == pytest.approx(pearson(values, shipped), abs=1e-6)
        assert row.kendall == pytest.approx(kendall(values, shipped), abs=1e-6)
        assert row.pearson_low < row.pearson < row.pearson_high and 0 < row.kendall_p <= 1  # Fisher's z, n - 3 = 1
        assert np.isnan(row.kendall_low)  # Kendall's interval needs 5 models
        assert row.picks == picked[int(np.argmax(values))]
        assert row.top1 == (row.picks == picked[int(np.argmax(shipped))])
    assert table["agreed_best"].any()
    assert table.loc[table["agreed_best"], "kendall"].min() == table["kendall"].max()
    assert any(line.startswith("K = 4 fine-tuned models can only show") for line in table.attrs["summary"])

    output = config.output
    written = pd.read_csv(os.path.join(output, "calibration.csv"))
    assert list(written["ordering"]) == list(table["ordering"])
    assert written["kendall"].tolist() == pytest.approx(table["kendall"].tolist())
    assert len(pd.read_csv(os.path.join(output, "calibration_models.csv"))) == 4
    assert sorted(os.listdir(os.path.join(output, "calibration"))) == sorted(f"{m}.json" for m in picked)
    page = open(os.path.join(output, "calibration.html")).read()
    assert 'id="calibration-orderings"' in page and "Agreed best on your data" in page
    assert 'href="calibration.html"' in open(os.path.join(output, "leaderboard.html")).read()

    again = calibrate(config, models=4, seed=0, settings=SETTINGS)  # a rerun resumes: nothing fine-tuned again
    assert again.attrs["models"]["reused"].all() and not models["reused"].any()
    pd.testing.assert_frame_equal(again, table)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cities = write_benchmark(str(root), cities=2, images_per_city=6, size=(32, 64), seed=0)
    return str(root), cities


def _tiny_config(tmp_path, tiny, target_extra: dict) -> tuple[dict, object]:
    root, cities = tiny
    city = {"name": cities[0], "format": "cityscapes", "root": root, "split": "train", "cities": [cities[0]]}
    models = [{"name": f"unet_{i}", "format": "builtin", "architecture": "unet", "init_seed": i,
               "kwargs": {"width": 4, "feature_dim": 4}, "source": city} for i in range(2)]
    models.append({"name": "features_only", "format": "python", "entrypoint": "torch.nn:Identity", "source": city})
    raw = {"store": str(tmp_path / "store"), "output": str(tmp_path / "out"),
           "target": {**city, "name": cities[1], "cities": [cities[1]], **target_extra}, "models": models}
    config = parse_config(raw, base_dir=str(tmp_path))
    results = [ModelResult(spec["name"], cities[0], scores=(-i - 0.1, -i + 0.1)) for i, spec in enumerate(models)]
    publish(config, results)
    return raw, config


TINY = {"eval_images": 2, "steps": 2, "batch_size": 2}


def test_a_model_without_a_head_fails_alone_and_the_report_says_so(ray_local, tiny, tmp_path, capsys):
    raw, config = _tiny_config(tmp_path, tiny, {"max_images": 3, "seed": 0})
    table = calibrate(config, models=3, settings=FineTuneSettings(**TINY))
    models = table.attrs["models"].set_index("model")
    assert list(models["status"]) == ["ok", "ok", "failed"]
    assert "'features_only'" in models.loc["features_only", "error"] and "logits" in models.loc["features_only", "error"]
    assert (table["n_models"] == 2).all() and table["kendall"].isna().all()  # two models show nothing
    assert any("Not fine-tuned: features_only" in line for line in table.attrs["summary"])
    record = json.loads(open(os.path.join(config.output, "calibration", "unet_0.json")).read())
    assert record["record"]["status"] == "ok" and len(record["key"]) == 20

    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    argv = ["calibrate", "--config", str(tmp_path / "run.yaml"), "--models", "3", "--eval-images", "2", "--steps", "2"]
    assert main(argv) == 1  # fewer than 3 models fine-tuned: nothing shown
    assert "K = 2 fine-tuned models cannot tell" in capsys.readouterr().out


@pytest.mark.parametrize("target, message", [
    ({}, "sets no max_images, so its scores saw every target image"),
    ({"max_images": 6, "seed": 0}, "leaves none to evaluate on"),
])
def test_a_target_that_cannot_be_split_is_a_clear_error(tiny, tmp_path, capsys, target, message):
    raw, config = _tiny_config(tmp_path, tiny, target)
    with pytest.raises(ValueError, match=message):
        calibrate(config, models=3, settings=FineTuneSettings(**TINY))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    assert main(["calibrate", "--config", str(tmp_path / "run.yaml")]) == 2
    assert message in capsys.readouterr().err


def test_the_report_of_known_values():
    board = build_leaderboard([ModelResult(m, "s", scores=(v - 0.1, v + 0.1), params=p)
                               for m, v, p in (("a", -1, 10), ("b", -2, 30), ("c", -3, 20), ("d", -4, 40))])
    models = pd.DataFrame({"model": ["a", "b", "c", "d"], "log_likelihood": [-0.1, -0.2, -0.3, -0.4],
                           "status": "ok"})
    table = calibration_table(board, models).set_index("ordering")
    assert table.loc["otce", "kendall"] == 1.0 and table.loc["otce", "kendall_p"] == pytest.approx(1 / 24)
    assert table.loc["otce", "top1"] and table.loc["otce", "agreed_best"]
    assert table.loc["params", "picks"] == "d" and not table.loc["params", "top1"]
    assert table.loc["params", "kendall"] == pytest.approx(-2 / 3)
