"""The evaluation's files: ``evaluation.csv``, one scatter PNG per metric, and a self-contained ``evaluation.html``.

The scatter plots use matplotlib's object API (no pyplot global state, no display), so reports can be written
from threads or Ray workers. The HTML embeds the PNGs as base64 data URIs: one file to mail or upload, no links.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re

import pandas as pd
from matplotlib.figure import Figure

from otce_ray.evaluation.evaluate import STATISTICS, evaluate, join_ground_truth
from otce_ray.leaderboard.render import html_page
from otce_ray.leaderboard.writers import csv_bytes, write_files

LEGEND = (
    "Each row asks how well a metric computed before fine-tuning predicts the fine-tuned ground truth over the "
    "models scored on the leaderboard (higher is better for every metric). Brackets: 95% percentile bootstrap "
    "interval over models (models resampled with replacement). Weighted Kendall: hyperbolic weights 1/(rank+1), so "
    "the top of the ranking counts most. Top-1 relative: ground truth of the metric's first model over the best "
    "ground truth (exp of the difference for log-likelihood), 1 = the metric picks the best model."
)
_HEADERS = {"pearson": "Pearson", "spearman": "Spearman", "kendall": "Kendall tau-b",
            "weighted_kendall": "weighted Kendall", "top1_relative": "top-1 relative"}


def scatter_name(metric: str) -> str:
    """File name of a metric's scatter plot (characters outside [A-Za-z0-9_.-] become '_')."""
    return f"scatter_{re.sub(r'[^A-Za-z0-9_.-]', '_', metric)}.png"


def _with_interval(row: pd.Series, name: str) -> str:
    value = row[name]
    if math.isnan(value):
        return "n/a"
    if math.isnan(row[f"{name}_low"]):
        return f"{value:.3f}"
    return f"{value:.3f} [{row[f'{name}_low']:.3f}, {row[f'{name}_high']:.3f}]"


def _table(evaluation: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    headers = ["metric", "models", *(_HEADERS[name] for name in STATISTICS), "note"]
    rows = [[str(row["metric"]), str(row["n_models"]), *(_with_interval(row, name) for name in STATISTICS),
             str(row["note"])] for _, row in evaluation.iterrows()]
    return headers, rows


def _measure(evaluation: pd.DataFrame) -> str:
    return str(evaluation["measure"].iloc[0]) if len(evaluation) else ""


def evaluation_markdown(evaluation: pd.DataFrame) -> str:
    """The table as Markdown, for the terminal and for docs."""
    headers, rows = _table(evaluation)
    lines = [f"Metrics vs ground truth `{_measure(evaluation)}`", "", "| " + " | ".join(headers) + " |",
             "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def scatter_png(merged: pd.DataFrame, row: pd.Series) -> bytes:
    """One metric against the ground truth, each point labelled with its model, Pearson and Kendall in the title."""
    metric, measure = str(row["metric"]), str(row["measure"])
    points = merged[["model", metric, measure]].dropna()
    figure = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.scatter(points[metric], points[measure], color="#1f4e9c", zorder=2)
    for model, x, y in points.itertuples(index=False):
        axes.annotate(str(model), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, color="#333")
    title = (f"{metric} vs {measure} ({row['n_models']} models)\n"
             f"Pearson {_with_interval(row, 'pearson')}, Kendall {_with_interval(row, 'kendall')}")
    axes.set_title(title + (f"\n{row['note']}" if row["note"] else ""), fontsize=10)
    axes.set_xlabel(f"{metric} (higher predicts better transfer)")
    axes.set_ylabel(f"{measure} after fine-tuning")
    axes.grid(alpha=0.3, zorder=0)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1.5em; }
th, td { border: 1px solid #c5d0e0; padding: 3px 7px; text-align: left; }
th { background: #dde6f3; }
figure { display: inline-block; margin: 0 1em 1em 0; }
"""


def evaluation_html(evaluation: pd.DataFrame, images: dict[str, bytes]) -> str:
    """A single HTML file: legend, table, and the scatter plots (``images`` by metric) as data URIs."""
    title = f"Transferability metrics vs {_measure(evaluation)}"
    headers, rows = _table(evaluation)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    figures = [f'<figure><img alt="{html.escape(metric)} scatter plot" '
               f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></figure>'
               for metric, png in images.items()]
    return html_page(title, STYLE, LEGEND, f"<table><thead><tr>{head}</tr></thead><tbody>", *body,
                     "</tbody></table>", *figures)


def write_report(out: str, evaluation: pd.DataFrame, merged: pd.DataFrame) -> list[str]:
    """Write evaluation.csv, scatter_<metric>.png per metric and evaluation.html under ``out``; returns the URIs.

    ``merged`` is ``join_ground_truth``'s frame (model, metric columns, measure) that ``evaluation`` was computed on.
    """
    images = {str(row["metric"]): scatter_png(merged, row) for _, row in evaluation.iterrows()}
    contents = {"evaluation.csv": csv_bytes(evaluation)}
    contents.update((scatter_name(metric), png) for metric, png in images.items())
    contents["evaluation.html"] = evaluation_html(evaluation, images).encode()
    return write_files(out, contents)


def evaluate_to(out: str, leaderboard: pd.DataFrame, ground_truth: pd.DataFrame, *,
                target_measure: str = "log_likelihood", metrics: list[str] | None = None,
                seed: int = 0) -> pd.DataFrame:
    """``evaluate`` the leaderboard against the ground truth and ``write_report`` it under ``out``."""
    options = {"target_measure": target_measure, "metrics": metrics}
    evaluation = evaluate(leaderboard, ground_truth, seed=seed, **options)
    write_report(out, evaluation, join_ground_truth(leaderboard, ground_truth, **options))
    return evaluation
