"""Write the leaderboard files and run.json to ``output`` (local folder or s3://), each file atomically."""

from __future__ import annotations

import datetime
import importlib.metadata
import io
import json
import platform
from typing import Any, Mapping, Sequence

import pandas as pd

from otce_ray import __version__, fs
from otce_ray.leaderboard.decisions import DecisionSummary, summarise
from otce_ray.leaderboard.decisions_view import CALIBRATION_PAGE
from otce_ray.leaderboard.drilldown import ClassNames
from otce_ray.leaderboard.render import leaderboard_html, leaderboard_markdown
from otce_ray.leaderboard.results import ModelResult

LEADERBOARD_FILES = ("leaderboard.csv", "leaderboard.parquet", "leaderboard.md", "leaderboard.html")
_DISTRIBUTIONS = {"ray": "ray", "torch": "torch", "pot": "POT"}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as the start of a formula


def csv_bytes(table: pd.DataFrame) -> bytes:
    """A table as CSV for people who open it in a spreadsheet: a text cell that would start a formula (a name or an
    error text starting with ``=``, ``+``, ``-``, ``@``) gets a leading ``'``, which spreadsheets show as text
    (the usual defence against CSV formula injection); numbers are written as they are."""
    safe = table.copy()
    for column in safe.columns:
        if pd.api.types.is_string_dtype(safe[column]) or safe[column].dtype == object:
            safe[column] = safe[column].map(
                lambda cell: "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell)
    return safe.to_csv(index=False).encode()


def _parquet_bytes(board: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    board.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_leaderboard(output: str, board: pd.DataFrame, results: Sequence[ModelResult] = (),
                      class_names: ClassNames | None = None, decisions: DecisionSummary | None = None) -> list[str]:
    """Write leaderboard.{csv,parquet,md,html} under ``output``; returns the URIs written. The page's drill-down per
    model and best source per target class come from ``results`` (their per-class records), named by
    ``class_names``; the Markdown and the page show ``decisions`` (default: ``summarise(board)``), and the page links
    the calibration page when ``output`` holds one."""
    decisions = decisions or summarise(board)
    calibrated = fs.exists(fs.join(output, CALIBRATION_PAGE))
    contents = {
        "leaderboard.csv": csv_bytes(board),
        "leaderboard.parquet": _parquet_bytes(board),
        "leaderboard.md": leaderboard_markdown(board, decisions=decisions).encode(),
        "leaderboard.html": leaderboard_html(board, results, class_names, decisions=decisions,
                                             calibration=calibrated).encode(),
    }
    return write_files(output, {name: contents[name] for name in LEADERBOARD_FILES})


def write_files(folder: str, contents: Mapping[str, bytes]) -> list[str]:
    """Write each ``name -> bytes`` of ``contents`` under ``folder``, atomically, in order; returns the URIs."""
    uris = []
    for name, data in contents.items():
        uri = fs.join(folder, name)
        fs.write_bytes_atomic(uri, data)
        uris.append(uri)
    return uris


def write_per_class(output: str, table: pd.DataFrame) -> str:
    """Write ``per_class.csv`` (``otce_ray.leaderboard.explain.per_class_table``) under ``output``."""
    uri = fs.join(output, "per_class.csv")
    fs.write_bytes_atomic(uri, csv_bytes(table))
    return uri


def versions() -> dict[str, str | None]:
    """Versions that make a run reproducible: otce-ray, Python and the numerical stack (None if not installed)."""
    found: dict[str, str | None] = {"otce-ray": __version__, "python": platform.python_version()}
    for key, distribution in _DISTRIBUTIONS.items():
        try:
            found[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            found[key] = None
    return found


def write_run_json(
    output: str,
    config: Mapping[str, Any],
    timings: Mapping[str, float],
    warnings: Mapping[str, Sequence[str]] | None = None,
    **sections: Any,
) -> str:
    """Write run.json: the resolved config (RunConfig.to_dict()), versions, timings, each model's warnings (only the
    models that have any), any further ``sections`` (the run plan, where extraction time went, what the dispatch
    loop saw) and when it was written."""
    record = {
        "config": dict(config),
        "versions": versions(),
        "timings": dict(timings),
        "warnings": {model: list(notes) for model, notes in (warnings or {}).items() if notes},
        **sections,
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    uri = fs.join(output, "run.json")
    fs.write_bytes_atomic(uri, json.dumps(record, indent=2, default=str).encode())
    return uri
