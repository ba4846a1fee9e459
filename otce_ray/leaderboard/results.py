"""Per-model result records under ``{output}/results/``: written as each model finishes, read back to resume.

One JSON object per model (``results/{model}.json``), written atomically through otce_ray.fs, so it works on S3
(which has no append) and a crash can lose at most the models still running. The leaderboard is rebuilt from these
records, never kept as the only copy of a result.
"""

from __future__ import annotations

import dataclasses
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from otce_ray import fs
from otce_ray.leaderboard.explain import breakdown
from otce_ray.schema import name_problem, require_name
from otce_ray.scoring.repeat import RepeatRecord
from otce_ray.scoring.settings import OTCESettings

STATUSES = ("ok", "stopped", "failed")  # stopped: a race stopped it before the final stage (``racing``)
SCORED = ("ok", "stopped")  # statuses with repeat scores
RESULTS_DIR = "results"
# The record's layout. A record of another version (or of none: written before versions) is never half-read: the
# plan rescores its model, as it does a damaged record. (``racing``, added since, defaults to empty: a version-3
# record written before it reads as it did.)
RESULT_VERSION = 3  # 3: params
WARNING_CHARS = 300  # a recorded warning is cut to this length, to stay readable in a leaderboard cell


@dataclass(frozen=True)
class ModelResult:
    """What one model's run produced: its repeat scores when ``ok``, its error when ``failed``. Build it from the
    model's repeat records with ``from_repeats``; a record file reads back through ``from_dict``."""

    model: str
    source: str  # the source dataset's name
    status: str = "ok"
    architecture: str | None = None
    scores: tuple[float, ...] = ()  # one OTCE score per converged repeat
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # OTCESettings.to_dict() it was scored under
    estimator: str | None = None  # those settings in words (OTCESettings.label)
    n_source: int | None = None  # pixels per side the repeats used (the fewest over them): n_pixels, or fewer when a
    n_target: int | None = None  # store holds fewer valid pixels
    max_marginal_error: float | None = None  # worst L1 marginal error over the repeats: large means unconverged
    extract_seconds: float | None = None
    score_seconds: float | None = None
    error: str | None = None
    fingerprint: str | None = None  # the plan's model fingerprint: a rerun reuses the record only if it matches
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)  # baseline name -> value (NaN: none)
    warnings: tuple[str, ...] = ()  # what the user should know: why a baseline is NaN, an unconverged repeat, ...
    # repeats left out of ``scores``: their plan missed the tolerance even after the engine's remedies
    repeats_dropped: int = 0
    # True when every repeat drew the same pixels (each store held no more than n_pixels valid pixels): the repeats
    # then agree exactly and say nothing about the score's uncertainty, so the leaderboard shows no interval
    identical_repeats: bool = False
    # why it ranks where it does (``otce_ray.leaderboard.explain``): per target class id, its share of the target
    # pixels and its contribution to H(Yt|Ys); and the label map P(yt | ys) the transport found
    per_class: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    label_map: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # parameters of the network as extraction loaded it (``LoadedModel.parameter_count``, kept in its stores'
    # manifests); None when no store recorded it (stores written before it was)
    params: int | None = None
    # a model a race stopped (status "stopped"): the stage it stopped at, of how many, its upper bound on the
    # full-budget score and the k-th best lower bound it fell below (``otce_ray.scoring.stopping``); its scores are
    # that stage's
    racing: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    version: int = RESULT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))
        object.__setattr__(self, "metrics", {str(k): float(v) for k, v in self.metrics.items()})
        if isinstance(self.warnings, str):
            raise ValueError(f"result for model {self.model!r}: warnings must be a list of strings, not one string")
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings or ()))  # null: none
        problem = name_problem(self.model)
        if problem:
            raise ValueError(f"result model name: {problem}")
        if self.version != RESULT_VERSION:
            raise ValueError(f"result for model {self.model!r}: record version {self.version!r}, this reader reads "
                             f"version {RESULT_VERSION}")
        if self.status not in STATUSES:
            raise ValueError(f"result for model {self.model!r}: status {self.status!r} is not one of {STATUSES}")
        if self.status == "failed" and not self.error:
            raise ValueError(f"result for model {self.model!r}: a failed result needs its error")
        if self.status in SCORED and (len(self.scores) < 2 or not all(math.isfinite(s) for s in self.scores)):
            raise ValueError(
                f"result for model {self.model!r}: an {self.status} result needs at least 2 finite repeat scores, "
                f"got {list(self.scores)}"
            )

    @classmethod
    def from_repeats(
        cls,
        *,
        model: str,
        source: str,
        settings: OTCESettings,
        records: Sequence[RepeatRecord],
        architecture: str | None = None,
        metrics: Mapping[str, float] | None = None,
        notes: Sequence[str] = (),
        error: str | None = None,
        **facts: Any,
    ) -> "ModelResult":
        """The result of a model from its repeat records (any order): ok with the converged repeats' scores and
        what they say, or failed with ``error`` (or because fewer than 2 repeats met the tolerance).

        ``notes`` are warnings from elsewhere (baselines, skipped files); ``facts`` are the remaining fields as they
        are (``fingerprint``, ``extract_seconds``). The warnings added here say why a repeat was dropped and when a
        store held fewer valid pixels than ``n_pixels``.
        """
        records = sorted(records, key=lambda record: record.repeat)
        used = [record for record in records if record.converged]
        told = [warning for record in records if (warning := record.warning(settings.solver))]
        sizes = {side: min((getattr(record, f"n_{side}") for record in records), default=None)
                 for side in ("source", "target")}
        told += [f"the {side} store holds {size} valid pixels, fewer than n_pixels {settings.n_pixels}: every repeat "
                 "used all of them" for side, size in sizes.items() if size is not None and size < settings.n_pixels]
        identical = len(used) > 1 and len({(record.n_source, record.n_target) for record in used}) == 1 and all(
            size is not None and size < settings.n_pixels for size in sizes.values())
        if identical:
            told.append(f"all {len(used)} repeats drew the same pixels (both stores hold fewer than n_pixels): their "
                        "scores agree exactly and give no interval")
        common = dict(model=model, source=source, architecture=architecture, settings=settings.to_dict(),
                      estimator=settings.label, n_source=sizes["source"], n_target=sizes["target"],
                      warnings=[note[:WARNING_CHARS] for note in (*told, *notes)], **facts)
        if error is None and len(used) < 2:
            error = (f"model {model!r}: only {len(used)} of {len(records)} repeats met the OT tolerance (at least 2 "
                     "are needed for a score and its interval); see its warnings")
        if error is not None:
            return cls(status="failed", error=error, **common)
        per_class, label_map = breakdown(used)
        return cls(status="ok", scores=[record.score for record in used], per_class=per_class, label_map=label_map,
                   repeats_dropped=len(records) - len(used), identical_repeats=identical,
                   max_marginal_error=max(record.marginal_error for record in used),
                   score_seconds=sum(record.seconds for record in records), metrics=metrics or {}, **common)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "ModelResult":
        """Rebuild a record; ``where`` (the file) is named in the error when the record is malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("version") != RESULT_VERSION:
            raise ValueError(f"{where}: written as record version {data.get('version', 'none (before versions)')}, "
                             f"this otce-ray reads version {RESULT_VERSION}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}") from None


def result_uri(output: str, model: str) -> str:
    """Where a model's record lives; a name that is not folder-safe (``../x``) is a ValueError, never a path."""
    return fs.join(output, RESULTS_DIR, f"{require_name(model, 'model')}.json")


def record_result(output: str, result: ModelResult) -> str:
    """Write (or replace) one model's record atomically; returns its URI."""
    uri = result_uri(output, result.model)
    fs.write_bytes_atomic(uri, result.to_json().encode())
    return uri


READ_THREADS = 16  # records read side by side: on S3 each is a round trip


def load_results(output: str, damaged: list[str] | None = None) -> list[ModelResult]:
    """Every record under ``{output}/results/``, sorted by model name; none yet gives an empty list.

    A record that cannot be read (truncated by a crash, edited by hand) raises a ValueError naming it, unless
    ``damaged`` is given: then its reason is appended there and the record left out, so that its model is simply
    scored again.
    """
    folder = fs.join(output, RESULTS_DIR)
    try:
        names = [name for name in fs.list_files(folder) if "/" not in name and name.endswith(".json")]
    except FileNotFoundError:
        return []

    def read(name: str) -> ModelResult | str:
        uri = fs.join(folder, name)
        try:
            return ModelResult.from_dict(json.loads(fs.read_bytes(uri)), uri)
        except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
            return f"{uri}: not a valid result record: {error}"

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        read_back = list(pool.map(read, names))
    problems = [entry for entry in read_back if isinstance(entry, str)]
    if problems and damaged is None:
        raise ValueError(problems[0])
    if damaged is not None:
        damaged.extend(problems)
    return sorted((entry for entry in read_back if isinstance(entry, ModelResult)), key=lambda r: r.model)
