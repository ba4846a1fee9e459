"""Run config loading and validation: a valid config round-trips; every kind of problem is reported, all at once,
each with its key path."""

from __future__ import annotations

import datetime
import json
import math
import re

import pytest
import yaml

from otce_ray.config import (
    ConfigError,
    ExtractionSettings,
    OTCESettings,
    RunConfig,
    ScoringSettings,
    load_config,
    parse_config,
)


@pytest.fixture
def tree(tmp_path):
    """Dataset roots and model files that the configs below point at (relative to tmp_path)."""
    for city in ("alpha", "beta", "gamma"):
        (tmp_path / "data" / city).mkdir(parents=True)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "unet_alpha.pt").write_bytes(b"x")
    (tmp_path / "models" / "fcn_beta.ckpt").write_bytes(b"x")
    return tmp_path


def _source(city: str) -> dict:
    return {"name": city, "format": "cityscapes", "root": f"data/{city}", "split": "train", "cities": [city]}


def _raw() -> dict:
    return {
        "store": "./otce-store",
        "output": "s3://otce-results/run-1",
        "target": _source("gamma"),
        "models": [
            {"name": "unet_alpha", "format": "torchscript", "path": "models/unet_alpha.pt", "source": _source("alpha")},
            {"name": "fcn_beta", "format": "python", "entrypoint": "zoo.fcn:build",
             "checkpoint": "models/fcn_beta.ckpt", "feature_layer": "backbone.layer4", "source": _source("beta"), "mean": [0.5, 0.5, 0.5],
             "std": [0.25, 0.25, 0.25], "size": [128, 256]},
            {"name": "segnet_alpha", "format": "builtin", "architecture": "segnet", "num_classes": 19,
             "source": _source("alpha")},
        ],
        "otce": {"n_pixels": 2000, "repeats": 5, "seed": 3, "solver": "emd", "epsilon": None},
        "extraction": {"pixels_per_image": 500, "batch_size": 4, "num_gpus": 0.5, "num_shards": 8},
        "scoring": {"max_in_flight": 16, "num_gpus": 0.25, "device": "cuda"},
    }


def _problems(raw, base_dir) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=str(base_dir))
    return caught.value.problems


def test_valid_config_resolves_paths_and_round_trips(tree):
    (tree / "run.yaml").write_text(yaml.safe_dump(_raw()))
    config = load_config(str(tree / "run.yaml"))

    assert config.config_path == str(tree / "run.yaml")
    assert config.store == str(tree / "otce-store")
    assert config.output == "s3://otce-results/run-1"
    assert config.target["root"] == str(tree / "data" / "gamma")
    assert [m["name"] for m in config.models] == ["unet_alpha", "fcn_beta", "segnet_alpha"]
    assert config.models[0]["path"] == str(tree / "models" / "unet_alpha.pt")
    assert config.models[1]["source"]["root"] == str(tree / "data" / "beta")
    assert config.otce == OTCESettings(n_pixels=2000, repeats=5, seed=3, solver="emd", epsilon=None)
    assert config.extraction == ExtractionSettings(pixels_per_image=500, batch_size=4, num_gpus=0.5, num_shards=8)
    assert config.scoring == ScoringSettings(max_in_flight=16, num_gpus=0.25, device="cuda")

    data = config.to_dict()
    json.dumps(data)  # run.json material
    data.pop("config_path")
    assert parse_config(data, base_dir="/elsewhere") == RunConfig(**{**vars(config), "config_path": None})


def test_sections_default_when_left_out(tree):
    raw = {key: _raw()[key] for key in ("store", "output", "target", "models")}
    config = parse_config(raw, base_dir=str(tree))
    assert config.otce == OTCESettings(n_pixels=2000, repeats=5, seed=0, solver="sinkhorn", epsilon=None)
    assert config.extraction == ExtractionSettings(pixels_per_image=1000, batch_size=8, num_gpus=None)
    assert config.scoring == ScoringSettings(max_in_flight=None, num_gpus=None, device="auto")


def test_models_file_is_read_relative_to_the_config_file(tree, monkeypatch):
    configs = tree / "configs"
    configs.mkdir()
    raw = _raw()
    zoo = [{**m, "path": "../" + m["path"]} if "path" in m else m for m in raw.pop("models")[:1]]
    zoo[0]["source"] = {**zoo[0]["source"], "root": "../data/alpha"}
    (configs / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    raw["models_file"] = "zoo.yaml"
    raw["target"]["root"] = "../data/gamma"
    (configs / "run.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tree / "data")  # relative paths must not depend on the working directory

    config = load_config(str(configs / "run.yaml"))

    assert [m["name"] for m in config.models] == ["unet_alpha"]
    assert config.models[0]["path"] == str(tree / "models" / "unet_alpha.pt")


def test_models_file_is_read_when_models_is_null(tree):
    (tree / "zoo.yaml").write_text(yaml.safe_dump(_raw()["models"][:1]))
    config = parse_config(_raw() | {"models": None, "models_file": "zoo.yaml"}, base_dir=str(tree))
    assert [m["name"] for m in config.models] == ["unet_alpha"]


def test_problems_in_models_file_carry_their_entry_index(tree):
    zoo = [_raw()["models"][0], {**_raw()["models"][0], "name": "other", "format": "onnx"}]
    (tree / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    raw = _raw()
    del raw["models"]
    raw["models_file"] = "zoo.yaml"
    problems = _problems(raw, tree)
    assert problems == ("models_file[1].format: expected one of torchscript, python, builtin, huggingface, "
                        "torchvision, smp, got 'onnx'",)


def test_missing_models_file_is_one_problem_among_others(tree):
    raw = _raw()
    del raw["models"]
    raw["models_file"] = "nowhere.yaml"
    raw["otce"]["solver"] = "greedy"
    problems = _problems(raw, tree)
    assert len(problems) == 2  # in the order of the file: models_file was written last
    assert problems[0] == "otce.solver: expected one of sinkhorn, emd, got 'greedy'"
    assert problems[1].startswith(f"models_file: cannot read '{tree / 'nowhere.yaml'}'")


def _set(path: str, value):
    """A mutation of the valid raw config: set (or with value=DELETE, remove) the key at a dotted path."""

    def mutate(raw: dict) -> dict:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
        return raw

    return mutate


DELETE = object()

CASES = {
    "unknown key with a suggestion": (_set("otce.n_pixel", 5), "otce.n_pixel: unknown key (did you mean 'n_pixels'?)"),
    "unknown top-level key": (_set("zoo", 1), "zoo: unknown key (expected one of store, output, target, targets, "
                              "models, models_file, allowed_entrypoints, otce, extraction, scoring, baselines, "
                              "cluster, decisions, racing)"),
    "missing required field": (_set("target.root", DELETE), "target.root: missing required field"),
    "missing per-format field": (_set("models.2.architecture", DELETE),
                                 "models[2].architecture: missing required field"),
    "unknown builtin architecture": (_set("models.2.architecture", "sgenet"),
                                     "models[2].architecture: expected one of unet, segnet, fcn8s, pspnet, got "
                                     "'sgenet' (did you mean 'segnet'?)"),
    "folder needs a label map": (_set("target", {"name": "gamma", "format": "folder", "root": "data/gamma"}),
                                 "target.label_map: missing required field"),
    "key of another format": (_set("models.0.source.format", "bdd100k"),
                              "models[0].source.cities: unknown key (expected one of name, format, root, max_images, "
                              "seed, on_error, split)"),
    "wrong type": (_set("otce.n_pixels", "many"), "otce.n_pixels: expected an integer from 2 to 10000000, got 'many'"),
    "bool is not an integer": (_set("extraction.batch_size", True),
                               "extraction.batch_size: expected an integer from 1 to 4096, got True"),
    "section not a mapping": (_set("extraction", [1]), "extraction: expected a mapping, got list"),
    "unknown dataset format": (_set("models.2.source.format", "citiscapes"),
                               "models[2].source.format: expected one of cityscapes, bdd100k, gta5, folder, got "
                               "'citiscapes' (did you mean 'cityscapes'?)"),
    "one repeat has no interval": (_set("otce.repeats", 1), "otce.repeats: a leaderboard needs at least 2 repeats (its interval uses t with K-1 dof)"),
    "epsilon must be positive": (_set("otce.epsilon", 0), "otce.epsilon: expected a number > 0, got 0"),
    "standardise is a flag": (_set("otce.standardise", "yes"), "otce.standardise: expected true or false, got 'yes'"),
    "negative gpus": (_set("extraction.num_gpus", -1), "extraction.num_gpus: expected a number from 0 to 64, got -1"),
    "bad entrypoint": (_set("models.1.entrypoint", "zoo.fcn.build"),
                       "models[1].entrypoint: expected 'package.module:function', got 'zoo.fcn.build'"),
    "bad normalisation": (_set("models.1.std", [0.2, 0, 0.2]),
                          "models[1].std: expected a list of 3 values (R, G, B), each a number > 0, got "
                          "[0.2, 0, 0.2]"),
    "bad size": (_set("models.1.size", [128]),
                 "models[1].size: expected a list of 2 values ([height, width]), each an integer >= 1, got [128]"),
    "label map entry out of range": (_set("target", {"name": "gamma", "format": "folder", "root": "data/gamma",
                                                     "label_map": {1: 300}}),
                                     "target.label_map: entry 1: 300 must map a raw value >= 0 to a class id 0-254"),
    "ignore index that is also mapped": (_set("target", {"name": "gamma", "format": "folder", "root": "data/gamma",
                                                         "label_map": {1: 0}, "ignore_index": 1}),
                                         "target.ignore_index: raw value 1 is also a key of 'label_map'"),
    "name unusable as a folder": (_set("models.0.name", "unet/alpha"),
                                  "models[0].name: expected a name of at most 128 letters, digits, '.', '_', '-' (it becomes a "
                                  "folder name), got 'unet/alpha'"),
    "duplicate model names": (_set("models.2.name", "unet_alpha"),
                              "models[2].name: duplicate name 'unet_alpha' (first at models[0])"),
    "one dataset name, two datasets": (_set("models.2.source.cities", ["alpha", "beta"]),
                                       "models[2].source: dataset name 'alpha' is already used by a different spec "
                                       "at models[0].source (pixel stores are keyed by dataset name)"),
    "missing dataset root": (_set("models.0.source.root", "data/delta"), "models[0].source.root: no such directory "),
    "missing model file": (_set("models.0.path", "models/none.pt"), "models[0].path: no such file "),
    "missing checkpoint": (_set("models.1.checkpoint", "models/none.ckpt"), "models[1].checkpoint: no such file "),
    "malformed s3 uri": (_set("store", "s3://Bad_Bucket/x"),
                         "store: malformed S3 URI 's3://Bad_Bucket/x': bucket 'Bad_Bucket' must be 3-63 lowercase "
                         "letters, digits, '.', '-'"),
    "models and models_file": (_set("models_file", "zoo.yaml"),
                               "models: give exactly one of models (an inline list) or models_file"),
    "neither models nor models_file": (_set("models", DELETE),
                                       "models: give exactly one of models (an inline list) or models_file"),
    "empty model list": (_set("models", []),
                         "models: expected a non-empty list of entries, each a model spec (a mapping), got []"),
    "cuda without gpus": (_set("scoring.num_gpus", 0),
                          "scoring.device: 'cuda' needs scoring.num_gpus > 0 (or leave num_gpus unset)"),
    "infinite epsilon": (_set("otce.epsilon", math.inf), "otce.epsilon: expected a finite number > 0, got inf"),
    "nan epsilon": (_set("otce.epsilon", math.nan), "otce.epsilon: expected a finite number > 0, got nan"),
    "integer too large for a float": (_set("otce.epsilon", 10**400),
                                      "otce.epsilon: expected a finite number > 0, got 1000"),
    "empty path": (_set("store", " "), "store: expected a local path or an s3:// URI, got ' '"),
    "date in kwargs": (_set("models.1.kwargs", {"note": datetime.date(2024, 1, 1)}),
                       "models[1].kwargs.note: expected a JSON value (null, true/false, a finite number, a string, "
                       "a list or a mapping), got datetime.date(2024, 1, 1)"),
    "nan deep in kwargs": (_set("models.2.kwargs", {"layers": [1, {"w": math.nan}]}),
                           "models[2].kwargs.layers[1].w: expected a JSON value"),
    "kwargs key that JSON cannot hold": (_set("models.1.kwargs", {1: "x"}),
                                         "models[1].kwargs.1: expected a string key, got int 1"),
    "metrics not a list": (_set("baselines", {"metrics": 5}),
                           "baselines.metrics: expected a list of metric names, each one of leep, "),
    "target not a mapping": (_set("target", "gamma"), "target: expected a dataset spec (a mapping), got str"),
    "model entry not a mapping": (_set("models.1", "fcn_beta"),
                                  "models[1]: expected a model spec (a mapping), got str"),
    "source not a mapping": (_set("models.0.source", ["alpha"]),
                             "models[0].source: expected a dataset spec (a mapping), got list"),
    "entrypoint outside the allow-list": (_set("allowed_entrypoints", ["mycompany.models", "zoo.fc"]),
                                          "models[1].entrypoint: module 'zoo.fcn' is not under allowed_entrypoints "
                                          "(mycompany.models, zoo.fc)"),
    "allow-list of paths, not modules": (_set("allowed_entrypoints", ["zoo/fcn"]),
                                         "allowed_entrypoints[0]: expected a dotted module name such as "
                                         "'mycompany.models', got 'zoo/fcn'"),
}

@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_is_reported_with_its_key_path(tree, case):
    mutate, expected = CASES[case]
    problems = _problems(mutate(_raw()), tree)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


@pytest.mark.parametrize("section", ["otce", "extraction", "scoring", "baselines", "cluster"])
@pytest.mark.parametrize("value", [5, "fast", [1], True, datetime.date(2024, 1, 1)])
def test_a_section_that_is_not_a_mapping_is_one_problem(tree, section, value):
    assert _problems(_raw() | {section: value}, tree) == (f"{section}: expected a mapping, got {type(value).__name__}",)


_READER_PATH = re.compile(r"^(target|models\[(\d+)\](\.source)?)[.:\[]")


@pytest.mark.parametrize("case", sorted(name for name, (_, expected) in CASES.items() if _READER_PATH.match(expected)
                                        and "no such" not in expected and "duplicate" not in expected
                                        and "already used" not in expected and "allowed_entrypoints" not in expected))
def test_readers_refuse_what_the_config_refuses_in_a_spec(case):
    """The dataset and model readers check the same declarations as the config: a spec the config refuses for what
    it holds (not for a missing file or a clash with another entry) is refused by its reader on its own too."""
    from otce_ray.datasets.spec import normalize_spec
    from otce_ray.models import ModelSpec

    mutate, expected = CASES[case]
    raw = mutate(_raw())
    where, index, source = _READER_PATH.match(expected).groups()
    if where == "target":
        read, spec = normalize_spec, raw["target"]
    else:
        entry = raw["models"][int(index)]
        read, spec = (normalize_spec, entry["source"]) if source else (ModelSpec.from_dict, entry)
    with pytest.raises(ValueError):
        read(spec)


def test_every_problem_is_listed_at_once(tree):
    raw = _raw()
    raw["otce"]["n_pixel"] = 5
    raw["models"][0]["source"]["format"] = "citiscapes"
    raw["models"][2]["name"] = "unet_alpha"
    raw["models"][1]["checkpoint"] = "models/none.ckpt"
    raw["extraction"]["num_gpus"] = "one"
    del raw["output"]

    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir=str(tree), config_path="run.yaml")

    assert isinstance(caught.value, ValueError)
    assert caught.value.problems == (
        "output: missing required field",
        "models[0].source.format: expected one of cityscapes, bdd100k, gta5, folder, got 'citiscapes' (did you mean "
        "'cityscapes'?)",
        f"models[1].checkpoint: no such file '{tree / 'models' / 'none.ckpt'}'",
        "models[2].name: duplicate name 'unet_alpha' (first at models[0])",
        "otce.n_pixel: unknown key (did you mean 'n_pixels'?)",
        "extraction.num_gpus: expected a number from 0 to 64, got 'one'",
    )
    message = str(caught.value)
    assert message.startswith("invalid run config run.yaml (6 problems):\n")
    assert all(f"\n  {p}" in message for p in caught.value.problems)


def test_s3_paths_are_not_fetched_during_validation(tree):
    raw = _raw()
    raw["target"]["root"] = "s3://otce-data/cityscapes"  # no endpoint exists: validation must stay offline
    raw["models"][0]["path"] = "s3://otce-models/unet_alpha.pt"
    config = parse_config(raw, base_dir=str(tree))
    assert config.target["root"] == "s3://otce-data/cityscapes"


def test_yaml_quirks_are_handled(tree):
    text = yaml.safe_dump(_raw()).replace("epsilon: null", "epsilon: 1e-3").replace("solver: emd", "solver: sinkhorn")
    (tree / "run.yaml").write_text(text)
    assert load_config(str(tree / "run.yaml")).otce.epsilon == 0.001  # YAML 1.1 would read a string

    (tree / "dup.yaml").write_text(text + "store: ./again\n")
    with pytest.raises(ConfigError, match=r"config: .*dup.yaml.* is not valid YAML: .*duplicate key 'store'"):
        load_config(str(tree / "dup.yaml"))


def test_unreadable_config_names_the_file(tree):
    with pytest.raises(ConfigError, match=r"config: cannot read '.*absent.yaml'"):
        load_config(str(tree / "absent.yaml"))
    (tree / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"\(top level\): expected a mapping, got list"):
        load_config(str(tree / "list.yaml"))


def test_baseline_metrics_are_checked_by_name_and_may_be_switched_off(tree):
    from otce_ray.scoring.baselines import BASELINES

    assert parse_config(_raw(), base_dir=str(tree)).baselines.names() == tuple(BASELINES)
    chosen = parse_config(_raw() | {"baselines": {"metrics": ["leep", "logme"], "n_pixels": 300}}, base_dir=str(tree))
    assert chosen.baselines.names() == ("leep", "logme") and chosen.baselines.n_pixels == 300
    resolved = {key: value for key, value in chosen.to_dict().items() if key != "config_path"}
    assert parse_config(resolved, base_dir=str(tree)).baselines == chosen.baselines
    assert parse_config(_raw() | {"baselines": {"metrics": []}}, base_dir=str(tree)).baselines.names() == ()
    problems = _problems(_raw() | {"baselines": {"metrics": ["leep", "leap"], "n_pixels": 1}}, tree)
    assert problems[0] == ("baselines.metrics[1]: expected one of leep, nleep, nce, hscore, hscore_shrinkage, logme, "
                           "gbc, transrate, jc_otce, got 'leap' (did you mean 'leep'?)")
    assert problems[1].startswith("baselines.n_pixels: expected an integer from 2 to 10000000")


def test_allowed_entrypoints_restrict_python_models_to_module_prefixes(tree):
    assert parse_config(_raw(), base_dir=str(tree)).allowed_entrypoints is None  # default: no restriction
    config = parse_config(_raw() | {"allowed_entrypoints": ["torchvision.models", "zoo"]}, base_dir=str(tree))
    assert config.allowed_entrypoints == ("torchvision.models", "zoo")  # zoo.fcn is inside zoo
    resolved = {key: value for key, value in config.to_dict().items() if key != "config_path"}
    assert parse_config(resolved, base_dir=str(tree)) == RunConfig(**{**vars(config), "config_path": None})
    assert _problems(_raw() | {"allowed_entrypoints": ["zoo.fc"]}, tree) == (
        "models[1].entrypoint: module 'zoo.fcn' is not under allowed_entrypoints (zoo.fc)",)  # a prefix of names
    assert _problems(_raw() | {"allowed_entrypoints": []}, tree) == (
        "models[1].entrypoint: module 'zoo.fcn' is not under allowed_entrypoints (none allowed)",)


def test_relative_paths_in_a_config_on_s3_stay_in_its_bucket(tree):
    config = parse_config(_raw(), base_dir="s3://otce-configs/runs")
    assert config.store == "s3://otce-configs/runs/otce-store"
    assert config.models[0]["source"]["root"] == "s3://otce-configs/runs/data/alpha"
    assert parse_config(_raw() | {"store": "../stores/a"}, base_dir="s3://otce-configs/runs").store == \
        "s3://otce-configs/stores/a"
    raw = _raw() | {"store": "../../other-bucket/x"}
    raw["models"][0]["path"] = "../../../etc/model.pt"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base_dir="s3://otce-configs/runs")
    assert caught.value.problems == (
        "store: relative path '../../other-bucket/x' leaves the config's bucket 'otce-configs'",
        "models[0].path: relative path '../../../etc/model.pt' leaves the config's bucket 'otce-configs'",
    )


def test_yaml_with_an_unhashable_key_is_a_config_problem(tree):
    (tree / "run.yaml").write_text("store: x\n? [1, 2]\n: y\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(tree / "run.yaml"))
    assert caught.value.problems == (f"config: '{tree / 'run.yaml'}' is not valid YAML: found unhashable key "
                                     "(line 2, column 3)",)


def test_bad_values_end_the_cli_with_exit_2_and_one_line_each(tree, capsys):
    from otce_ray.cli import main

    text = yaml.safe_dump(_raw()).replace("epsilon: null", "epsilon: .inf")
    text = text.replace("feature_layer: backbone.layer4",
                        "feature_layer: backbone.layer4\n  kwargs: {note: 2024-01-01}")
    (tree / "run.yaml").write_text(text + "baselines: {metrics: 5}\n")

    assert main(["score", "--config", str(tree / "run.yaml")]) == 2

    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"otce-ray: error: ConfigError: invalid run config {tree / 'run.yaml'} (3 problems):"
    assert [line.split(":")[0] for line in lines[1:]] == ["  models[1].kwargs.note", "  otce.epsilon",
                                                          "  baselines.metrics"]
