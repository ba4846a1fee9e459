"""One estimator, three paths: the library call, a leaderboard run and the validation grid compute the same repeats
from the same stores, settings and seed, to the last digit; and a setting added to the settings record reaches the
result key and the README's table without any other edit."""

from __future__ import annotations

import dataclasses

import pytest

from otce_ray.config import parse_config
from otce_ray.datasets.synth import write_benchmark
from otce_ray.leaderboard import breakdown, load_results
from otce_ray.pipeline import run
from otce_ray.pipeline.tasks import result_key
from otce_ray.schema import Fields, Options, Setting, declared, fields_of, settings_table
from otce_ray.scoring.baselines import BaselineSettings
from otce_ray.scoring.estimator import otce_score
from otce_ray.scoring.settings import OTCESettings
from otce_ray.store import read_pixels
from otce_ray.validation.grid import Pair, score_pair

PRESETS = {
    "default": {"n_pixels": 300, "repeats": 3, "seed": 4},
    "paper": {"n_pixels": 300, "repeats": 3, "seed": 4, "solver": "emd", "standardise": False},
}


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity-bench")
    cities = write_benchmark(str(root), cities=2, images_per_city=3, size=(48, 96), seed=0)
    return str(root), cities


def _dataset(root: str, city: str) -> dict:
    return {"name": city, "format": "cityscapes", "root": root, "split": "train", "cities": [city]}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_library_call_leaderboard_run_and_validation_grid_agree_to_the_last_digit(
        preset, ray_local, benchmark, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as Ray runs a one-CPU task and the grid its workers: reductions then sum alike
    try:
        root, (source, target) = benchmark
        config = parse_config({
            "store": str(tmp_path / "store"), "output": str(tmp_path / "out"), "target": _dataset(root, target),
            "models": [{"name": "unet_src", "format": "builtin", "architecture": "unet", "init_seed": 3,
                        "source": _dataset(root, source)}],
            "otce": PRESETS[preset], "extraction": {"pixels_per_image": 150, "batch_size": 2},
            "baselines": {"metrics": []},
        }, base_dir=str(tmp_path))
        board = run(config, progress=False).set_index("model")

        # the library call on every row of the model's two stores, in store order
        xs = read_pixels(config.store, source, "unet_src", with_logits=False)
        xt = read_pixels(config.store, target, "unet_src", with_logits=False)
        assert len(xs) > config.otce.n_pixels and len(xt) > config.otce.n_pixels  # repeats draw different pixels
        library = otce_score(xs.features, xs.labels, xt.features, xt.labels, config.otce, device="cpu")
        assert library.dropped == 0 and library.settings == config.otce
        assert board.loc["unet_src", "otce"] == library.score  # the leaderboard's number, exactly
        [result] = load_results(config.output)
        assert result.scores == tuple(record.score for record in library.repeats)
        assert (result.per_class, result.label_map) == breakdown(library.repeats)
        assert result.settings == config.otce.to_dict() and board.loc["unet_src", "estimator"] == config.otce.label

        # the validation grid re-scoring the same stores under the same settings
        pair = Pair(seed=0, experiment="intra", target=target, model="unet_src", source_dataset=source,
                    store=config.store)
        row = score_pair(pair, config.otce)
        assert row["score"] == library.score and row["dropped"] == 0
    finally:
        torch.set_num_threads(threads)


def test_a_field_added_to_the_settings_record_reaches_the_key_and_the_readme_table():
    """The key is the record, and the config section and README table are rendered from its declarations: a new
    field needs no edit anywhere else to split keys and to show up (so the README check fails until regenerated)."""
    extended = dataclasses.make_dataclass(
        "Extended", [("flavour", str, declared(Options(("plain", "spicy")), "plain", "a new knob"))],
        bases=(OTCESettings,), frozen=True)
    base, new = OTCESettings(), extended()
    assert set(new.key()) - set(base.key()) == {"flavour"}
    assert result_key(new, BaselineSettings()) != result_key(base, BaselineSettings())
    assert result_key(extended(flavour="spicy"), BaselineSettings()) != result_key(new, BaselineSettings())
    with pytest.raises(ValueError, match=r"^flavour: expected one of plain, spicy, got 'mild'"):
        extended(flavour="mild")
    table = settings_table(Fields({"otce": Setting(fields_of(extended), None)}))
    assert "| `otce.flavour` | one of plain, spicy | `plain` | a new knob |" in table.splitlines()
