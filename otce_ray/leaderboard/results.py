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
from typing import Any, Mapping

from otce_ray import fs
from otce_ray.schema import name_problem, require_name

STATUSES = ("ok", "failed")
RESULTS_DIR = "results"


@dataclass(frozen=True)
class ModelResult:
    """What one model's run produced: its repeat scores when ``ok``, its error when ``failed``."""

    model: str
    source: str  # the source dataset's name
    status: str = "ok"
    architecture: str | None = None
    scores: tuple[float, ...] = ()  # one OTCE score per repeat
    n_pixels: int | None = None
    solver: str | None = None
    epsilon: float | None = None
    max_marginal_error: float | None = None  # worst L1 marginal error over the repeats: large means unconverged
    extract_seconds: float | None = None
    score_seconds: float | None = None
    error: str | None = None
    fingerprint: str | None = None  # RunConfig.model_fingerprint: a rerun reuses the record only if it matches
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)  # baseline name -> value (NaN: none)
    # what the user should know about an ok (or failed) result: why a baseline is NaN, an unconverged repeat, ...
    # Records written before this field existed load with none.
    warnings: tuple[str, ...] = ()
    # repeats left out of ``scores``: their plan missed the tolerance even after the engine's remedies
    repeats_dropped: int = 0
    # why it ranks where it does (``otce_ray.leaderboard.explain``): per target class id, its share of the target
    # pixels and its contribution to H(Yt|Ys); and the label map P(yt | ys) the transport found
    per_class: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    label_map: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scores", tuple(float(s) for s in self.scores))
        object.__setattr__(self, "metrics", {str(k): float(v) for k, v in self.metrics.items()})
        if isinstance(self.warnings, str):
            raise ValueError(f"result for model {self.model!r}: warnings must be a list of strings, not one string")
        object.__setattr__(self, "warnings", tuple(str(w) for w in self.warnings or ()))  # null: none
        problem = name_problem(self.model)
        if problem:
            raise ValueError(f"result model name: {problem}")
        if self.status not in STATUSES:
            raise ValueError(f"result for model {self.model!r}: status {self.status!r} is not one of {STATUSES}")
        if self.status == "failed" and not self.error:
            raise ValueError(f"result for model {self.model!r}: a failed result needs its error")
        if self.status == "ok" and (len(self.scores) < 2 or not all(math.isfinite(s) for s in self.scores)):
            raise ValueError(
                f"result for model {self.model!r}: an ok result needs at least 2 finite repeat scores, "
                f"got {list(self.scores)}"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "ModelResult":
        """Rebuild a record; ``where`` (the file) is named in the error when the record is malformed."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
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
