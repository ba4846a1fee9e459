"""Human-readable leaderboards: a Markdown table and a self-contained HTML page (table + inline SVG plot).

Both show the same cells, formatted once here; the CSV and Parquet files keep the full-precision columns. A model's
warnings (the ``warnings`` column) are listed under the table as notes, one line per model, rather than as a cell.
"""

from __future__ import annotations

import html
import math
from typing import Any, Callable

import pandas as pd

from otce_ray.leaderboard.plot import scores_svg
from otce_ray.leaderboard.table import metric_columns

LEGEND = (
    "OTCE = -H(Yt|Ys): higher means the source model's features predict the target labels better, "
    "so it should transfer better. Models in one group are statistically indistinguishable: their 95% interval "
    "(t over the repeats) overlaps that of the group's best model."
)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _number(digits: str) -> Callable[[Any], str]:
    return lambda value: "" if _missing(value) else format(value, digits)


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def _interval(row: Any) -> str:
    if _missing(row.otce_ci_low):
        return ""
    return f"[{row.otce_ci_low:.4f}, {row.otce_ci_high:.4f}]"


_CELLS: tuple[tuple[str, Callable[[Any], str]], ...] = (
    ("rank", lambda r: _text(r.rank)),
    ("group", lambda r: _text(r.group)),
    ("model", lambda r: _text(r.model)),
    ("architecture", lambda r: _text(r.architecture)),
    ("source", lambda r: _text(r.source)),
    ("OTCE", lambda r: _number(".4f")(r.otce)),
    ("95% interval", _interval),
    ("std", lambda r: _number(".4f")(r.otce_std)),
    ("repeats", lambda r: _text(r.repeats)),
    ("dropped", lambda r: _text(getattr(r, "repeats_dropped", None))),  # absent from boards written before it
    ("pixels", lambda r: _text(r.n_pixels)),
    ("solver", lambda r: _text(r.solver)),
    ("epsilon", lambda r: _number("g")(r.epsilon)),
    ("marginal error", lambda r: _number(".1e")(r.max_marginal_error)),
    ("extract s", lambda r: _number(".1f")(r.extract_seconds)),
    ("score s", lambda r: _number(".1f")(r.score_seconds)),
    ("status", lambda r: _text(r.status)),
    ("error", lambda r: _text(r.error)),
)


def _columns(board: pd.DataFrame) -> list[tuple[str, Callable[[Any], str]]]:
    """The fixed cells, then one per baseline metric column the board carries (after OTCE's own)."""
    extra = [(name, lambda r, name=name: _number(".4g")(getattr(r, name))) for name in metric_columns(board)]
    split = [header for header, _ in _CELLS].index("repeats")
    return [*_CELLS[:split], *extra, *_CELLS[split:]]


def _notes(board: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, its warnings) for every row that has any; a board without the column (an old CSV) has none."""
    return [(str(row.model), str(row.warnings)) for row in board.itertuples(index=False)
            if not _missing(getattr(row, "warnings", None))]


def _cells(board: pd.DataFrame, columns: list[tuple[str, Callable[[Any], str]]]) -> list[list[str]]:
    return [[cell(row) for _, cell in columns] for row in board.itertuples(index=False)]


def leaderboard_markdown(board: pd.DataFrame, title: str = "OTCE leaderboard") -> str:
    def md(text: str) -> str:
        # Markdown renderers drop <...> as HTML: error texts such as "<degenerate>" must stay visible.
        return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")

    columns = _columns(board)
    lines = [f"# {title}", "", LEGEND, "", "| " + " | ".join(h for h, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in _cells(board, columns)]
    notes = _notes(board)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {md(model)}: {md(text)}" for model, text in notes]
    return "\n".join(lines) + "\n"


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #c5d0e0; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #dde6f3; }
tr.band-0 td { background: #eef3fb; }
tr.band-1 td { background: #ffffff; }
tr.group-start td { border-top: 3px solid #1f4e9c; }
tr.failed td { background: #fbeeee; color: #7a1f1f; }
"""


def _row_class(row: Any, previous_group: Any) -> str:
    if row.status != "ok":
        return "failed"
    group = int(row.group)
    return f"band-{(group - 1) % 2}" + (" group-start" if group != previous_group else "")


def leaderboard_html(board: pd.DataFrame, title: str = "OTCE leaderboard") -> str:
    """A single HTML file with no external references: styles inline, plot as inline SVG."""
    columns = _columns(board)
    body_rows = []
    previous_group = None
    for row, cells in zip(board.itertuples(index=False), _cells(board, columns)):
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        body_rows.append(f'<tr class="{_row_class(row, previous_group)}">{tds}</tr>')
        previous_group = None if _missing(row.group) else int(row.group)
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _ in columns)
    notes = [f"<li><b>{html.escape(model)}</b>: {html.escape(text)}</li>" for model, text in _notes(board)]
    return html_page(title, _STYLE, LEGEND, scores_svg(board), f"<table><thead><tr>{head}</tr></thead><tbody>",
                     *body_rows, "</tbody></table>", *(["<h2>Notes</h2>", "<ul>", *notes, "</ul>"] if notes else []))


def html_page(title: str, style: str, legend: str, *body: str) -> str:
    """A self-contained HTML document: inline style, the title as heading, a legend paragraph, then ``body``."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(legend)}</p>",
        *body,
        "</body></html>",
    ]) + "\n"
