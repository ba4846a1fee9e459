"""Validation v3 on one tiny benchmark seed end to end: the plan's roles, leakage-free stores, ground-truth
replicates on redrawn images, the per-cell table, the report recomputed from that table alone, a resume that
redoes nothing, and committed tables that resume on a new machine."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from otce_ray.finetune import FineTuneSettings, split_target
from otce_ray.store import read_pixels
from otce_ray.validation import protocol
from otce_ray.validation.grid import SCORES, rescore
from otce_ray.validation.harness import pairs, run_seed, scored_target, seed_dir, train_sources
from otce_ray.validation.plan import CANDIDATES, EXPERIMENTS, INTER, INTRA, SETTINGS, SHIFT, Plan, Target
from otce_ray.validation.report import write_report
from otce_ray.validation.study import run_study
from otce_ray.validation.tables import read_cells, tabled_seeds, write_tables

SEED = 1
TINY = Plan(images_per_city=8, size=(32, 64), train_images=4,
            finetune=FineTuneSettings(eval_images=4, steps=2, batch_size=2), replicates=2, source_eval_images=2,
            pixels_per_image=40, zoo=(("unet", 4, 2), ("fcn8s", 4, 2), ("pspnet", 4, 2)),
            inter_architectures={"unet": ("unet", {"width": 4}), "fcn8s": ("fcn8s", {"width": 4})},
            targets=(1, 1, 1))


def test_the_full_plan_has_16_sources_per_target_and_fresh_seeds_get_fresh_roles():
    plan = Plan()
    for seed in protocol.FRESH_SEEDS:
        plan.check(seed)
        roles = plan.roles(seed)
        assert len(set(roles.targets) | set(roles.intra_sources) | {roles.inter_real}) == 21  # all different
        assert len(plan.sources(INTRA, seed)) == 16 and len(plan.sources(INTER, seed)) == 12
        assert {s.steps for s in plan.sources(INTRA, seed)} == {40, 200}  # a quality spread within the family
        assert [t.shift for t in plan.targets_of(SHIFT, seed)] != [None, None]
    assert plan.roles(5) != plan.roles(6)
    assert list(CANDIDATES) == ["eps0.05-z", "eps0.01-z", "emd-z"]  # cheapest first, as pre-registered
    assert all(s.n_pixels == 2000 and s.repeats == 5 for s in SETTINGS.values())


@pytest.fixture(scope="module")
def tiny_run(ray_local, tmp_path_factory):
    work = tmp_path_factory.mktemp("validation")
    run_seed(TINY, SEED, work, log=lambda *_: None)
    rescore(pairs(TINY, SEED, work), SETTINGS, seed_dir(work, SEED) / SCORES)
    tables = work / "tables"
    write_tables(TINY, [SEED], work, tables, {"code": {"commit": "abc", "clean": True}, "preregistration": "def"})
    return work, tables


def test_scores_see_only_the_images_fine_tuning_trains_on(tiny_run):
    work, _ = tiny_run
    target = TINY.targets_of(INTRA, SEED)[0]
    scored = scored_target(TINY, SEED, work, target)
    split = split_target(scored, eval_images=4)
    stored = set(read_pixels(str(seed_dir(work, SEED) / "store"), target.name,
                             TINY.sources(INTRA, SEED)[0].name).image_ids)
    assert stored == {item.image_id for item in split.train} and not stored & {item.image_id for item in split.test}


def test_ground_truth_replicates_redraw_the_training_images(tiny_run):
    assert TINY.finetune_settings(0).image_draw is None and TINY.finetune_settings(1).image_draw == 1
    assert TINY.finetune_settings(1).seed == 1
    work, _ = tiny_run
    target = TINY.targets_of(INTRA, SEED)[0]
    split = split_target(scored_target(TINY, SEED, work, target), eval_images=4)
    redrawn = split.redrawn(1)
    assert len(redrawn.train) == len(split.train) and {i.image_id for i in redrawn.train} <= {
        i.image_id for i in split.train} and redrawn.test == split.test


def test_the_per_cell_table_holds_what_the_report_needs(tiny_run):
    _, tables = tiny_run
    cells = read_cells(tables)
    assert len(cells) == 3 + 3 + 4 and set(cells.experiment) == set(EXPERIMENTS)
    expected = {"params", "source_miou", "feature_norm", "family_indicator", "log_likelihood@0", "log_likelihood@1",
                "miou@1", "hscore", "nleep", "otce:eps0.01-z", "otce:paper-emd", "seconds:emd-z"}
    assert expected <= set(cells.columns)
    assert cells[[f"otce:{name}" for name in SETTINGS]].notna().all().all() and (cells.params > 0).all()
    assert set(cells[cells.experiment == SHIFT]["shift"]) == {TINY.targets_of(SHIFT, SEED)[0].shift}
    assert json.loads((tables / "meta.json").read_text())["code"]["commit"] == "abc"


def test_the_report_is_recomputed_from_the_tables_alone(tiny_run, tmp_path):
    _, tables = tiny_run
    copied = tmp_path / "committed"
    copied.mkdir()
    for name in ("cells.csv", "meta.json"):
        (copied / name).write_bytes((tables / name).read_bytes())
    report = write_report(copied, resamples=100).read_text()
    for section in ("## Ground truth", "## The choice among the pre-registered settings", "**Chosen:",
                    "## Decisions: `intra`", "## Consensus of metrics against OTCE", "## Inter:", "Holm p"):
        assert section in report


def test_a_rerun_trains_and_scores_nothing_again(tiny_run):
    work, _ = tiny_run
    assert train_sources(TINY, SEED, work) == {}
    before = pd.read_csv(seed_dir(work, SEED) / SCORES)
    after = rescore(pairs(TINY, SEED, work), SETTINGS, seed_dir(work, SEED) / SCORES)
    assert len(before) == len(after) == 10 * len(SETTINGS)


def test_committed_tables_resume_on_a_new_machine(tiny_run, tmp_path):
    """Seeds the tables hold run nowhere again; a new seed's rows join them, the earlier run's meta kept."""
    work, tables = tiny_run
    committed = tmp_path / "committed"
    committed.mkdir()
    earlier = read_cells(tables).assign(seed=SEED + 100)  # stands for a seed an earlier run committed
    earlier.to_csv(committed / "cells.csv", index=False)
    (committed / "meta.json").write_text(json.dumps({"seeds": [SEED + 100], "code": {"commit": "old"}}))
    new_machine = tmp_path / "work"
    run_study(new_machine, [SEED + 100], committed, log=lambda *_: None)
    assert not seed_dir(new_machine, SEED + 100).exists()  # nothing ran
    assert "seeds [101]: code old" in (committed / "report.md").read_text()
    write_tables(TINY, [SEED], work, committed, {"seeds": [SEED], "code": {"commit": "new"}})
    assert tabled_seeds(committed) == [SEED, SEED + 100]
    assert json.loads((committed / "meta.json").read_text())["earlier"]["code"]["commit"] == "old"
    merged = read_cells(committed)
    assert len(merged) == 2 * len(earlier) and merged.columns.tolist() == read_cells(tables).columns.tolist()


def test_targets_name_their_shift():
    assert Target("v3-alpha", "blur").name == "v3-alpha.blur" and Target("v3-alpha").name == "v3-alpha"
