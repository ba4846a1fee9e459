"""The run config: one YAML file in, frozen settings out, validated before any work starts.

What each key accepts is declared once, in :mod:`otce_ray.schema`; this module reads the YAML, checks it against
those declarations, resolves relative paths against the config file's folder (a relative path in a config on S3 stays
in its bucket), reads ``models_file``, and applies the rules that span a whole run: one dataset name means one
dataset, and Python entrypoints stay inside ``allowed_entrypoints``. Every problem is collected and raised together as
one :class:`ConfigError`, each line led by its key path (``models[3].source.format: ...``), so a user with a zoo of
hundreds of entries fixes everything in one pass. Validation never touches the network: S3 URIs are only checked for
syntax.

Dataset and model specs stay plain dicts as written (paths made absolute), which the readers take as they are.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from otce_ray import fs
from otce_ray.cluster.settings import SCORING_RULES, ClusterSettings, ScoringSettings
from otce_ray.datasets.spec import dataset_fingerprint
from otce_ray.extraction.settings import ExtractionSettings
from otce_ray.datasets.spec import DATASET
from otce_ray.models.families.python_entry import MODULE, entrypoint_problem
from otce_ray.models.spec import MODEL
from otce_ray.schema import (
    Fields,
    Index,
    ListOf,
    Location,
    Path,
    Problem,
    Resolver,
    Rule,
    Setting,
    WithPresets,
    fields_of,
    key_path,
    settings_table,
)
from otce_ray.leaderboard.decisions import DecisionSettings
from otce_ray.leaderboard.matrix import MATRIX_CSV, MATRIX_HTML
from otce_ray.scoring.baselines import BaselineSettings
from otce_ray.scoring.racing import RACING_RULES, RacingSettings
from otce_ray.scoring.settings import PRESET_DOC, PRESETS, SOLVER_RULE, OTCESettings, with_preset


class ConfigError(ValueError):
    """Every problem found in one run config, one line each, led by its key path."""

    def __init__(self, where: str, problems: list[str]):
        self.where = where
        self.problems = tuple(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"invalid run config {where} ({count}):\n" + "\n".join(f"  {p}" for p in problems))


# Each section is a settings record declared with its owner; the config checks a section against the declaration
# its record carries (``fields_of``) and builds the record from what passed.
SETTINGS = {"otce": OTCESettings, "extraction": ExtractionSettings, "scoring": ScoringSettings,
            "baselines": BaselineSettings, "cluster": ClusterSettings, "decisions": DecisionSettings}


def _leaderboard_repeats(repeats: int) -> str | None:
    return "a leaderboard needs at least 2 repeats (its interval uses t with K-1 dof)" if repeats < 2 else None


SECTIONS: dict[str, Fields] = {
    # ``preset`` (otce_ray.scoring.settings.PRESETS) fills the section in before it is checked
    "otce": WithPresets.of(fields_of(OTCESettings, (Rule(("repeats",), _leaderboard_repeats), SOLVER_RULE)),
                           PRESETS, PRESET_DOC),
    "extraction": fields_of(ExtractionSettings),
    "scoring": fields_of(ScoringSettings, SCORING_RULES),
    "baselines": fields_of(BaselineSettings),
    "cluster": fields_of(ClusterSettings),
    "decisions": fields_of(DecisionSettings),
}
# Off unless given (``racing: {}`` turns it on with the defaults), so it is built apart from the sections above.
RACING = fields_of(RacingSettings, RACING_RULES)

# A run's model entries must say what they were trained on; a model spec alone need not.
MODELS = ListOf(MODEL.requiring("source"), "entries", min_length=1, unique="name")


def _one_model_list(models: Any, models_file: Any) -> str | None:
    if (models is None) == (models_file is None):
        return "give exactly one of models (an inline list) or models_file"
    return None


def _one_target(target: Any, targets: Any) -> str | None:
    if (target is None) == (targets is None):
        return "give exactly one of target (one dataset) or targets (a list)"
    return None


MATRIX_FILES = (MATRIX_CSV, MATRIX_HTML)  # a run of several targets writes these beside the targets' folders


def _target_folders(targets: Any) -> str | None:
    taken = [spec["name"] for spec in targets or () if isinstance(spec, Mapping) and spec.get("name") in MATRIX_FILES]
    return f"a target named {taken[0]!r} would be a folder beside the file of that name" if taken else None


RUN = Fields({
    "store": Setting(Location(), doc="Parquet pixel stores, reused across runs"),
    "output": Setting(Location(), doc="leaderboard.{csv,parquet,md,html}, run.json, results/ (with `targets`: one "
                                      "such folder per target, and matrix.csv, matrix.html)"),
    "target": Setting(DATASET, None, "the dataset the models are ranked for (see Dataset specs below); give this or "
                                     "`targets`", "-"),
    "targets": Setting(ListOf(DATASET, "dataset specs", min_length=1, unique="name"), None,
                       "several datasets to rank the same models for, in one run: each model's source side is "
                       "extracted once for all of them; a leaderboard per target under `output/{name}/`, and the "
                       "model x target matrix", "-"),
    "models": Setting(MODELS, None, "the source models (see Model specs below); give this or `models_file`", "-"),
    "models_file": Setting(Location(), None, "a YAML file holding the models list (relative to this file)", "-"),
    "allowed_entrypoints": Setting(ListOf(MODULE, "module prefixes"), None, "when set, a `python` model's "
                                   "entrypoint module must be one of these or inside one (`a.b` allows `a.b.c`); "
                                   "null: any", "any"),
    **{name: Setting(section, None) for name, section in SECTIONS.items()},
    "racing": Setting(RACING, None, "stop the models that cannot reach the top k early (see Racing below); null: "
                                    "off, every model scored in full", "off"),
}, rules=(Rule(("models", "models_file"), _one_model_list), Rule(("target", "targets"), _one_target),
          Rule(("targets",), _target_folders)))


def config_table() -> str:
    """The README's config reference, one row per key of a run config, rendered from the declarations."""
    return settings_table(RUN)


@dataclass(frozen=True)
class RunConfig:
    """A validated run. Specs are plain dicts that readers consume as-is; treat them as read-only.

    ``allowed_entrypoints`` None: any Python entrypoint; else the module prefixes they must be under
    (``otce_ray.models.families.python_entry.entrypoint_problem``), checked here and again by the workers before
    they import one.
    """

    store: str
    output: str
    target: dict | None  # None when ``targets`` is given
    models: tuple[dict, ...]
    otce: OTCESettings = field(default_factory=OTCESettings)
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    baselines: BaselineSettings = field(default_factory=BaselineSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    decisions: DecisionSettings = field(default_factory=DecisionSettings)
    allowed_entrypoints: tuple[str, ...] | None = None
    config_path: str | None = None
    targets: tuple[dict, ...] = ()  # several targets (each its own leaderboard under output/{name}); else ``target``
    racing: RacingSettings | None = None  # None: every model scored in full

    def __post_init__(self) -> None:
        if self.allowed_entrypoints is not None:
            object.__setattr__(self, "allowed_entrypoints", tuple(self.allowed_entrypoints))
        object.__setattr__(self, "targets", tuple(self.targets))
        if (self.target is None) == (not self.targets):
            raise ValueError("a run config gives exactly one of target or targets")

    def per_target(self) -> dict[str, "RunConfig"]:
        """The run of each target, by name: a ``target:`` run is its own (its output as it is); each of ``targets:``
        is this run with that target, writing to ``output/{name}`` (a leaderboard, results, run.json of its own)."""
        if self.target is not None:
            return {self.target["name"]: self}
        return {spec["name"]: dataclasses.replace(self, target=spec, targets=(), output=fs.join(self.output,
                                                                                                spec["name"]))
                for spec in self.targets}

    def one_target(self, command: str) -> dict:
        """The target of a ``target:`` run; a ValueError saying so for a run of several (``command`` needs one)."""
        if self.target is None:
            raise ValueError(f"{command} works on one target, and this run config gives {len(self.targets)} "
                             "(targets): use a config with that one as its target")
        return self.target

    def to_dict(self) -> dict:
        """The resolved config as plain data (for run.json); parse_config accepts it back, less config_path."""
        data = dataclasses.asdict(self)
        data["models"] = list(data["models"])
        data["targets"] = list(data["targets"]) or None
        if self.racing is not None:
            data["racing"]["stages"] = list(data["racing"]["stages"])
        if self.baselines.metrics is not None:
            data["baselines"]["metrics"] = list(self.baselines.metrics)
        if self.allowed_entrypoints is not None:
            data["allowed_entrypoints"] = list(self.allowed_entrypoints)
        return data

    def model(self, name: str) -> dict:
        for spec in self.models:
            if spec["name"] == name:
                return spec
        raise KeyError(f"no model named {name!r} in the run config")


def load_config(path: str | os.PathLike, *, preset: str | None = None) -> RunConfig:
    """Read and validate a run config (local path or s3://); raise ConfigError listing every problem.

    ``preset`` (``otce-ray score --preset``) puts that OTCE preset in place of the estimator the file sets
    (``otce_ray.scoring.settings.with_preset``).
    """
    path = str(path)
    raw, problem = _read_yaml(path)
    if problem:
        raise ConfigError(path, [f"config: {problem}"])
    if preset is not None and isinstance(raw, Mapping):
        raw = {**raw, "otce": with_preset(raw.get("otce"), preset)}
    base_dir = posixpath.dirname(path) if fs.is_s3(path) else os.path.dirname(fs.resolve(path)[1])
    return parse_config(raw, base_dir=base_dir, config_path=path)


def as_config(config: RunConfig | Mapping[str, Any] | str | os.PathLike) -> RunConfig:
    """A run config from what a notebook has at hand: a ``RunConfig`` as it is, a mapping (the YAML's content,
    relative paths taken from the working directory) or the path of a YAML file (local or s3://)."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return parse_config(config, base_dir=os.getcwd())
    if isinstance(config, (str, os.PathLike)):
        return load_config(config)
    raise TypeError(f"expected a RunConfig, a mapping or a path, got {type(config).__name__}")


def parse_config(raw: Any, base_dir: str, config_path: str | None = None) -> RunConfig:
    """Validate already-parsed config data; relative paths (and models_file) are taken from base_dir."""
    resolve = _resolver(base_dir)
    checked, problems = RUN.check(raw, resolve)
    models: list[dict] = []
    if isinstance(checked, Mapping):
        models, root, found = _model_entries(checked, problems, resolve)
        problems += found
        problems += _dataset_name_clashes(checked, models, root, problems)
        problems += _entrypoints_outside(checked.get("allowed_entrypoints"), models, root, problems)
    if problems:
        order = {key: index for index, key in enumerate(raw)} if isinstance(raw, Mapping) else {}
        problems.sort(key=lambda problem: order.get(problem.path[0], -1) if problem.path else -1)  # as in the file
        raise ConfigError(config_path or "(given as data)", [problem.render() for problem in problems])
    sections = {name: cls(**(checked.get(name) or {})) for name, cls in SETTINGS.items()}
    racing = None if checked.get("racing") is None else RacingSettings(**checked["racing"])
    return RunConfig(store=checked["store"], output=checked["output"], target=checked.get("target"),
                     targets=tuple(checked.get("targets") or ()), models=tuple(models), racing=racing,
                     allowed_entrypoints=checked.get("allowed_entrypoints"), config_path=config_path, **sections)


# --- YAML -------------------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads 1e-3 as a float (YAML 1.2), not as a string."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key (a list): SafeLoader's own check below reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


MAX_YAML_VALUES = 100_000  # values a config may hold once its aliases are expanded: far beyond any real zoo's


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias in it is expanded (an alias re-uses its anchor's node,
    so a node is measured once: an alias bomb is measured in linear time, not expanded)."""
    if id(node) not in sizes:
        sizes[id(node)] = 0  # a node that contains itself (an anchor inside its own value) is counted once
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _read_yaml(path: str) -> tuple[Any, str | None]:
    """(data, None), or (None, why) when the file cannot be read or parsed, or its aliases expand beyond
    ``MAX_YAML_VALUES`` values (a "billion laughs" file would keep the checker busy for hours)."""
    try:
        text = fs.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return None, f"cannot read {path!r}: {error}"
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
            return None, (f"{path!r} expands to more than {MAX_YAML_VALUES:,} values through its YAML aliases (an "
                          "alias bomb?); write the repeated parts out or use fewer nested aliases")
        return (loader.construct_document(node) if node is not None else None), None
    except yaml.YAMLError as error:
        return None, f"{path!r} is not valid YAML: {_one_line(error)}"
    except RecursionError:
        return None, f"{path!r} nests deeper than YAML can be read"
    finally:
        loader.dispose()


def _one_line(error: yaml.YAMLError) -> str:
    """A YAML error as one line (PyYAML's own text spans several, quoting the source)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


# --- paths ------------------------------------------------------------------------------------------------------


def _locate(path: str, base_dir: str) -> tuple[str, str | None]:
    """A path as written in the config made absolute against the config's folder, or why it cannot be.

    S3 URIs stay as they are, and so do absolute local paths; in a config on S3 a relative path must stay inside the
    config's bucket (``../../other-bucket/x`` would read or write another bucket than the one the config lives in).
    """
    if fs.is_s3(path):
        return path, None
    if fs.is_s3(base_dir) and not os.path.isabs(path):
        bucket = base_dir[len("s3://"):].split("/", 1)[0]
        joined = posixpath.normpath(posixpath.join(base_dir[len("s3://"):], path))
        if joined.split("/", 1)[0] != bucket:
            return path, f"relative path {path!r} leaves the config's bucket {bucket!r}"
        return "s3://" + joined, None
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(path))), None


def _resolver(base_dir: str) -> Resolver:
    """The schema's Location callback: locate a path and check that a local file or directory that must exist
    does."""
    found = {"file": os.path.isfile, "directory": os.path.isdir}

    def resolve(location: Location, value: str) -> tuple[str, str | None]:
        resolved, problem = _locate(value, base_dir)
        if problem is None and location.must_exist and not fs.is_s3(resolved):
            if not found[location.must_exist](resolved):
                problem = f"no such {location.must_exist} {resolved!r}"
        return resolved, problem

    return resolve


# --- rules that span the run ------------------------------------------------------------------------------------


def _troubled(problems: list[Problem], path: Path) -> bool:
    """Whether anything at or below ``path`` already has a problem (rules then skip it, to report causes once)."""
    return any(problem.path[:len(path)] == path for problem in problems)


def _model_entries(checked: Mapping, problems: list[Problem], resolve: Resolver
                   ) -> tuple[list[dict], str, list[Problem]]:
    """(the model entries, the key they came from, problems in models_file); models_file is read here."""
    if checked.get("models") is not None or checked.get("models_file") is None or _troubled(problems, ("models_file",)):
        models = checked.get("models")
        return models if isinstance(models, list) else [], "models", []
    entries, problem = _read_yaml(checked["models_file"])
    if problem:
        return [], "models_file", [Problem(("models_file",), problem)]
    entries, found = MODELS.check(entries, resolve)
    return entries if isinstance(entries, list) else [], "models_file", [p.within("models_file") for p in found]


def _source_specs(checked: Mapping, models: list[dict], root: str) -> list[tuple[Path, Any]]:
    sources = [((root, Index(index), "source"), entry.get("source")) for index, entry in enumerate(models)
               if isinstance(entry, Mapping)]
    targets = checked.get("targets")
    targets = [(("targets", Index(index)), spec) for index, spec in enumerate(targets)] \
        if isinstance(targets, list) else [(("target",), checked.get("target"))]
    return targets + sources


def _dataset_name_clashes(checked: Mapping, models: list[dict], root: str, problems: list[Problem]) -> list[Problem]:
    """One name, one dataset: pixel stores are keyed by dataset name, so two specs under one name would mix."""
    first: dict[str, tuple[Path, str]] = {}
    clashes = []
    for path, spec in _source_specs(checked, models, root):
        if not isinstance(spec, Mapping) or _troubled(problems, path):
            continue
        fingerprint = dataset_fingerprint(spec)
        first_path, first_fingerprint = first.setdefault(spec["name"], (path, fingerprint))
        if first_fingerprint != fingerprint:
            clashes.append(Problem(path, f"dataset name {spec['name']!r} is already used by a different spec at "
                                         f"{key_path('', first_path)} (pixel stores are keyed by dataset name)"))
    return clashes


def _entrypoints_outside(allowed: Any, models: list[dict], root: str, problems: list[Problem]) -> list[Problem]:
    if allowed is None or _troubled(problems, ("allowed_entrypoints",)):
        return []
    outside = []
    for index, entry in enumerate(models):
        path = (root, Index(index), "entrypoint")
        if isinstance(entry, Mapping) and entry.get("format") == "python" and not _troubled(problems, path):
            text = entrypoint_problem(entry["entrypoint"], allowed)
            outside += [Problem(path, text)] if text else []
    return outside
