"""Every setting of a run config, a dataset spec and a model spec, declared once: what it accepts, its default, a line
of doc.

The config checker (``otce_ray.config``), the readers that library users call on their own
(``datasets.spec.normalize_spec``, ``models.ModelSpec.from_dict``), the settings dataclasses' defaults and the
README's config table are derived from these declarations, so they cannot disagree. As in scikit-learn's
``_param_validation``, a constraint is a small object that says whether a value is allowed and describes what is
(``str(Interval(Integral, 1))`` is "an integer >= 1"), and every error message is built from that description.

Checking is pure: :meth:`Constraint.check` returns every :class:`Problem` with its key path, never raises, and never
touches the network. The one impure step, resolving paths against the config's folder, is a callback that the
config passes in (``resolve``), applied only to values that passed their constraint.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Iterable, Mapping, Sequence

from otce_ray import fs

# --- problems and key paths --------------------------------------------------------------------------------------


class Index(int):
    """A list position in a key path (shown as ``[3]``), as opposed to a mapping key (shown as ``.key``)."""


Path = tuple[Any, ...]


def key_path(root: str, path: Path) -> str:
    """``models[3].source.format`` from root ``models`` and path ``(Index(3), 'source', 'format')``. A key that is
    not a plain word (``a.b``, a line break, a date) is shown by its repr, so the path stays one unambiguous line."""
    text = root
    for key in path:
        plain = isinstance(key, (str, int)) and re.fullmatch(r"[\w-]+", str(key), re.ASCII) is not None
        name = str(key) if plain else shown(key)
        text += f"[{key}]" if isinstance(key, Index) else (f".{name}" if text else name)
    return text


def quoted_path(path: Path) -> str:
    """A key path as a reader's message quotes it: ``'std'``, ``'kwargs'.note``."""
    return key_path(repr(path[0]), path[1:])


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a value, at ``path`` below the value checked. ``kind`` lets a reader phrase unknown and
    missing keys in its own words; ``first`` is where a duplicate was first seen (rendered as "first at ...")."""

    path: Path
    text: str
    kind: str = "invalid"  # or "unknown" (a key nobody declared) or "missing" (a required key)
    first: Path | None = None

    def within(self, *prefix: Any) -> "Problem":
        first = None if self.first is None else prefix + self.first
        return dataclasses.replace(self, path=prefix + self.path, first=first)

    def render(self) -> str:
        """``models[2].name: duplicate name 'unet' (first at models[0])``: the config's line for it."""
        where = key_path("", self.path) or "(top level)"
        first = f" (first at {key_path('', self.first)})" if self.first is not None else ""
        return f"{where}: {self.text}{first}"


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict = 80, 80, 40, 8, 6


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short when long (a message stays one readable line)."""
    return _REPR.repr(value)


def kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# A resolver maps a value that passed its Location constraint to (the value to keep, a problem text or None).
Resolver = Callable[["Location", str], "tuple[str, str | None]"]
Checked = tuple[Any, list[Problem]]

# --- constraints -------------------------------------------------------------------------------------------------


class Constraint(ABC):
    """What a setting accepts. ``str(constraint)`` describes it; :meth:`check` lists what is wrong with a value."""

    @abstractmethod
    def __str__(self) -> str: ...

    @abstractmethod
    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        """(the value, with paths resolved when ``resolve`` is given; every problem found, with its key path)."""

    def allows(self, value: Any) -> bool:
        return not self.check(value)[1]

    def problem(self, value: Any) -> str | None:
        """The first problem as one line (its text alone when it is about the value itself), or None."""
        problems = self.check(value)[1]
        if not problems:
            return None
        return problems[0].render() if problems[0].path else problems[0].text


class Scalar(Constraint):
    """A constraint on one value as a whole, described by ``str(self)`` in the one message it gives."""

    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool: ...

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if self.is_satisfied_by(value):
            return value, []
        return value, [Problem((), f"expected {self}, got {shown(value)}")]


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_finite_real(value: Any) -> bool:
    """A real number that is finite as a float (a huge int is not: it would overflow wherever it is used)."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


class Interval(Scalar):
    """An integer (``Integral``) or a finite number (``Real``) within bounds; ``closed`` says which bounds count."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, closed: str = "both"):
        assert kind in (Integral, Real) and closed in ("both", "left", "right", "neither")
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def is_satisfied_by(self, value: Any) -> bool:
        if not (_is_int(value) if self.kind is Integral else _is_finite_real(value)):
            return False
        low_ok = self.low is None or value > self.low or (value == self.low and self.closed in ("both", "left"))
        high_ok = self.high is None or value < self.high or (value == self.high and self.closed in ("both", "right"))
        return low_ok and high_ok

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if self.kind is Real and isinstance(value, Real) and not isinstance(value, bool) and not _is_finite_real(value):
            return value, [Problem((), f"expected a finite {str(self).removeprefix('a ')}, got {shown(value)}")]
        return super().check(value, resolve)

    def __str__(self) -> str:
        noun = "an integer" if self.kind is Integral else "a number"
        if self.low is not None and self.high is not None and self.closed == "both":
            return f"{noun} from {self.low} to {self.high}"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low}")
        if self.high is not None:
            bounds.append(f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high}")
        return " ".join([noun, " and ".join(bounds)]) if bounds else noun


class Options(Scalar):
    """One of a few strings. ``choices`` may be a function, for registries that live with heavy code (read lazily)."""

    def __init__(self, choices: Sequence[str] | Callable[[], Iterable[str]]):
        self._choices = choices

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._choices() if callable(self._choices) else self._choices)

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        value, problems = super().check(value, resolve)
        close = difflib.get_close_matches(value, self.choices, n=1) if problems and isinstance(value, str) else []
        if close:
            problems = [dataclasses.replace(problems[0], text=f"{problems[0].text} (did you mean {close[0]!r}?)")]
        return value, problems

    def __str__(self) -> str:
        return f"one of {', '.join(self.choices)}"


class Boolean(Scalar):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"


class Text(Scalar):
    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and bool(value.strip())

    def __str__(self) -> str:
        return "a non-empty string"


class Pattern(Scalar):
    """A string of a given form; ``description`` says which form, in the user's terms."""

    def __init__(self, regex: str, description: str):
        self.regex, self.description = re.compile(regex), description

    def is_satisfied_by(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    def __str__(self) -> str:
        return self.description


MAX_NAME = 128  # characters: a name is a file name on every store (255 bytes at most, less a temp-file suffix)


class Name(Pattern):
    """A model or dataset name: it becomes a folder or file name in stores and outputs, so only safe characters, and
    not so many that a file name built from it (``{name}.json.tmp-PID``) could exceed a filesystem's limit."""

    def __init__(self) -> None:
        super().__init__(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME - 1}}}",
                         f"a name of at most {MAX_NAME} letters, digits, '.', '_', '-' (it becomes a folder name)")

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not Text().is_satisfied_by(value):  # an empty name is told as such, not as a malformed one
            return Text().check(value)
        return super().check(value, resolve)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class Location(Text):
    """A local path (relative to the config's folder) or an ``s3://bucket/key`` URI. ``must_exist`` ('file' or
    'directory') is what the config's resolver checks for a local path; S3 URIs are checked for syntax only."""

    def __init__(self, must_exist: str | None = None):
        self.must_exist = must_exist

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        value, problems = super().check(value, resolve)
        if not problems and value.startswith("s3://"):
            bucket = value[len("s3://"):].split("/", 1)[0]
            if not _BUCKET.fullmatch(bucket) or ".." in bucket:
                problems = [Problem((), f"malformed S3 URI {value!r}: bucket {bucket!r} must be 3-63 lowercase "
                                        "letters, digits, '.', '-'")]
            elif fs.dot_segment(value):
                problems = [Problem((), fs.dot_segment(value))]
        if not problems and resolve is not None:
            value, text = resolve(self, value)
            problems = [Problem((), text)] if text else []
        return value, problems

    def __str__(self) -> str:
        return f"a local {self.must_exist or 'path'} or an s3:// URI"


class PretrainedLocation(Location):
    """A ``save_pretrained`` folder (local or s3://) or a Hub model ``hf://org/name[@revision]``. The Hub form is
    checked for syntax only: workers fetch it, where the Hub must be reachable."""

    HUB = re.compile(r"hf://[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?(@[\w./-]+)?")

    def __init__(self) -> None:
        super().__init__("directory")

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if isinstance(value, str) and value.startswith("hf://"):
            if self.HUB.fullmatch(value):
                return value, []
            return value, [Problem((), f"malformed Hub model {value!r}: expected hf://org/name[@revision]")]
        return super().check(value, resolve)

    def __str__(self) -> str:
        return "a local directory, an s3:// URI or hf://org/name[@revision]"


class ListOf(Constraint):
    """A list (or tuple) of items that each satisfy ``item``. A fixed ``length`` makes it one value (an RGB triple),
    reported whole; otherwise each bad item is reported at its index. ``unique`` names a key the items (mappings)
    must not share."""

    def __init__(self, item: Constraint, what: str = "items", length: int | None = None, min_length: int = 0,
                 unique: str | None = None):
        self.item, self.what, self.length, self.min_length, self.unique = item, what, length, min_length, unique

    def __str__(self) -> str:
        size = f"{self.length} " if self.length else ""
        return f"a {'non-empty ' if self.min_length else ''}list of {size}{self.what}, each {self.item}"

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        whole = [Problem((), f"expected {self}, got {shown(value)}")]
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            return value, whole
        if self.length is not None:
            fits = len(value) == self.length and all(self.item.allows(v) for v in value)
            return value, [] if fits else whole
        items, problems, first_seen = [], [], {}
        for index, entry in enumerate(value):
            entry, found = self.item.check(entry, resolve)
            items.append(entry)
            problems += [problem.within(Index(index)) for problem in found]
            key = entry.get(self.unique) if self.unique and isinstance(entry, Mapping) else None
            if isinstance(key, str) and key in first_seen:
                problems.append(Problem((Index(index), self.unique), f"duplicate {self.unique} {key!r}",
                                        first=(Index(first_seen[key]),)))
            elif isinstance(key, str):
                first_seen[key] = index
        return items, problems


class JSONObject(Constraint):
    """A mapping that JSON holds as it is (string keys; null, booleans, finite numbers, strings, lists, mappings):
    it is hashed into fingerprints and travels to workers, so a date or NaN must be refused here, not fail there."""

    max_depth = 32

    def __str__(self) -> str:
        return "a mapping of JSON values (string keys; null, true/false, finite numbers, strings, lists, mappings)"

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping):
            return value, [Problem((), f"expected {self}, got {kind(value)}")]
        return value, list(self._problems(value, self.max_depth))

    def _problems(self, value: Any, depth: int) -> Iterable[Problem]:
        if depth < 0:
            yield Problem((), f"nested deeper than {self.max_depth} levels")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    yield Problem((key,), f"expected a string key, got {kind(key)} {shown(key)}")
                yield from (problem.within(key) for problem in self._problems(item, depth - 1))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                yield from (problem.within(Index(index)) for problem in self._problems(item, depth - 1))
        elif not (value is None or isinstance(value, (bool, str)) or _is_int(value) or _is_finite_real(value)):
            yield Problem((), f"expected a JSON value (null, true/false, a finite number, a string, a list or a "
                              f"mapping), got {shown(value)}")


# --- settings and the mappings that hold them ---------------------------------------------------------------------


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Setting:
    """One key: what it accepts, its default (``REQUIRED`` when it has none), one line of doc for the README.

    A setting whose default is null accepts null (meaning: the default). ``shown_default`` is how the README shows a
    default whose value says little (null that means "auto"). ``content`` says whether the value decides what the
    spec yields (so it enters the spec's fingerprint) or only labels or places it; None: undeclared.
    """

    accepts: Constraint
    default: Any = REQUIRED
    doc: str = ""
    shown_default: str | None = None
    content: bool | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if value is None and self.default is None:
            return None, []
        return self.accepts.check(value, resolve)


def declared(accepts: Constraint, default: Any = REQUIRED, doc: str = "", shown_default: str | None = None) -> Any:
    """A settings-record field that declares its setting: ``n: int = declared(Interval(Integral, 1), 10, "...")``.

    The record (a frozen dataclass) is then the one declaration of its settings: ``fields_of`` derives the config
    section from it and ``check_record`` holds its values to it.
    """
    return dataclasses.field(default=default, metadata={"setting": Setting(accepts, default, doc, shown_default)})


def fields_of(record: type, rules: tuple["Rule", ...] = ()) -> "Fields":
    """The ``Fields`` a settings record declares with ``declared`` (a config section, a README table's rows)."""
    return Fields({field.name: field.metadata["setting"] for field in dataclasses.fields(record)
                   if "setting" in field.metadata}, rules)


def check_record(record: Any) -> None:
    """Hold a settings record's values to its declarations: a ValueError naming the first field that breaks one."""
    for name, setting in fields_of(type(record)).settings.items():
        _, problems = setting.check(getattr(record, name))
        if problems:
            raise ValueError(f"{name}: {problems[0].render() if problems[0].path else problems[0].text}")


@dataclass(frozen=True)
class Rule:
    """A constraint between keys of one mapping: ``test`` gets their values (defaults filled in) and returns a
    problem text, reported at the first key. It runs only when each of those keys is fine on its own."""

    keys: tuple[str, ...]
    test: Callable[..., "str | None"]


@dataclass(frozen=True)
class Fields(Constraint):
    """A mapping with declared keys: unknown keys, missing required keys and each value are checked."""

    settings: Mapping[str, Setting]
    rules: tuple[Rule, ...] = ()

    def __str__(self) -> str:
        return "a mapping"

    def default(self, key: str) -> Any:
        return self.settings[key].default

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping):
            return value, [Problem((), f"expected {self}, got {kind(value)}")]
        problems = [_unknown(key, self.settings) for key in value if key not in self.settings]
        problems += [Problem((key,), "missing required field", "missing")
                     for key, setting in self.settings.items() if setting.required and key not in value]
        checked = {}
        for key, item in value.items():
            checked[key], found = self.settings[key].check(item, resolve) if key in self.settings else (item, [])
            problems += [problem.within(key) for problem in found]
        troubled = {problem.path[0] for problem in problems if problem.path}
        for rule in self.rules:
            if troubled.isdisjoint(rule.keys):
                text = rule.test(*(checked.get(key, self.settings[key].default) for key in rule.keys))
                problems += [Problem((rule.keys[0],), text)] if text else []
        return checked, problems


PRESET = "preset"


@dataclass(frozen=True)
class WithPresets(Fields):
    """Fields with a ``preset`` key that names values to start from (``presets``, name -> values).

    The preset's values fill the mapping in before it is checked, so every rule sees them, and the checked mapping
    holds the expanded values without ``preset``. A key set both by the preset and explicitly is a problem (which
    one was meant cannot be told); a problem about a value that came from the preset says so.
    """

    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, fields: Fields, presets: Mapping[str, Mapping[str, Any]], doc: str) -> "WithPresets":
        preset = Setting(Options(tuple(presets)), None, doc, "none")
        return cls({PRESET: preset, **fields.settings}, fields.rules, presets)

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping):
            return super().check(value, resolve)
        name = value.get(PRESET)
        given = {key: item for key, item in value.items() if key != PRESET}
        problems = [problem.within(PRESET) for problem in self.settings[PRESET].check(name)[1]]
        if name is None or problems:
            checked, found = super().check(given, resolve)
            return checked, problems + found
        preset = self.presets[name]
        problems = [Problem((key,), f"set here and by preset {name!r} (which sets it to {shown(preset[key])}): "
                                    "keep one") for key in given if key in preset]
        checked, found = super().check({**preset, **given}, resolve)
        for problem in found:
            key = problem.path[0] if problem.path else None
            told = f" ({key} {shown(preset[key])} comes from preset {name!r})" if key in preset and key not in given \
                else ""
            problems.append(dataclasses.replace(problem, text=problem.text + told))
        return checked, problems


def _unknown(key: Any, settings: Mapping[str, Setting]) -> Problem:
    close = difflib.get_close_matches(str(key), list(settings), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(settings)}"
    return Problem((key,), f"unknown key ({hint})", "unknown")


@dataclass(frozen=True)
class ByFormat(Constraint):
    """A spec whose keys depend on its ``format``: ``common`` keys (``format`` among them) plus the format's own.

    With an unknown format only the common keys are checked and any format's key is let through, so the one real
    problem (the format) is not buried under keys that would be right for the intended format.
    """

    what: str
    common: Mapping[str, Setting]
    formats: Mapping[str, Fields]

    def __str__(self) -> str:
        return f"{self.what} (a mapping)"

    def fields(self, fmt: Any) -> Fields:
        """The keys of one format (the common keys alone for an unknown one)."""
        if isinstance(fmt, str) and fmt in self.formats:
            own = self.formats[fmt]
            return Fields({**self.common, **own.settings}, own.rules)
        return Fields(self.common)

    def keys(self) -> set[str]:
        """Every key any format accepts."""
        return set(self.common).union(*(own.settings for own in self.formats.values()))

    def always_required(self, key: str) -> bool:
        """Whether every spec needs ``key`` (else only the formats that declare it require it)."""
        return key in self.common and self.common[key].required

    def default(self, key: str) -> Any:
        """A key's default (the same in every format that declares it; tests hold the declarations to that)."""
        own = [fields.settings[key] for fields in self.formats.values() if key in fields.settings]
        return (self.common[key] if key in self.common else own[0]).default

    def requiring(self, key: str) -> "ByFormat":
        """The same spec with ``key`` (a common key) required."""
        common = {**self.common, key: dataclasses.replace(self.common[key], default=REQUIRED)}
        return dataclasses.replace(self, common=common)

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping):
            return value, [Problem((), f"expected {self}, got {kind(value)}")]
        fmt = value.get("format")
        fields = self.fields(fmt)
        if isinstance(fmt, str) and fmt in self.formats:
            return fields.check(value, resolve)
        passing = self.keys() - set(self.common)
        checked, problems = fields.check({k: v for k, v in value.items() if k not in passing}, resolve)
        return {**value, **checked}, problems


# --- names and entrypoints ----------------------------------------------------------------------------------------

NAME = Name()


def name_problem(value: Any) -> str | None:
    """Why a model or dataset name cannot be a folder or file name in a store or output, or None."""
    return NAME.problem(value)


def require_name(value: Any, what: str) -> str:
    """``value`` if it is a folder-safe name; else a ValueError naming it (every path into a store goes through)."""
    problem = name_problem(value)
    if problem:
        raise ValueError(f"{what} name {shown(value)}: {problem}")
    return value


# --- a reference table of settings ------------------------------------------------------------------------------------


def _shown_default(setting: Setting) -> str:
    value = setting.default
    if setting.shown_default is not None:
        return setting.shown_default
    if setting.required:
        return "required"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return f"`{value}`"
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _rows(fields: Fields, prefix: str = "") -> Iterable[tuple[str, Setting]]:
    for key, setting in fields.settings.items():
        if isinstance(setting.accepts, Fields):
            yield from _rows(setting.accepts, f"{prefix}{key}.")
            continue
        yield f"{prefix}{key}", setting
        if isinstance(setting.accepts, ListOf) and isinstance(setting.accepts.item, Fields):  # each item's keys
            yield from _rows(setting.accepts.item, f"{prefix}{key}[].")


def settings_table(fields: Fields) -> str:
    """A Markdown reference of ``fields``, one row per key (nested mappings as ``section.key``), from their
    declarations: what each accepts, its default, its doc."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | accepts | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{key}` | {cell(str(setting.accepts))} | {cell(_shown_default(setting))} | {cell(setting.doc)} |"
              for key, setting in _rows(fields)]
    return "\n".join(lines)

