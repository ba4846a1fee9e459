"""Property: any input to the config checker gives either a valid RunConfig or a ConfigError, nothing else.

Inputs are the valid config with random edits: keys dropped, keys added (declared names as well as made-up ones),
values replaced by random scalars (NaN, infinities, dates, huge integers, empty strings) or nested junk, values
wrapped into another type. A config that is accepted must also be usable: JSON without NaN for run.json, read back to
itself by parse_config, and accepted by the dataset and model readers on their own.
"""

from __future__ import annotations

import dataclasses
import json
import math
from numbers import Integral

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from otce_ray.config import RUN, SECTIONS, ConfigError, RunConfig, load_config, parse_config
from otce_ray.datasets.spec import DATASET, normalize_spec
from otce_ray.models import ModelSpec
from otce_ray.models.spec import MODEL
from otce_ray.schema import Interval, ListOf, Options, Setting

KNOWN_KEYS = sorted(set(RUN.settings) | {k for s in SECTIONS.values() for k in s.settings} | DATASET.keys()
                    | MODEL.keys())

KEYS = st.one_of(st.sampled_from(KNOWN_KEYS), st.sampled_from(["", "a.b", "line\nbreak"]), st.text(max_size=5),
                 st.integers(), st.dates())
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 20_000), st.integers(10**18, 10**400), st.just(math.nan),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", " ", "sinkhorn", "emd", "auto", "cuda",
                                                                       "s3://Bad_Bucket/x", "../x", "a.b:c", "leep"]),
    st.text(max_size=6), st.dates(), st.datetimes(),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)


def _allowed(setting: Setting) -> st.SearchStrategy:
    """Values a section's setting accepts, drawn from its declaration (so that edits are often still valid)."""
    accepts = setting.accepts
    if isinstance(accepts, Interval):
        low = accepts.low if accepts.closed in ("both", "left") else accepts.low + 1e-9
        values = st.integers(int(math.ceil(low)), 10**6) if accepts.kind is Integral else st.floats(low, 1e6)
    elif isinstance(accepts, Options):
        values = st.sampled_from(accepts.choices)
    elif isinstance(accepts, ListOf):
        values = st.lists(st.sampled_from(accepts.item.choices), max_size=3)
    else:
        values = st.booleans()
    return st.none() | values if setting.default is None else values


def _valid() -> dict:
    def source(city: str) -> dict:
        return {"name": city, "format": "cityscapes", "root": f"data/{city}", "split": "train", "cities": [city]}

    return {
        "store": "./store", "output": "s3://otce-results/run",
        "target": source("gamma"),
        "models": [
            {"name": "unet_alpha", "format": "torchscript", "path": "models/unet.pt", "source": source("alpha")},
            {"name": "fcn_beta", "format": "python", "entrypoint": "zoo.fcn:build", "feature_layer": "body",
             "kwargs": {"width": 8, "blocks": [1, 2]}, "mean": [0.5, 0.5, 0.5], "size": [64, 128],
             "source": source("beta")},
            {"name": "segnet_alpha", "format": "builtin", "architecture": "segnet", "source": source("alpha")},
            {"name": "leaf", "format": "builtin", "architecture": "unet",
             "source": {"name": "farm", "format": "folder", "root": "data/farm", "label_map": {0: 0, 128: 1}}},
        ],
        "allowed_entrypoints": ["zoo"],
        "otce": {"n_pixels": 500, "repeats": 3, "epsilon": 0.05, "cost_scale": "median", "standardise": True},
        "extraction": {"num_gpus": 0.5, "num_cpus": 2, "max_workers": 4},
        "scoring": {"device": "cpu", "num_gpus": 0},
        "baselines": {"metrics": ["leep", "logme"], "n_pixels": 300},
        "cluster": {"resource_wait_seconds": 60, "stuck_task_seconds": 30.5},
        "decisions": {"top_k": 3, "resamples": 500, "seed": 1},
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    for city in ("alpha", "beta", "gamma", "farm"):
        (root / "data" / city).mkdir(parents=True)
    (root / "models").mkdir()
    (root / "models" / "unet.pt").write_bytes(b"x")
    return root


def _containers(node, found=None) -> list:
    """Every mapping and list in the structure (the places an edit can happen)."""
    found = [] if found is None else found
    if isinstance(node, (dict, list)):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, found)
    return found


@st.composite
def edited_configs(draw):
    raw = _valid()
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(st.sampled_from(sorted(SECTIONS[section].settings)))
        raw[section][key] = draw(_allowed(SECTIONS[section].settings[key]))
    for _ in range(draw(st.integers(0, 3))):
        place = draw(st.sampled_from(_containers(raw)))
        keys = list(place) if isinstance(place, dict) else list(range(len(place)))
        action = draw(st.sampled_from(["drop", "drop", "add", "replace", "replace", "wrap"] if keys else ["add"]))
        if action == "add":
            if isinstance(place, dict):
                place[draw(KEYS)] = draw(JUNK)
            else:
                place.append(draw(JUNK))
            continue
        key = draw(st.sampled_from(keys))
        if action == "drop":
            del place[key]
        elif action == "replace":
            place[key] = draw(JUNK)
        else:
            place[key] = draw(st.sampled_from([lambda v: [v], lambda v: {"value": v}, str, lambda v: None]))(place[key])
    return raw


def _check_usable(config: RunConfig, base_dir: str) -> None:
    assert config.models and config.target
    data = config.to_dict()
    json.dumps(data, allow_nan=False)
    data.pop("config_path")
    assert parse_config(data, base_dir=base_dir) == dataclasses.replace(config, config_path=None)
    for spec in (config.target, *(entry["source"] for entry in config.models)):
        normalize_spec(spec)
    for entry in config.models:
        ModelSpec.from_dict(entry)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=edited_configs())
def test_any_edit_gives_a_run_config_or_a_config_error(tree, raw):
    try:
        config = parse_config(raw, base_dir=str(tree))
    except ConfigError as error:
        assert error.problems and all(problem and "\n" not in problem for problem in error.problems)
        event("refused")
        return
    event("accepted")
    _check_usable(config, str(tree))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(JUNK, edited_configs()))
def test_any_yaml_file_gives_a_run_config_or_a_config_error(tree, raw):
    path = tree / "fuzz.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    try:
        config = load_config(str(path))
    except ConfigError as error:
        assert error.problems and all("\n" not in problem for problem in error.problems)
        return
    _check_usable(config, str(tree))


def test_the_edits_start_from_a_valid_config(tree):
    """The base the fuzzing edits is itself accepted (else every example would only test refusal)."""
    config = parse_config(_valid(), base_dir=str(tree))
    _check_usable(config, str(tree))
    assert config.allowed_entrypoints == ("zoo",)
    assert config.models[1]["kwargs"] == {"width": 8, "blocks": [1, 2]}
