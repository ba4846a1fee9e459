"""The scores with their 95% intervals as inline SVG, indistinguishable groups shaded as bands.

Hand-written SVG keeps the HTML self-contained (no image files, no plotting dependency). It stays readable for
hundreds of models: one labelled row per model in a box that scrolls under a fixed axis (with tick lines through
every row, so a value can be read anywhere), long names shortened (the full name is the row's tooltip). Each row is
one ``<g class="plot-row">`` at its own offset, so the page's filters can hide rows and stack the rest.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

ROW = 20
_AXIS = 30
_WIDTH = 860
_PLOT_LEFT_MIN = 120
_CHAR = 7  # approximate width of one 12 px label character
_LABEL_CHARS = 40  # longer names are shortened on the plot
_BANDS = ("#eef3fb", "#ffffff")
CAPTION = "OTCE = -H(Yt|Ys), higher is better; bars: 95% interval; bands: indistinguishable groups"


def _ticks(low: float, high: float, target: int = 5) -> tuple[list[float], int]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) inside [low, high], and their decimals."""
    raw = (high - low) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [first + i * step for i in range(count)], max(0, -math.floor(math.log10(step)))


def _label(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[:_LABEL_CHARS - 1] + "\u2026"


def scores_svg(board: pd.DataFrame) -> str:
    """The plot for the scored rows of a leaderboard frame (failed rows are in the table only): an axis, the rows in
    a scrolling box, the axis again with the caption."""
    scored = board[board["status"] == "ok"]
    if scored.empty:
        return '<svg width="400" height="30" role="img"><text x="4" y="20">no scored models</text></svg>'
    rows = list(scored.itertuples(index=False))
    left = max(_PLOT_LEFT_MIN, _CHAR * max(len(_label(str(r.model))) for r in rows) + 16)
    right = _WIDTH - 48
    # a model without an interval (its repeats drew the same pixels) is drawn as its point alone
    low = float(np.fmin(scored["otce_ci_low"].astype(float), scored["otce"]).min())
    high = float(np.fmax(scored["otce_ci_high"].astype(float), scored["otce"]).max())
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-6)
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    ticks, decimals = _ticks(low, high)
    grid = "".join(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="0" y2="{ROW}" stroke="#d6dde8"/>' for t in ticks)
    parts = [f'<svg class="plot-rows" data-row="{ROW}" width="{_WIDTH}" height="{ROW * len(rows)}" role="img" '
             'font-family="sans-serif" font-size="12">',
             "<title>OTCE score per model with its 95% interval</title>"]
    previous_group = None
    for i, row in enumerate(rows):
        grouped = not pd.isna(row.group)
        group = int(row.group) if grouped else None
        name = str(row.model)
        mid = ROW / 2
        interval = "" if pd.isna(row.otce_ci_low) else f" [{row.otce_ci_low:.4f}, {row.otce_ci_high:.4f}]"
        parts.append(f'<g class="plot-row" data-model="{html.escape(name)}" transform="translate(0,{ROW * i})">'
                     f"<title>{html.escape(name)}: {row.otce:.4f}{interval}, "
                     f"{f'group {group}' if grouped else 'no interval, no group'}, P(best) {row.p_best:.3f}</title>"
                     f'<rect x="0" y="0" width="{_WIDTH}" height="{ROW}" fill="{_BANDS[((group or 1) - 1) % 2]}"/>'
                     f"{grid}"
                     + (f'<line x1="0" x2="{_WIDTH}" y1="0" y2="0" stroke="#8fa3c4"/>'
                        f'<text x="{_WIDTH - 6}" y="14" text-anchor="end" fill="#4a5a78">G{group}</text>'
                        if grouped and group != previous_group else "")
                     + f'<text x="{left - 8}" y="{mid + 4}" text-anchor="end">{html.escape(_label(name))}</text>'
                     + (f'<line x1="{x(row.otce_ci_low):.1f}" x2="{x(row.otce_ci_high):.1f}" y1="{mid}" y2="{mid}" '
                        'stroke="#1f4e9c" stroke-width="2"/>' if interval else "")
                     + f'<circle cx="{x(row.otce):.1f}" cy="{mid}" r="4" fill="#1f4e9c"/></g>')
        previous_group = group if grouped else previous_group
    parts.append("</svg>")
    return "\n".join([_axis(ticks, decimals, x, left, right, top=True),
                      '<div class="plot-scroll">', *parts, "</div>",
                      _axis(ticks, decimals, x, left, right, top=False)])


def _axis(ticks: list[float], decimals: int, x, left: float, right: float, top: bool) -> str:
    """The value axis, above the rows (ticks pointing down) or below them (ticks up, with the caption)."""
    height = _AXIS if top else _AXIS + 20
    base = _AXIS - 1 if top else 1
    tick_end = base + (5 if not top else -5)
    label_y = base - 9 if top else base + 18
    parts = [f'<svg class="plot-axis" width="{_WIDTH}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<line x1="{left}" x2="{right}" y1="{base}" y2="{base}" stroke="#333"/>']
    for tick in ticks:
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{base}" y2="{tick_end}" stroke="#333"/>'
                     f'<text x="{x(tick):.1f}" y="{label_y}" text-anchor="middle">{tick:.{decimals}f}</text>')
    if not top:
        parts.append(f'<text x="{(left + right) / 2}" y="{base + 38}" text-anchor="middle">{CAPTION}</text>')
    parts.append("</svg>")
    return "".join(parts)
