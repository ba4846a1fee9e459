"""The settings: what every key accepts, its default and its doc, declared once next to its owner with the kit of
otce_ray.schema. Their derived forms (the config sections, ModelSpec's defaults, the README's config table) are held
equal to the declarations here, and the kit's constraints are checked one by one."""

from __future__ import annotations

import dataclasses
import math
import re
from numbers import Integral, Real
from pathlib import Path

import pytest
import yaml

from otce_ray import schema
from otce_ray.config import RUN, SECTIONS, SETTINGS, config_table
from otce_ray.datasets.spec import DATASET
from otce_ray.leaderboard.results import result_uri
from otce_ray.models import ModelSpec
from otce_ray.models.families.python_entry import ENTRYPOINT, entrypoint_problem
from otce_ray.models.spec import MODEL
from otce_ray.schema import Index, Interval, JSONObject, ListOf, Options
from otce_ray.store.layout import manifest_uri, model_uri, part_uri

README = Path(__file__).resolve().parent.parent / "README.md"


def _defaults(cls) -> dict:
    return {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(cls) if (f.default, f.default_factory) != (dataclasses.MISSING,) * 2}


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_settings_dataclasses_are_the_schema_sections(section):
    cls, fields = SETTINGS[section], SECTIONS[section]
    settings = {key: setting for key, setting in fields.settings.items() if key != schema.PRESET}  # expanded away
    assert [f.name for f in dataclasses.fields(cls)] == list(settings)
    assert _defaults(cls) == {key: setting.default for key, setting in settings.items()}


def test_model_spec_fields_are_the_model_schema():
    assert {f.name for f in dataclasses.fields(ModelSpec)} == MODEL.keys()
    for key, default in _defaults(ModelSpec).items():
        declared = MODEL.default(key)
        assert default == (None if declared is schema.REQUIRED else declared), key  # required in its format only


@pytest.mark.parametrize("spec", [MODEL, DATASET])
def test_a_key_declared_by_several_formats_has_one_default(spec):
    for key in spec.keys() - set(spec.common):
        defaults = {repr(fields.settings[key].default) for fields in spec.formats.values() if key in fields.settings}
        assert len(defaults) == 1, (key, defaults)


def _readme_table() -> str:
    lines = README.read_text().splitlines()
    start = lines.index("| key | accepts | default | meaning |")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return "\n".join(lines[start:end])


def test_readme_config_table_is_the_rendered_schema():
    assert _readme_table() == config_table()


def test_readme_config_example_shows_every_section_with_its_defaults():
    text = README.read_text()
    example = yaml.safe_load(text[text.index("```yaml\nstore:") + len("```yaml"):].split("```")[0])
    assert example["allowed_entrypoints"] is RUN.default("allowed_entrypoints")
    for name, fields in SECTIONS.items():
        assert example[name] == {key: setting.default for key, setting in fields.settings.items()}, name


def test_readme_error_example_is_what_the_checker_says():
    said = DATASET.check({"name": "alpha", "format": "citiscapes", "root": "data"})[1][0]
    line = said.within("models", Index(3), "source").render()
    assert line in " ".join(README.read_text().split())


def test_readers_say_which_format_requires_a_key():
    from otce_ray.datasets import DatasetError
    from otce_ray.datasets.spec import normalize_spec
    from otce_ray.models import ModelError

    with pytest.raises(ModelError) as caught:
        ModelSpec.from_dict({"name": "b", "format": "builtin"})
    assert str(caught.value) == "model 'b': field 'architecture' is required for format 'builtin'"
    with pytest.raises(DatasetError) as caught:
        normalize_spec({"name": "f", "format": "folder"})
    assert str(caught.value) == ("dataset 'f': spec key 'root' is required; spec key 'label_map' is required for "
                                 "format folder")


@pytest.mark.parametrize(
    ("constraint", "value", "problem"),
    [
        (Interval(Integral, 1), 0, "expected an integer >= 1, got 0"),
        (Interval(Integral, 1), True, "expected an integer >= 1, got True"),
        (Interval(Integral, 1), 2.0, "expected an integer >= 1, got 2.0"),
        (Interval(Integral, 0, 254), 255, "expected an integer from 0 to 254, got 255"),
        (Interval(Real, 0, closed="neither"), 0.0, "expected a number > 0, got 0.0"),
        (Interval(Real, 0, closed="neither"), -math.inf, "expected a finite number > 0, got -inf"),
        (Interval(Real, 0), 10**400, "expected a finite number >= 0, got 1000"),
        (Interval(Real, 0, 1, closed="left"), 1, "expected a number >= 0 and < 1, got 1"),
        (Options(("raise", "skip")), "skp", "expected one of raise, skip, got 'skp' (did you mean 'skip'?)"),
        (Options(("raise", "skip")), ["skip"], "expected one of raise, skip, got ['skip']"),
        (ListOf(Interval(Real), "values", length=3), [1, 2], "expected a list of 3 values, each a number, got [1, 2]"),
        (JSONObject(), {"a": {"b": [1, math.inf]}}, "a.b[1]: expected a JSON value"),
        (JSONObject(), {"a": float("nan")}, "a: expected a JSON value"),
        (JSONObject(), {(1, 2): 0}, "(1, 2): expected a string key, got tuple (1, 2)"),
        (schema.NAME, "", "expected a non-empty string, got ''"),
        (schema.NAME, "../x", "expected a name of at most 128 letters, digits, '.', '_', '-' (it becomes a folder name), got"),
        (ENTRYPOINT, "pkg.mod", "expected 'package.module:function', got 'pkg.mod'"),
    ],
)
def test_each_constraint_says_what_it_expected_and_what_it_got(constraint, value, problem):
    assert constraint.problem(value).startswith(problem)


@pytest.mark.parametrize(
    ("constraint", "value"),
    [(Interval(Integral, 1), 10**400), (Interval(Real, 0, closed="neither"), 1e-300), (Options(("a",)), "a"),
     (ListOf(Interval(Real), length=3), (0.5, 1, 2)), (JSONObject(), {"a": [None, True, 1, 2.5, "s", {"b": []}]})],
)
def test_values_within_a_constraint_pass(constraint, value):
    assert constraint.allows(value)


def test_nesting_deeper_than_json_needs_is_refused_not_recursed_into():
    deep: dict = {}
    deep["self"] = deep  # a YAML anchor can make a mapping contain itself
    assert "nested deeper than 32 levels" in JSONObject().problem({"k": deep})


def test_registries_are_read_from_their_modules():
    from otce_ray.models.architectures import ARCHITECTURES
    from otce_ray.scoring.baselines import BASELINES

    assert MODEL.formats["builtin"].settings["architecture"].accepts.choices == tuple(ARCHITECTURES)
    assert SECTIONS["baselines"].settings["metrics"].accepts.item.choices == tuple(BASELINES)


@pytest.mark.parametrize(
    ("entrypoint", "allowed", "problem"),
    [
        ("zoo.fcn:build", None, None),
        ("zoo.fcn:build", ("zoo",), None),
        ("zoo.fcn:build", ("zoo.fcn",), None),
        ("zoo.fcn:build", ("zoo.fc",), "module 'zoo.fcn' is not under allowed_entrypoints (zoo.fc)"),
        ("zoology:build", ("zoo",), "module 'zoology' is not under allowed_entrypoints (zoo)"),
        ("zoo:build", (), "module 'zoo' is not under allowed_entrypoints (none allowed)"),
    ],
)
def test_entrypoint_allow_list_is_by_module_prefix(entrypoint, allowed, problem):
    assert entrypoint_problem(entrypoint, allowed) == problem


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", None, 3])
def test_every_path_into_a_store_or_output_refuses_unsafe_names(bad):
    for build in (lambda: model_uri("/s", bad, "m"), lambda: model_uri("/s", "ds", bad),
                  lambda: part_uri("/s", "ds", bad, "k", 0), lambda: manifest_uri("/s", bad, "m", "k"),
                  lambda: result_uri("/out", bad)):
        with pytest.raises(ValueError, match=re.escape(f"name {bad!r}: expected")):
            build()
    assert result_uri("/out", "unet_alpha-1.2") == "/out/results/unet_alpha-1.2.json"


def test_the_configs_otce_switch_defaults_to_the_engines():
    from otce_ray.scoring.settings import DEFAULT_STANDARDISE

    assert SECTIONS["otce"].default("standardise") is DEFAULT_STANDARDISE  # epsilon: null there, the engine's value
