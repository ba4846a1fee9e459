"""An inline SVG of the scores with their 95% intervals, indistinguishable groups shaded as bands.

Hand-written SVG keeps the HTML self-contained (no image files, no scripts, no plotting dependency) and stays
legible for hundreds of models: one row per model, so the height grows with the zoo.
"""

from __future__ import annotations

import html
import math

import pandas as pd

_ROW = 20
_TOP = 14
_AXIS = 46
_WIDTH = 860
_PLOT_LEFT_MIN = 120
_CHAR = 7  # approximate width of one 12 px label character
_BANDS = ("#eef3fb", "#ffffff")


def _ticks(low: float, high: float, target: int = 5) -> tuple[list[float], int]:
    """Round tick values (steps of 1, 2 or 5 times a power of ten) inside [low, high], and their decimals."""
    raw = (high - low) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [first + i * step for i in range(count)], max(0, -math.floor(math.log10(step)))


def scores_svg(board: pd.DataFrame) -> str:
    """The plot for the scored rows of a leaderboard frame (failed rows are in the table only)."""
    scored = board[board["status"] == "ok"]
    if scored.empty:
        return '<svg width="400" height="30" role="img"><text x="4" y="20">no scored models</text></svg>'
    left = max(_PLOT_LEFT_MIN, _CHAR * int(scored["model"].str.len().max()) + 16)
    right = _WIDTH - 48
    low, high = float(scored["otce_ci_low"].min()), float(scored["otce_ci_high"].max())
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-6)
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * (right - left)

    height = _TOP + _ROW * len(scored) + _AXIS
    parts = [f'<svg width="{_WIDTH}" height="{height}" role="img" font-family="sans-serif" font-size="12">',
             "<title>OTCE score per model with its 95% interval</title>"]
    rows = list(scored.itertuples(index=False))
    for group in sorted({int(r.group) for r in rows}):
        members = [i for i, r in enumerate(rows) if int(r.group) == group]
        top = _TOP + _ROW * members[0]
        parts.append(f'<rect x="0" y="{top}" width="{_WIDTH}" height="{_ROW * len(members)}" '
                     f'fill="{_BANDS[(group - 1) % 2]}" stroke="#c5d0e0"/>')
        parts.append(f'<text x="{_WIDTH - 6}" y="{top + 14}" text-anchor="end" fill="#4a5a78">G{group}</text>')
    for i, row in enumerate(rows):
        y = _TOP + _ROW * i + _ROW / 2
        parts.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{html.escape(str(row.model))}</text>')
        parts.append(f'<line x1="{x(row.otce_ci_low):.1f}" x2="{x(row.otce_ci_high):.1f}" y1="{y}" y2="{y}" '
                     'stroke="#1f4e9c" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(row.otce):.1f}" cy="{y}" r="4" fill="#1f4e9c"/>')
    axis_y = _TOP + _ROW * len(rows)
    parts.append(f'<line x1="{left}" x2="{right}" y1="{axis_y}" y2="{axis_y}" stroke="#333"/>')
    ticks, decimals = _ticks(low, high)
    for tick in ticks:
        parts.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{axis_y}" y2="{axis_y + 5}" stroke="#333"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 18}" text-anchor="middle">{tick:.{decimals}f}</text>')
    parts.append(f'<text x="{(left + right) / 2}" y="{axis_y + 38}" text-anchor="middle">'
                 "OTCE = -H(Yt|Ys), higher is better; bars: 95% interval; bands: indistinguishable groups</text>")
    parts.append("</svg>")
    return "\n".join(parts)
