"""The validation: its plan, cross-task targets, grid, one tiny benchmark seed end to end (leakage-free stores,
replicate ground truth, re-scoring), and the analyses, choice and report on that run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from otce_ray.datasets import open_dataset
from otce_ray.finetune import FineTuneSettings, split_target
from otce_ray.store import read_pixels
from otce_ray.validation.analysis import (
    FAMILY, correlations, inter_by_source, mean_correlations, reliability_table, seed_table, within_family,
)
from otce_ray.validation.choice import CHOICE, candidates, read_choice, write_choice
from otce_ray.scoring.settings import OTCESettings
from otce_ray.validation.grid import SCORES, grid, rescore
from otce_ray.validation.harness import full_target, pairs, run_seed, scored_target, seed_dir, train_sources
from otce_ray.validation.plan import CROSS, EXPERIMENTS, INTER, INTRA, Plan, Target
from otce_ray.validation.report import write_report
from otce_ray.validation.study import SELECTION_SEEDS, selection_grid
from otce_ray.validation.tasks import TASKS, relabelled, write_task_target

TINY = Plan(
    cities=4, images_per_city=8, size=(32, 64), training_steps=2,
    intra_architecture=("fcn8s", {"width": 4}), intra_cities=("alpha", "beta", "gamma", "delta"),
    targets=("gamma",), inter_cities=("alpha", "beta"),
    inter_architectures={"fcn8s": ("fcn8s", {"width": 4}), "pspnet-d8": ("pspnet", {"width": 4, "feature_dim": 8})},
    cross_targets=(("gamma", "coarse"),), train_images=4, pixels_per_image=20, n_pixels=100, repeats=2,
    finetune=FineTuneSettings(eval_images=4, steps=2, batch_size=2), finetune_seeds=(0, 1),
)
SEED = 1
SETTINGS = [OTCESettings(solver="emd", standardise=False, n_pixels=60, repeats=1),
            OTCESettings(epsilon=0.05, cost_scale="median", standardise=True, n_pixels=60, repeats=1)]


def test_sources_never_include_the_target_city_and_cross_targets_reuse_the_intra_sources():
    gamma = Target("gamma")
    assert [s.city for s in TINY.sources_for(INTRA, gamma)] == ["alpha", "beta", "delta"]
    assert {s.name for s in TINY.sources_for(INTER, gamma)} == {
        "fcn8s_alpha", "fcn8s_beta", "pspnet-d8_alpha", "pspnet-d8_beta"}
    coarse = TINY.targets_of(CROSS)[0]
    assert (coarse.name, coarse.family) == ("gamma-coarse", "real-like")
    assert TINY.sources_for(CROSS, coarse) == TINY.sources_for(INTRA, gamma)
    assert len(TINY.all_sources()) == 6  # fcn8s on alpha and beta serves both experiments


def test_grid_lists_the_paper_estimators_first_each_raw_and_standardised():
    settings = grid(2000, 2)
    assert [s.label for s in settings[:4]] == [
        "emd, N 2000, K 2", "emd, z-scored, N 2000, K 2",
        "sinkhorn eps 0.1 raw, N 2000, K 2", "sinkhorn eps 0.1 raw, z-scored, N 2000, K 2"]
    assert [s.paper for s in settings] == [True, False, True, False] + [False] * 6
    assert {s.epsilon for s in settings[4:]} == {0.05, 0.01, 0.005}


def test_every_selection_seed_scores_the_n_2000_grid_and_only_the_first_the_n_10000_one():
    first, *others = SELECTION_SEEDS
    sizes = {seed: {s.n_pixels for _, block, _ in selection_grid(seed) for s in block} for seed in SELECTION_SEEDS}
    assert sizes[first] == {2000, 10_000}
    assert all(sizes[seed] == {2000} for seed in others)
    assert selection_grid(first)[0] == selection_grid(others[0])[0] == (EXPERIMENTS, grid(2000, 2), None)


def test_cross_task_labels_merge_or_drop_classes():
    train_ids = np.array([[0, 1, 2, 8], [10, 11, 13, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(relabelled(train_ids, TASKS["coarse"].relabel), [[0, 0, 1, 3], [4, 5, 6, 255]])
    np.testing.assert_array_equal(relabelled(train_ids, TASKS["objects"].relabel),
                                  [[255, 255, 255, 255], [255, 3, 4, 255]])
    assert (TASKS["coarse"].num_classes, TASKS["objects"].num_classes, TASKS["crowded"].num_classes) == (7, 6, 19)


def test_cross_task_targets_are_readable_datasets_of_their_task(tmp_path):
    coarse = open_dataset(write_task_target(str(tmp_path / "c"), "gamma", "coarse", 0, 3, (32, 64)))
    assert coarse.num_classes == 7 and len(coarse.image_ids) == 3
    assert set(np.unique(np.concatenate([item.label.ravel() for item in coarse]))) <= set(range(7)) | {255}
    people = {}
    for task in ("crowded", "sparse"):
        dataset = open_dataset(write_task_target(str(tmp_path / task), "iota", task, 0, 6, (64, 128)))
        people[task] = sum(int((item.label == 11).sum()) for item in dataset)  # train id 11: person
    assert people["crowded"] > 3 * max(people["sparse"], 1)


@pytest.fixture(scope="module")
def tiny_run(ray_local, tmp_path_factory):
    work = tmp_path_factory.mktemp("validation")
    run_seed(TINY, SEED, work, log=lambda *_: None)
    rescore(pairs(TINY, SEED, work), SETTINGS, seed_dir(work, SEED) / SCORES)
    return work


def test_scores_see_only_the_images_fine_tuning_trains_on(tiny_run):
    target = Target("gamma")
    scored = scored_target(TINY, SEED, tiny_run, target)
    assert scored["max_images"] == TINY.train_images and scored["seed"] == SEED
    split = split_target(scored, eval_images=4)
    stored = set(read_pixels(str(seed_dir(tiny_run, SEED) / "store"), "gamma", "fcn8s_alpha").image_ids)
    assert stored == {item.image_id for item in split.train}
    assert not stored & {item.image_id for item in split.test}
    assert len(open_dataset(full_target(TINY, SEED, tiny_run, target)).image_ids) == TINY.images_per_city


def test_a_rerun_trains_and_scores_nothing_again(tiny_run):
    assert train_sources(TINY, SEED, tiny_run) == {}
    before = pd.read_csv(seed_dir(tiny_run, SEED) / SCORES)
    after = rescore(pairs(TINY, SEED, tiny_run), SETTINGS, seed_dir(tiny_run, SEED) / SCORES)
    assert len(before) == len(after) == 10 * len(SETTINGS)  # (3 intra + 4 inter + 3 cross) pairs x settings


def test_seed_table_joins_scores_baselines_and_replicate_ground_truth(tiny_run):
    table = seed_table(TINY, SEED, tiny_run)
    assert len(table) == 10 and set(table.experiment) == {INTRA, INTER, CROSS}
    assert {"log_likelihood@0", "log_likelihood@1", "miou", "nleep", FAMILY, SETTINGS[0].label} <= set(table.columns)
    assert table[SETTINGS[0].label].notna().all() and table.log_likelihood.notna().all()
    np.testing.assert_allclose(table.log_likelihood, table[["log_likelihood@0", "log_likelihood@1"]].mean(axis=1))
    gamma = table[(table.experiment == INTRA)].set_index("model")
    assert gamma.loc["fcn8s_alpha", FAMILY] == 1 and gamma.loc["fcn8s_beta", FAMILY] == 0
    reliability = reliability_table(table)
    assert len(reliability) == 3 and (reliability.replicates == 2).all()
    metrics = [s.label for s in SETTINGS] + ["nleep", FAMILY]
    assert set(correlations(table, metrics).metric) == set(metrics)
    assert "within" in within_family(table, metrics).columns
    assert set(inter_by_source(table, metrics).source_city) == {"alpha", "beta"}
    summary = mean_correlations(table[table.experiment == INTER], metrics, baseline_of=SETTINGS[0].label,
                                resamples=50)
    assert list(summary.metric) == metrics and summary.pearson.abs().le(1).all()
    assert summary.set_index("metric").loc["nleep", "p_value"] <= 1


def test_choice_and_report_from_the_run(tiny_run):
    table = seed_table(TINY, SEED, tiny_run)
    scores = pd.read_csv(seed_dir(tiny_run, SEED) / SCORES)
    options = candidates(table, scores, SETTINGS + [OTCESettings(epsilon=0.01, standardise=False, n_pixels=60,
                                                                 repeats=1)])
    assert list(options.eligible) == [True, True, False]  # the third was never scored
    record = write_choice(tiny_run / CHOICE, options, [SEED])
    chosen, held_out = read_choice(tiny_run / CHOICE)
    assert chosen.label in {s.label for s in SETTINGS} and chosen == held_out[0]
    assert json.loads((tiny_run / CHOICE).read_text())["chosen"] == record["chosen"]
    report = write_report(TINY, tiny_run, [SEED], [SEED]).read_text()
    assert "## Held-out seeds [1]" in report and "noise ceiling" in report and "from alpha" in report
