"""A run's decision summary (``otce_ray.leaderboard.decisions.DecisionSummary``) in words and one table: the
Markdown section under the leaderboard table and the page's section near its top, with the same cells."""

from __future__ import annotations

import html
import math
from typing import Any

from otce_ray.leaderboard.decisions import REFERENCES, DecisionSummary

CALIBRATION_PAGE = "calibration.html"  # written next to the leaderboard by ``otce-ray calibrate``


def _number(value: Any, digits: str = ".2f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, digits)


def _sentences(summary: DecisionSummary) -> list[str]:
    """The recommendation, how sure the top is, and the models without repeat noise."""
    k = summary.top_k
    leaders = "; ".join(f"{row['model']} {row['p_best']:.0%} (top {k}: {row['p_top_k']:.0%})"
                        for row in summary.leaders)
    told = [summary.recommendation]
    if leaders:
        told.append(f"How sure is the top: the share of resamples in which a model is best (and in the top {k}): "
                    f"{leaders}.")
    if summary.point_masses:
        told.append(f"{', '.join(summary.point_masses)}: every repeat drew the same pixels, so there is no repeat "
                    "noise to resample (a point mass at the score).")
    return told


def _table(summary: DecisionSummary) -> tuple[list[str], list[list[str]]]:
    k = summary.top_k
    references = [name for name in REFERENCES if any(line["reference"] == name for line in summary.reference_lines)]
    headers = ["ordering", f"share of OTCE's top {k}", f"OTCE's best in its top {k}", "its best",
               *(f"Kendall vs {name}" for name in references)]
    rows = []
    for row in summary.by_ordering():
        held = row.get("otce_top1_in_top_k")
        rows.append([row["metric"], _number(row.get("top_k_overlap")), "" if held is None else "yes" if held else "NO",
                     row.get("top1", ""), *(_number(row.get(f"kendall_{name}")) for name in references)])
    return headers, rows


def _consensus_line(summary: DecisionSummary) -> str:
    return ("consensus: mean normalised rank over " + (", ".join(summary.consensus_of) or "no metric") +
            " (otce_ray/leaderboard/consensus.py).")


def decisions_markdown(summary: DecisionSummary) -> list[str]:
    """The Markdown lines of the summary (a section to put under the table)."""
    headers, rows = _table(summary)
    lines = ["## Decisions", "", *(line for sentence in _sentences(summary) for line in (sentence, "")),
             "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|",
             *("| " + " | ".join(row) + " |" for row in rows), ""]
    if summary.flags:
        lines += ["Flags:", "", *(f"- {flag}" for flag in summary.flags), ""]
    return lines + [_consensus_line(summary) + " Kendall vs params/prior: does the metric say more than the "
                    "model's size, or than what you already believed? " + summary.method]


def decisions_html(summary: DecisionSummary, calibration: bool = False) -> list[str]:
    """The page's section (``<section id="decisions">``); ``calibration``: link the calibration page beside it."""
    headers, rows = _table(summary)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    flags = "".join(f"<li>{html.escape(flag)}</li>" for flag in summary.flags)
    link = (f'<p id="calibration-link"><a href="{CALIBRATION_PAGE}">Calibration on your own data</a>: the metrics '
            "against fine-tuning a few of these models on your labelled target images.</p>") if calibration else ""
    return ['<section id="decisions"><h2>Decisions</h2>',
            *(f"<p>{html.escape(sentence)}</p>" for sentence in _sentences(summary)), link,
            f'<table id="agreement"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>',
            f'<ul class="flags">{flags}</ul>' if flags else "",
            f"<p>{html.escape(_consensus_line(summary))}</p>", f'<p class="method">{html.escape(summary.method)}</p>',
            "</section>"]
