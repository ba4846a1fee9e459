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
import importlib
import math
import re
import reprlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Iterable, Mapping, Sequence

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


def registry(module: str, name: str) -> Callable[[], tuple[str, ...]]:
    """The names of a registry (a dict or tuple in ``module``), imported only when first needed."""
    return lambda: tuple(getattr(importlib.import_module(module), name))


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


class Name(Pattern):
    """A model or dataset name: it becomes a folder or file name in stores and outputs, so only safe characters."""

    def __init__(self) -> None:
        super().__init__(r"[A-Za-z0-9][A-Za-z0-9._-]*", "a name of letters, digits, '.', '_', '-' (it becomes a "
                                                        "folder name)")

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


class LabelMap(Constraint):
    """Raw mask value -> class id. Class ids stop at 254 because 255 is the ignore id of every item's label."""

    raw, class_id = Interval(Integral, 0), Interval(Integral, 0, 254)

    def __str__(self) -> str:
        return "a non-empty mapping of raw mask value -> class id"

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if not isinstance(value, Mapping) or not value:
            return value, [Problem((), f"expected {self}, got {shown(value)}")]
        return value, [Problem((), f"entry {raw!r}: {class_id!r} must map a raw value >= 0 to a class id 0-254")
                       for raw, class_id in value.items()
                       if not (self.raw.allows(raw) and self.class_id.allows(class_id))]


# --- settings and the mappings that hold them ---------------------------------------------------------------------


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Setting:
    """One key: what it accepts, its default (``REQUIRED`` when it has none), one line of doc for the README.

    A setting whose default is null accepts null (meaning: the default). ``shown_default`` is how the README shows a
    default whose value says little (null that means "auto").
    """

    accepts: Constraint
    default: Any = REQUIRED
    doc: str = ""
    shown_default: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any, resolve: Resolver | None = None) -> Checked:
        if value is None and self.default is None:
            return None, []
        return self.accepts.check(value, resolve)


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


_MODULE = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
ENTRYPOINT = Pattern(_MODULE + r":[A-Za-z_]\w*", "'package.module:function'")
MODULE = Pattern(_MODULE, "a dotted module name such as 'mycompany.models'")


def entrypoint_problem(entrypoint: str, allowed: Sequence[str] | None) -> str | None:
    """Why a Python entrypoint is outside the allow-list of module prefixes (None: no restriction), or None.

    A module is allowed when it is one of the prefixes or inside one (``a.b`` allows ``a.b`` and ``a.b.c``, not
    ``a.bc``). The driver checks this when it reads the config; workers check it again before importing anything.
    """
    if allowed is None:
        return None
    module = entrypoint.split(":", 1)[0]
    if any(module == prefix or module.startswith(prefix + ".") for prefix in allowed):
        return None
    return f"module {module!r} is not under allowed_entrypoints ({', '.join(allowed) or 'none allowed'})"


# --- dataset specs ------------------------------------------------------------------------------------------------

DATASET_FORMATS = ("cityscapes", "bdd100k", "gta5", "folder")
ON_ERROR = ("raise", "skip")
_SPLIT = Setting(Text(), doc="the split folder, e.g. train")


def _ignore_index_not_mapped(ignore_index: int | None, label_map: Mapping) -> str | None:
    if ignore_index is not None and ignore_index in label_map:
        return f"raw value {ignore_index} is also a key of 'label_map'"
    return None


DATASET = ByFormat(
    what="a dataset spec",
    common={
        "name": Setting(NAME, doc="one name means one dataset: pixel stores are keyed by it"),
        "format": Setting(Options(DATASET_FORMATS), doc="the file layout"),
        "root": Setting(Location("directory"), doc="the dataset's folder, local or s3://"),
        "max_images": Setting(Interval(Integral, 1), None, "a seeded subset of this many images (it keeps its "
                                                             "images when max_images grows); null: every image"),
        "seed": Setting(Interval(Integral, 0), 0, "picks the max_images subset"),
        "on_error": Setting(Options(ON_ERROR), "raise", "skip: unreadable files are skipped, counted and reported"),
    },
    formats={
        "cityscapes": Fields({
            "split": _SPLIT,
            "cities": Setting(ListOf(Text(), "city names", min_length=1), None, "cities to read; null: every city"),
        }),
        "bdd100k": Fields({"split": _SPLIT}),
        "gta5": Fields({}),
        "folder": Fields({
            "label_map": Setting(LabelMap(), doc="raw mask value -> class id 0-254"),
            "ignore_index": Setting(Interval(Integral, 0), None, "a raw mask value that labels no class (ignored)"),
        }, rules=(Rule(("ignore_index", "label_map"), _ignore_index_not_mapped),)),
    },
)



def _shard_in_range(shard_index: int, num_shards: int) -> str | None:
    return f"{shard_index} is out of range for num_shards {num_shards}" if shard_index >= num_shards else None


# Set by the run on each shard's spec, never by a user: the dataset reader accepts them, a config does not.
SHARD = Fields({
    "shard_index": Setting(Interval(Integral, 0), doc="which shard of the dataset's images"),
    "num_shards": Setting(Interval(Integral, 1), doc="how many shards the images are dealt into"),
}, rules=(Rule(("shard_index", "num_shards"), _shard_in_range),))

# --- model specs --------------------------------------------------------------------------------------------------

MODEL_FORMATS = ("torchscript", "python", "builtin", "huggingface", "torchvision", "smp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHTS = {
    "checkpoint": Setting(Location("file"), None, "weights loaded into the network (a weights-only pickle, or "
                                                   ".safetensors)"),
    "allow_unsafe_pickle": Setting(Boolean(), False, "load a checkpoint that needs full unpickling (runs its code)"),
    "kwargs": Setting(JSONObject(), {}, "keyword arguments of the entrypoint or architecture"),
}
_NUM_CLASSES = Setting(Interval(Integral, 1), 19, "classes of the logits (19: Cityscapes train ids)")
_INIT_SEED = Setting(Interval(Integral, 0), 0, "seeds the random initialisation (without checkpoint)")
_DEFAULT_LAYER = Setting(Text(), None, "the module whose output is the feature map; null: the family's default, the "
                                       "decoder's last map before the classifier")


def _family(name: str) -> str:
    return f"otce_ray.models.families.{name}"

MODEL = ByFormat(
    what="a model spec",
    common={
        "name": Setting(NAME, doc="unique among the run's models"),
        "format": Setting(Options(MODEL_FORMATS), doc="how the network is built"),
        "source": Setting(DATASET, None, "the dataset the model was trained on (a dataset spec)"),
        "architecture": Setting(Text(), None, "shown on the leaderboard"),
        "mean": Setting(ListOf(Interval(Real), "values (R, G, B)", length=3), IMAGENET_MEAN,
                        "subtracted from RGB in [0, 1]"),
        "std": Setting(ListOf(Interval(Real, 0, closed="neither"), "values (R, G, B)", length=3), IMAGENET_STD,
                       "divides RGB in [0, 1] after the mean"),
        "size": Setting(ListOf(Interval(Integral, 1), "values ([height, width])", length=2), None,
                        "inputs are resized to it before the forward; null: as they are"),
        "autocast": Setting(Boolean(), True, "the forward runs under bf16 autocast on CUDA"),
    },
    formats={
        "torchscript": Fields({"path": Setting(Location("file"), doc="a scripted or traced module")}),
        "python": Fields({
            "entrypoint": Setting(ENTRYPOINT, doc="a function returning the nn.Module, called with kwargs"),
            "feature_layer": Setting(Text(), None, "the module whose output is the feature map (a forward hook)"),
            **_WEIGHTS,
        }),
        "builtin": Fields({
            "architecture": Setting(Options(registry("otce_ray.models.architectures", "ARCHITECTURES")),
                                    doc="a built-in network"),
            "num_classes": _NUM_CLASSES,
            "init_seed": _INIT_SEED,
            **_WEIGHTS,
        }),
        "huggingface": Fields({
            "path": Setting(PretrainedLocation(), doc="a save_pretrained folder (config.json, safetensors), or a "
                                                      "Hub model hf://org/name[@revision] where the Hub is reachable"),
            "feature_layer": _DEFAULT_LAYER,
        }),
        "torchvision": Fields({
            "architecture": Setting(Options(registry(_family("torchvision_seg"), "ARCHITECTURES")),
                                    doc="a torchvision.models.segmentation builder"),
            "num_classes": _NUM_CLASSES,
            "init_seed": _INIT_SEED,
            "feature_layer": _DEFAULT_LAYER,
            **_WEIGHTS,
        }),
        "smp": Fields({
            "architecture": Setting(Options(registry(_family("smp_seg"), "ARCHITECTURES")),
                                    doc="a segmentation_models_pytorch architecture"),
            "encoder": Setting(Text(), doc="its encoder, e.g. resnet34 or tu-convnext_tiny"),
            "num_classes": _NUM_CLASSES,
            "init_seed": _INIT_SEED,
            "feature_layer": _DEFAULT_LAYER,
            **_WEIGHTS,
        }),
    },
)

# --- the run config -----------------------------------------------------------------------------------------------

_AUTO = "auto"
OTCE = Fields({
    "n_pixels": Setting(Interval(Integral, 2), 10000, "pixels drawn per side for each repeat (the paper's N)"),
    "repeats": Setting(Interval(Integral, 2), 10, "K independent repeats (the 95% interval uses t with K-1 dof)"),
    "seed": Setting(Interval(Integral, 0), 0, "seeds pixel sampling at extraction and per repeat"),
    "solver": Setting(Options(registry("otce_ray.scoring.inputs", "SOLVERS")), "sinkhorn",
                      "`sinkhorn`: entropic OT; `emd`: exact OT"),
    "epsilon": Setting(Interval(Real, 0, closed="neither"), None,
                       "Sinkhorn regularisation, relative to the cost scale; null: the engine's default"),
    "cost_scale": Setting(Options(registry("otce_ray.scoring.cost_scale", "COST_SCALES")), None,
                          "what epsilon is relative to; null: the engine's default (`median`)"),
    "standardise": Setting(Boolean(), True, "z-score each side's features on its own before the cost (see the "
                                             "engine section)"),
})
EXTRACTION = Fields({
    "pixels_per_image": Setting(Interval(Integral, 1), 1000, "pixels kept per image in the pixel store"),
    "batch_size": Setting(Interval(Integral, 1), 8, "images per forward pass"),
    "num_gpus": Setting(Interval(Real, 0), None, "GPUs per extraction worker (fractions allowed). Auto: 1 if the "
                        "Ray cluster has a GPU when the run starts, else 0 (a laptop runs on CPU). Set it explicitly "
                        "on autoscaling clusters, which show no GPU before the first worker starts", _AUTO),
    "num_cpus": Setting(Interval(Real, 0, closed="neither"), 1.0, "CPUs per extraction worker (on GPU nodes, 2 or "
                        "more keep decoding ahead of a fast GPU)"),
    "num_shards": Setting(Interval(Integral, 1), None, "image shards per dataset (auto: about 32 images each)", _AUTO),
    "max_workers": Setting(Interval(Integral, 1), None, "extraction workers at most; auto: as many as the cluster "
                           "can run now, growing with it", _AUTO),
    "decode_threads": Setting(Interval(Integral, 1), None, "images decoded side by side, per worker, ahead of the "
                              "forward pass; auto: 4 on a GPU worker, 1 on a CPU one (whose forward needs the CPU)",
                              _AUTO),
})


def _cuda_needs_gpus(device: str, num_gpus: float | None) -> str | None:
    return "'cuda' needs scoring.num_gpus > 0 (or leave num_gpus unset)" if device == "cuda" and num_gpus == 0 else None


SCORING = Fields({
    "max_in_flight": Setting(Interval(Integral, 1), None, "repeat tasks in flight; auto: twice what the cluster "
                             "runs at once now", _AUTO),
    "num_gpus": Setting(Interval(Real, 0), None, "GPUs per repeat task; auto: 1 if the cluster has a GPU when the "
                        "run starts", _AUTO),
    "device": Setting(Options(("auto", "cpu", "cuda")), "auto", "where the repeats solve"),
}, rules=(Rule(("device", "num_gpus"), _cuda_needs_gpus),))
BASELINES = Fields({
    "metrics": Setting(ListOf(Options(registry("otce_ray.scoring.baselines", "BASELINES")), "metric names"), None,
                       "baseline metrics computed beside OTCE (`[]`: none)", "all"),
    "n_pixels": Setting(Interval(Integral, 2), 5000, "pixels sampled per side, one sample shared by all metrics"),
})
CLUSTER = Fields({
    "resource_wait_seconds": Setting(Interval(Real, 0, closed="neither"), 3600.0, "extraction that cannot start "
                                     "for lack of resources (no node can host a worker) fails its models after this "
                                     "long"),
    "stuck_task_seconds": Setting(Interval(Real, 0, closed="neither"), 900.0, "a Ray call running longer is "
                                  "reported (a warning, and in `run.json`), again each time its age doubles"),
})
SECTIONS = {"otce": OTCE, "extraction": EXTRACTION, "scoring": SCORING, "baselines": BASELINES, "cluster": CLUSTER}

# A run's model entries must say what they were trained on; a model spec alone need not.
MODEL_ENTRY = MODEL.requiring("source")
MODELS = ListOf(MODEL_ENTRY, "entries", min_length=1, unique="name")


def _one_model_list(models: Any, models_file: Any) -> str | None:
    if (models is None) == (models_file is None):
        return "give exactly one of models (an inline list) or models_file"
    return None


RUN = Fields({
    "store": Setting(Location(), doc="Parquet pixel stores, reused across runs"),
    "output": Setting(Location(), doc="leaderboard.{csv,parquet,md,html}, run.json, results/"),
    "target": Setting(DATASET, doc="the dataset the models are ranked for (see Dataset specs below)"),
    "models": Setting(MODELS, None, "the source models (see Model specs below); give this or `models_file`", "-"),
    "models_file": Setting(Location(), None, "a YAML file holding the models list (relative to this file)", "-"),
    "allowed_entrypoints": Setting(ListOf(MODULE, "module prefixes"), None, "when set, a `python` model's "
                                   "entrypoint module must be one of these or inside one (`a.b` allows `a.b.c`); "
                                   "null: any", "any"),
    **{name: Setting(section, None) for name, section in SECTIONS.items()},
}, rules=(Rule(("models", "models_file"), _one_model_list),))

# --- the README's config table ------------------------------------------------------------------------------------


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
        else:
            yield f"{prefix}{key}", setting


def config_table() -> str:
    """The README's config reference, one row per key of a run config, rendered from the declarations above."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | accepts | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{key}` | {cell(str(setting.accepts))} | {cell(_shown_default(setting))} | {cell(setting.doc)} |"
              for key, setting in _rows(RUN)]
    return "\n".join(lines)

