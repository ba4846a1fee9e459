"""The leaderboard's columns, declared once: the CSV and Parquet files take their names and dtypes, the Markdown and
HTML tables their headings and cells, and the page its numeric sort, all from ``COLUMNS``.

The baseline metrics a run computed are columns too (``metric_column``), placed after OTCE's own (``board_columns``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pandas as pd


def missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Column:
    """One leaderboard column. ``dtype`` is nullable, so failed rows hold <NA> and every run writes the same Parquet
    schema. ``header`` is its heading in the Markdown and HTML tables (None: in the files only); its cell shows the
    value formatted by ``digits`` (None: as text), or what ``cell`` makes of the whole row. A numeric column sorts
    the page by its value (``sort_by``: another column's). Columns with ``markdown`` off are left out of the Markdown
    table only."""

    name: str
    dtype: str
    header: str | None = None
    digits: str | None = None
    cell: Callable[[Any], str] | None = None
    sort_by: str | None = None
    markdown: bool = True  # False: on the page but not in the Markdown table, which must stay readable

    @property
    def numeric(self) -> bool:
        return self.dtype in ("Int64", "float64")

    def shown(self, row: Any) -> str:
        """The cell of ``row`` (a namedtuple of a board row) in the Markdown and HTML tables."""
        if self.cell is not None:
            return self.cell(row)
        value = getattr(row, self.name)
        if missing(value):
            return ""
        return str(value) if self.digits is None else format(value, self.digits)

    def sort_value(self, row: Any) -> Any:
        return getattr(row, self.sort_by or self.name)


def _interval(row: Any) -> str:
    if missing(row.otce_ci_low):
        return ""
    return f"[{row.otce_ci_low:.4f}, {row.otce_ci_high:.4f}]"


def _status(row: Any) -> str:
    """A stopped model's status says where the race stopped it (``race_stage``, ``race_bound``)."""
    if row.status != "stopped" or missing(row.race_stage):
        return str(row.status)
    return f"stopped at stage {row.race_stage} (bound {row.race_bound:.4f})"


COLUMNS: tuple[Column, ...] = (
    Column("rank", "Int64", "rank"),
    Column("group", "Int64", "group"),
    Column("model", "string", "model"),
    Column("architecture", "string", "architecture"),
    Column("source", "string", "source"),
    Column("otce", "float64", "OTCE", ".4f"),
    Column("otce_ci_low", "float64", "95% interval", cell=_interval),
    Column("otce_ci_high", "float64"),
    # otce_ray.leaderboard.decisions: how sure the ranking is under the repeats' noise
    Column("p_best", "float64", "P(best)", ".3f"),
    Column("p_top_k", "float64", "P(top k)", ".3f"),
    Column("otce_std", "float64", "std", ".4f"),
    Column("otce_sem", "float64"),
    Column("consensus", "float64", "consensus", ".3f"),  # otce_ray.leaderboard.consensus, after the metrics
    Column("params", "Int64", "params", ",", markdown=False),  # parameters of the loaded network
    Column("prior", "float64", "prior", ".4g", markdown=False),  # the user's number for the model (its spec)
    Column("repeats", "Int64", "repeats"),
    Column("repeats_dropped", "Int64", "dropped"),
    Column("n_source", "Int64", "source pixels"),
    Column("n_target", "Int64", "target pixels"),
    Column("estimator", "string"),
    Column("max_marginal_error", "float64", "marginal error", ".1e"),
    Column("extract_seconds", "float64", "extract s", ".1f"),
    Column("score_seconds", "float64", "score s", ".1f"),
    Column("status", "string", "status", cell=_status),
    Column("error", "string", "error"),
    Column("warnings", "string"),
    # a model a race stopped: the stage, and its upper bound on the full-budget score (shown in its status cell)
    Column("race_stage", "Int64"),
    Column("race_bound", "float64"),
)
FIXED = tuple(column.name for column in COLUMNS)
METRICS_AFTER = "otce_sem"  # the baseline metrics' columns follow OTCE's own


def metric_column(name: str) -> Column:
    """The column of a baseline metric (``otce_ray.scoring.baselines.BASELINES``) a run computed."""
    return Column(name, "float64", name, ".4g")


def board_columns(metrics: Iterable[str]) -> list[Column]:
    """Every column of a board with these metric columns, in order."""
    split = FIXED.index(METRICS_AFTER) + 1
    return [*COLUMNS[:split], *map(metric_column, metrics), *COLUMNS[split:]]


def metric_columns(board: pd.DataFrame) -> list[str]:
    """The baseline metric columns of a leaderboard: every column beyond the fixed ones, in board order."""
    return [column for column in board.columns if column not in FIXED]
