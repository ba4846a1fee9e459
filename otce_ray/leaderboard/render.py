"""Human-readable leaderboards: a Markdown table and a self-contained interactive HTML page (inline SVG plot,
sortable and filterable table, a drill-down per model, the best source per target class).

Both show the same cells, formatted once here; the CSV and Parquet files keep the full-precision columns. A model's
warnings (the ``warnings`` column) are listed under the table as notes, one line per model, rather than as a cell.
"""

from __future__ import annotations

import html
import json
from typing import Any, Sequence

import pandas as pd

from otce_ray.leaderboard.columns import Column, board_columns, metric_columns, missing
from otce_ray.leaderboard.decisions import DecisionSummary, summarise
from otce_ray.leaderboard.decisions_view import decisions_html, decisions_markdown
from otce_ray.leaderboard.drilldown import ClassNames, best_sources, model_details
from otce_ray.leaderboard.page_script import SCRIPT, STYLE
from otce_ray.leaderboard.plot import scores_svg
from otce_ray.leaderboard.results import ModelResult

LEGEND = (
    "OTCE = -H(Yt|Ys): higher means the source model's features predict the target labels better, "
    "so it should transfer better. Models in one group are statistically indistinguishable: their 95% interval "
    "(t over the repeats) overlaps that of the group's best model."
)


def _columns(board: pd.DataFrame, markdown: bool = False) -> list[Column]:
    """The columns the tables show (those with a heading; in Markdown, less those kept off it), the board's metric
    columns after OTCE's own."""
    return [column for column in board_columns(metric_columns(board))
            if column.header and (column.markdown or not markdown)]


def _notes(board: pd.DataFrame) -> list[tuple[str, str]]:
    """(model, its warnings) for every row that has any."""
    return [(str(row.model), str(row.warnings)) for row in board.itertuples(index=False) if not missing(row.warnings)]


def _estimators(board: pd.DataFrame) -> str:
    """The line that names the estimator the scores come from (one per run; each distinct one if several)."""
    found = [str(value) for value in dict.fromkeys(board["estimator"]) if not missing(value)]
    return f"Estimator: {'; '.join(found)}." if found else ""


def _cells(board: pd.DataFrame, columns: list[Column]) -> list[list[str]]:
    return [[column.shown(row) for column in columns] for row in board.itertuples(index=False)]


def leaderboard_markdown(board: pd.DataFrame, title: str = "OTCE leaderboard",
                         decisions: DecisionSummary | None = None) -> str:
    """The table, the decision summary under it (``decisions``; default: ``summarise(board)``), then the notes."""
    def md(text: str) -> str:
        # Markdown renderers drop <...> as HTML: error texts such as "<degenerate>" must stay visible.
        return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")

    columns = _columns(board, markdown=True)
    lines = [f"# {title}", "", LEGEND, "", _estimators(board), "",
             "| " + " | ".join(column.header for column in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in _cells(board, columns)]
    lines += ["", *decisions_markdown(decisions or summarise(board))]
    notes = _notes(board)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {md(model)}: {md(text)}" for model, text in notes]
    return "\n".join(lines) + "\n"


_FILTERS = ("architecture", "source", "status")


def _row_class(row: Any, previous_group: Any) -> str:
    if row.status != "ok":
        return str(row.status)  # "failed" or "stopped"
    if missing(row.group):
        return "no-group"
    group = int(row.group)
    return f"band-{(group - 1) % 2}" + (" group-start" if group != previous_group else "")


def _model_button(name: str) -> str:
    """A model's name as the button that opens its drill-down."""
    return f'<button class="model" type="button">{html.escape(name)}</button>'


def _sort_value(value: Any) -> str:
    return "" if missing(value) else repr(float(value))


def _table_html(board: pd.DataFrame) -> str:
    """The table, its headers sort buttons, numeric cells carrying their full value (``data-v``) for sorting."""
    columns = _columns(board)
    headers = [column.header for column in columns]
    body_rows = []
    previous_group = None
    for row, cells in zip(board.itertuples(index=False), _cells(board, columns)):
        tds = []
        for column, cell in zip(columns, cells):
            if column.name == "model":
                tds.append(f"<td>{_model_button(cell)}</td>")
            elif column.numeric:
                tds.append(f'<td data-v="{_sort_value(column.sort_value(row))}">{html.escape(cell)}</td>')
            else:
                tds.append(f"<td>{html.escape(cell)}</td>")
        body_rows.append(f'<tr class="{_row_class(row, previous_group)}">{"".join(tds)}</tr>')
        previous_group = None if missing(row.group) else int(row.group)
    head = "".join(f'<th aria-sort="none"><button class="sort" type="button">{html.escape(h)}</button></th>'
                   for h in headers)
    names = [column.name for column in columns]
    where = " ".join(f'data-{key}-column="{names.index(key)}"' for key in ("model", *_FILTERS))
    return "\n".join([f'<div class="table-scroll"><table id="board" {where}><thead><tr>{head}</tr></thead><tbody>',
                      *body_rows, "</tbody></table></div>"])


def _controls(board: pd.DataFrame) -> str:
    """Name search, one select per filtered column (its distinct values), and how many rows are shown."""
    parts = ['<div class="controls"><label>Search <input id="f-search" type="search" placeholder="model name">'
             "</label>"]
    for key in _FILTERS:
        values = sorted({"" if missing(value) else str(value) for value in board[key]} - {""})
        options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
        parts.append(f'<label>{key.capitalize()} <select id="f-{key}"><option value="">all</option>{options}'
                     "</select></label>")
    parts.append(f'<span id="shown">{len(board)} of {len(board)} models</span></div>')
    return "".join(parts)


def _best_sources_html(results: Sequence[ModelResult], names: ClassNames | None) -> list[str]:
    rows = best_sources(results, names)
    if not rows:
        return []
    head = ("target class", "name", "share of target pixels", "best source model", "contribution (nats)",
            "per pixel of the class", "runner-up", "runner-up per pixel")
    cells = []
    for row in rows:
        runner_up = _model_button(row.runner_up) if row.runner_up else ""
        cells.append(
            f"<tr><td>{html.escape(row.class_id)}</td><td>{html.escape(row.class_name)}</td>"
            f"<td>{row.share:.1%}</td><td>{_model_button(row.model)}</td>"
            f"<td>{row.contribution:.4f}</td><td>{row.per_pixel:.4f}</td><td>{runner_up}</td>"
            f"<td>{'' if row.runner_up_per_pixel is None else format(row.runner_up_per_pixel, '.4f')}</td></tr>")
    return ["<h2>Best source per target class</h2>",
            "<p>For each target class, the scored model whose labels leave the least uncertainty about it: the "
            "lowest contribution to H(Yt|Ys) per pixel of the class (the mean -log P(yt | ys) over its pixels).</p>",
            '<table id="best-sources"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>", *cells, "</tbody></table>"]


_DRILLDOWN = ('<section id="drilldown" hidden><h2>Model <span class="drilldown-title"></span> '
              '<button class="close" type="button">close</button></h2><div class="charts"></div></section>')


def _json_block(element_id: str, data: Any) -> str:
    """Data for the script, safe inside HTML: ``</`` and ``<!--`` cannot end or open anything in the block."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def leaderboard_html(board: pd.DataFrame, results: Sequence[ModelResult] = (), class_names: ClassNames | None = None,
                     title: str = "OTCE leaderboard", decisions: DecisionSummary | None = None,
                     calibration: bool = False) -> str:
    """A single HTML file with no external references (style, script and data inline, plots as inline SVG): the
    decision summary (``decisions``; default: ``summarise(board)``; ``calibration``: link the calibration page),
    the interval plot, the table (sort by any column; filter by architecture, source and status; search by name), a
    drill-down per model from ``results``' per-class breakdowns and label maps (class names from ``class_names``),
    the best source per target class, and the notes."""
    notes = [f"<li><b>{html.escape(model)}</b>: {html.escape(text)}</li>" for model, text in _notes(board)]
    return html_page(
        title, STYLE, LEGEND, f"<p>{html.escape(_estimators(board))}</p>",
        *decisions_html(decisions or summarise(board), calibration), _controls(board), "<h2>Scores</h2>",
        scores_svg(board), "<h2>Table</h2>",
        "<p>Click a column to sort by it, a model to see why it ranks where it does.</p>", _table_html(board),
        _DRILLDOWN, *_best_sources_html(results, class_names),
        *(["<h2>Notes</h2>", "<ul>", *notes, "</ul>"] if notes else []),
        _json_block("otce-details", model_details(results, class_names)), f"<script>{SCRIPT}</script>")


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
