"""Ground truth: metrics on hand-made predictions, seeded splits, determinism, classifier replacement, failures, and
the fine-tuning job end to end on a local Ray."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from otce_ray.cli import main
from otce_ray.config import parse_config
from otce_ray.datasets import open_dataset
from otce_ray.datasets.synth import write_benchmark
from otce_ray.finetune import (
    Evaluation, FineTuneSettings, finetune_model, finetune_or_fail, fit_classifier, ground_truth, split_target,
    training_target,
)
from otce_ray.models import ARCHITECTURES, ModelSpec

TINY = FineTuneSettings(train_images=4, eval_images=3, steps=3, batch_size=2)


def _split(target: dict, settings: FineTuneSettings = TINY):
    return split_target(target, settings.train_images, settings.eval_images)


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cities = write_benchmark(str(root), cities=2, images_per_city=9, size=(32, 64), seed=0)
    return str(root), cities


def _city(benchmark, index: int) -> dict:
    root, cities = benchmark
    return {"name": cities[index], "format": "cityscapes", "root": root, "split": "train", "cities": [cities[index]]}


@pytest.fixture(scope="module")
def split(benchmark):
    return _split(_city(benchmark, 1))


def _builtin(name: str, arch: str = "unet", **extra) -> dict:
    return {"name": name, "format": "builtin", "architecture": arch, "kwargs": {"width": 8, "feature_dim": 8},
            **extra}


def test_perfect_prediction_scores_one_and_the_log_likelihood_of_its_softmax():
    labels = torch.tensor([[[0, 1, 2], [3, 255, 1]]])
    logits = 10.0 * nn.functional.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    evaluation = Evaluation(num_classes=4)
    evaluation.add(logits, labels)
    scores = evaluation.scores()
    assert scores["miou"] == 1.0 and scores["pixel_accuracy"] == 1.0
    assert scores["log_likelihood"] == pytest.approx(-math.log(1 + 3 * math.exp(-10)))


def test_known_softmax_upsampled_to_the_labels():
    # p = (0.75, 0.25) everywhere, given at half the label resolution; every prediction is class 0.
    logits = torch.log(torch.tensor([0.75, 0.25])).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    labels = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [255, 255, 255, 255]]).view(1, 4, 4)
    evaluation = Evaluation(num_classes=2)
    evaluation.add(logits, labels)
    scores = evaluation.scores()
    assert scores["log_likelihood"] == pytest.approx((8 * math.log(0.75) + 4 * math.log(0.25)) / 12)
    assert scores["pixel_accuracy"] == pytest.approx(8 / 12)
    assert scores["miou"] == pytest.approx((8 / 12 + 0) / 2)  # class 1 is labelled, never predicted: IoU 0
    evaluation.add(logits, torch.full((1, 4, 4), 255))  # an all-ignored image changes nothing
    assert evaluation.scores() == scores


def test_split_is_seeded_disjoint_and_nested(benchmark):
    target = _city(benchmark, 1)
    ids = lambda items: [item.image_id for item in items]  # noqa: E731
    split = _split(target)
    assert len(split.train) == 4 and len(split.test) == 3 and split.num_classes == 19
    assert not set(ids(split.train)) & set(ids(split.test))
    assert ids(_split(target).train) == ids(split.train)
    bigger = _split(target, dataclasses.replace(TINY, eval_images=5))
    assert ids(bigger.train) == ids(split.train) and set(ids(split.test)) < set(ids(bigger.test))
    assert ids(_split({**target, "seed": 1}).train) != ids(split.train)  # the spec's seed picks the images
    assert ids(_split(target, dataclasses.replace(TINY, seed=1)).train) == ids(split.train)  # not the training seed
    with pytest.raises(ValueError, match="leaves none to evaluate on"):
        _split(target, dataclasses.replace(TINY, train_images=9))


def test_scoring_and_fine_tuning_select_the_same_images(benchmark):
    """The leakage-free protocol: the spec a run scores is the one fine-tuning trains on, image for image."""
    full = _city(benchmark, 1)
    scored = training_target(full, 4)
    assert scored == {**full, "max_images": 4}
    split = split_target(scored, eval_images=9)
    assert [item.image_id for item in split.train] == open_dataset(scored).image_ids
    assert len(split.test) == 5 and not {item.image_id for item in split.test} & set(open_dataset(scored).image_ids)
    assert training_target(scored) == scored and training_target(scored, 4) == scored
    with pytest.raises(ValueError, match="max_images=4, the images scoring saw"):
        training_target(scored, 5)


def test_a_target_without_a_subset_is_warned_about(benchmark, caplog):
    with caplog.at_level("WARNING"):
        _split(_city(benchmark, 1))
    assert "sets no max_images" in caplog.text


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))  # segnet's max_unpool2d has no flagged-deterministic kernel
def test_same_seed_gives_the_same_record(split, arch):
    def run(seed: int) -> dict:
        record = finetune_model(_builtin("m", arch), split, dataclasses.replace(TINY, seed=seed))
        return {k: v for k, v in dataclasses.asdict(record).items() if k != "seconds"}

    first = run(0)
    assert first["status"] == "ok" and -math.inf < first["log_likelihood"] < 0 and 0 <= first["miou"] <= 1
    assert run(0) == first
    assert run(1) != first


def test_classifier_is_replaced_only_when_class_counts_differ(split):
    kept = finetune_model(_builtin("same", num_classes=19), split, TINY)
    replaced = finetune_model(_builtin("five", num_classes=5), split, TINY)
    assert kept.replaced_classifier is None
    assert replaced.status == "ok" and replaced.replaced_classifier == "head.classifier"


class AuxNet(nn.Module):
    """A main classifier that an auxiliary head with the same class count follows, as in torchvision's DeepLab."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(3, 4, 3, padding=1)
        self.classifier = nn.Conv2d(4, 7, 1)
        self.aux = nn.Conv2d(4, 7, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        out = nn.functional.interpolate(self.classifier(features), scale_factor=2.0)
        return {"features": features, "out": out, "aux": self.aux(features)}


def test_classifier_found_through_the_logits_not_by_position():
    spec = ModelSpec.from_dict({"name": "aux", "format": "python", "entrypoint": "test_finetune:AuxNet"})
    net = AuxNet()
    images = np.zeros((1, 8, 8, 3), np.uint8)
    assert fit_classifier(spec, net, images, 3, torch.device("cpu")) == "classifier"
    assert net.classifier.out_channels == 3 and net.classifier.in_channels == 4 and net.aux.out_channels == 7
    assert fit_classifier(spec, net, images, 3, torch.device("cpu")) is None


def test_python_model_trains_with_a_new_head(split):
    record = finetune_model({"name": "aux", "format": "python", "entrypoint": "test_finetune:AuxNet"}, split, TINY)
    assert record.status == "ok" and record.replaced_classifier == "classifier"


def test_failing_models_are_recorded_with_their_cause(split, tmp_path):
    torch.jit.script(AuxNet()).save(str(tmp_path / "aux.pt"))
    scripted = finetune_or_fail({"name": "ts", "format": "torchscript", "path": str(tmp_path / "aux.pt")}, split, TINY)
    assert scripted.status == "failed" and scripted.miou is None
    assert "'ts'" in scripted.error and "7 classes but the target has 19" in scripted.error
    assert "TorchScript" in scripted.error
    features_only = finetune_or_fail({"name": "feat", "format": "python", "entrypoint": "torch.nn:Identity"}, split, TINY)
    assert features_only.status == "failed" and "no (B, C, h, w) logits" in features_only.error


def test_job_fine_tunes_every_model_and_records_a_failing_one(ray_local, benchmark, tmp_path):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    raw = {
        "store": str(tmp_path / "store"),
        "output": str(tmp_path / "out"),
        "target": training_target(_city(benchmark, 1), 4),  # what a leakage-free run scores
        "models": [
            {**_builtin("unet_a", "unet"), "source": _city(benchmark, 0)},
            {**_builtin("psp_a", "pspnet", num_classes=7), "source": _city(benchmark, 0)},
            {**_builtin("broken", "unet"), "checkpoint": str(tmp_path / "broken.pt"), "source": _city(benchmark, 0)},
        ],
    }
    table = ground_truth(parse_config(raw, base_dir=str(tmp_path)), dataclasses.replace(TINY, train_images=None))

    assert list(table["model"]) == ["unet_a", "psp_a", "broken"]
    assert list(table["status"]) == ["ok", "ok", "failed"]
    assert "broken.pt" in table["error"].iloc[2] and "'broken'" in table["error"].iloc[2]
    assert pd.isna(table["replaced_classifier"].iloc[0]) and table["replaced_classifier"].iloc[1] == "head.classifier"
    written = pd.read_csv(os.path.join(tmp_path, "out", "ground_truth.csv"))
    assert list(written.columns[:7]) == ["model", "miou", "pixel_accuracy", "log_likelihood", "seconds", "status",
                                         "error"]
    ok = written.iloc[:2]
    assert ok[["miou", "pixel_accuracy", "log_likelihood"]].notna().all().all()
    assert (ok["log_likelihood"] < 0).all() and (ok["seconds"] > 0).all()
    alone = finetune_model({**_builtin("unet_a", "unet"), "source": _city(benchmark, 0)},
                           _split(_city(benchmark, 1)), TINY)
    assert written["log_likelihood"].iloc[0] == pytest.approx(alone.log_likelihood, rel=1e-12)


def test_cli_writes_the_table_where_asked(ray_local, benchmark, tmp_path, capsys):
    raw = {"store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": _city(benchmark, 1),
           "models": [{**_builtin("fcn", "fcn8s"), "source": _city(benchmark, 0)}]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "elsewhere" / "gt.csv"
    argv = ["finetune", "--config", str(tmp_path / "run.yaml"), "--train-images", "4", "--eval-images", "3",
            "--steps", "2", "--out", str(out)]
    assert main(argv) == 0
    assert list(pd.read_csv(out)["status"]) == ["ok"] and not (tmp_path / "out" / "ground_truth.csv").exists()
    assert "1 model fine-tuned" in capsys.readouterr().out
