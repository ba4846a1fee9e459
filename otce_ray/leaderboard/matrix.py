"""One zoo ranked for several targets (``targets:``): the model x target matrix, as ``matrix.csv`` and a heatmap page.

Scores of different targets are on different scales (each target's label entropy bounds its own), so the page colours
each column by the model's place between that target's worst and best finished score, and a row of its own names the
best model per target. The CSV keeps the scores themselves. A model a race stopped for a target, or that failed there,
has no score in that column (the page says which).
"""

from __future__ import annotations

import html
from typing import Mapping

import pandas as pd

from otce_ray.leaderboard.columns import missing
from otce_ray.leaderboard.render import html_page
from otce_ray.leaderboard.writers import csv_bytes, write_files

MATRIX_CSV = "matrix.csv"
MATRIX_HTML = "matrix.html"
IDENTITY = ("model", "architecture", "source")
LEGEND = ("OTCE of each model (rows) for each target (columns); higher is better. Colours compare models within a "
          "target: darkest is that target's best finished score, lightest its worst. The first row names each "
          "target's best model; each target's own leaderboard is in its folder.")


def model_matrix(boards: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per model (``model``, ``architecture``, ``source``), one column of OTCE per target (NaN where it did
    not finish), best mean rank over the targets first (models finished nowhere last, by name)."""
    identity = pd.concat([board[list(IDENTITY)] for board in boards.values()]).drop_duplicates("model")
    table = identity.set_index("model")
    ranks = pd.DataFrame(index=table.index)
    for target, board in boards.items():
        finished = board[board["status"] == "ok"].set_index("model")
        table[target] = finished["otce"].astype("float64")
        ranks[target] = finished["rank"].astype("float64")
    order = ranks.mean(axis=1).sort_values(na_position="last", kind="stable")
    table = table.loc[sorted(table.index, key=lambda name: (missing(order[name]), order[name], name))]
    return table.reset_index()[[*IDENTITY, *boards]]


def best_models(boards: Mapping[str, pd.DataFrame]) -> dict[str, str | None]:
    """Each target's best finished model (its rank 1), None where none finished."""
    best = {}
    for target, board in boards.items():
        first = board[board["rank"] == 1]
        best[target] = None if first.empty else str(first["model"].iloc[0])
    return best


def _cell(target: str, board: pd.DataFrame, model: str, low: float, high: float) -> str:
    rows = board[board["model"] == model]
    if rows.empty:
        return "<td></td>"
    row = rows.iloc[0]
    if row["status"] != "ok":
        stage = "" if missing(row["race_stage"]) else f" at stage {int(row['race_stage'])}"
        return f'<td class="{html.escape(str(row["status"]))}">{html.escape(str(row["status"]))}{stage}</td>'
    share = 1.0 if high == low else (row["otce"] - low) / (high - low)
    light = round(95 - 50 * share)  # lightness: 95% for the target's worst, 45% for its best
    ink = "#fff" if light < 65 else "#111"
    title = html.escape(f"{model} for {target}: rank {int(row['rank'])}")
    return (f'<td style="background:hsl(215,60%,{light}%);color:{ink}" title="{title}">'
            f"{row['otce']:.4f} <small>#{int(row['rank'])}</small></td>")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #111; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #c5d0e0; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th, td.name { text-align: left; }
tr.best td { font-weight: bold; background: #f6f8fb; text-align: left; }
td.stopped { color: #5b6270; background: #f4f5f7; }
td.failed { color: #7a1f1f; background: #fbeeee; }
"""


def matrix_html(boards: Mapping[str, pd.DataFrame]) -> str:
    """The heatmap page: the best model per target, then every model's score per target (see the module
    docstring)."""
    matrix = model_matrix(boards)
    best = best_models(boards)
    head = "".join(f'<th><a href="{html.escape(target)}/leaderboard.html">{html.escape(target)}</a></th>'
                   for target in boards)
    lines = ['<table id="matrix"><thead><tr><th>model</th><th>architecture</th><th>source</th>', head,
             "</tr></thead><tbody>",
             '<tr class="best"><td class="name">best model</td><td></td><td></td>'
             + "".join(f"<td>{html.escape(best[target] or '-')}</td>" for target in boards) + "</tr>"]
    for row in matrix.itertuples(index=False):
        cells = []
        for target, board in boards.items():
            scores = board.loc[board["status"] == "ok", "otce"]
            cells.append(_cell(target, board, row.model, scores.min(), scores.max()))
        identity = "".join(f'<td class="name">{"" if missing(value) else html.escape(str(value))}</td>'
                           for value in (row.model, row.architecture, row.source))
        lines.append(f"<tr>{identity}{''.join(cells)}</tr>")
    lines.append("</tbody></table>")
    return html_page("OTCE: models x targets", STYLE, LEGEND, *lines)


def write_matrix(output: str, boards: Mapping[str, pd.DataFrame]) -> list[str]:
    """Write ``matrix.csv`` and ``matrix.html`` under ``output`` (``boards``: target -> its leaderboard, in the
    run's target order); returns their URIs."""
    return write_files(output, {MATRIX_CSV: csv_bytes(model_matrix(boards)),
                                MATRIX_HTML: matrix_html(boards).encode()})
