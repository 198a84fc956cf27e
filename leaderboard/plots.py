"""Line charts as inline SVG for the HTML report (no scripts, no external files, every label escaped).

Own code (why): the report is one self-contained page under a script-free Content-Security-Policy, and a
plotting library is not a dependency of the leaderboard; a line chart is a few SVG elements.
"""

from __future__ import annotations

import html
import math

WIDTH, HEIGHT, MARGIN = 420, 260, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def line_chart_svg(title: str, x_labels: list[str], series: dict[str, list[float | None]], y_label: str) -> str:
    """One chart: x = categories (e.g. hole-ratio bins) evenly spaced, one polyline per series (None = no point),
    a legend, the y range of the data with 4 ticks."""
    values = [v for ys in series.values() for v in ys if v is not None and math.isfinite(v)]
    if not values or not x_labels:
        return ""
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 0.5, high + 0.5
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    x_of = lambda i: MARGIN + (plot_w * i / max(len(x_labels) - 1, 1))  # noqa: E731
    y_of = lambda v: MARGIN + plot_h * (1 - (v - low) / (high - low))  # noqa: E731
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT + 18 * len(series)}" '
             f'width="{WIDTH}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
             f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="13">{_e(title)}</text>',
             f'<line x1="{MARGIN}" y1="{MARGIN + plot_h}" x2="{MARGIN + plot_w}" y2="{MARGIN + plot_h}" stroke="#888"/>',
             f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{MARGIN + plot_h}" stroke="#888"/>',
             f'<text x="12" y="{MARGIN + plot_h / 2}" font-size="11" transform="rotate(-90 12 {MARGIN + plot_h / 2})" '
             f'text-anchor="middle">{_e(y_label)}</text>']
    for k in range(4):
        value = low + (high - low) * k / 3
        parts.append(f'<text x="{MARGIN - 4}" y="{y_of(value) + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{value:.3g}</text>')
    for i, label in enumerate(x_labels):
        parts.append(f'<text x="{x_of(i):.1f}" y="{MARGIN + plot_h + 14}" font-size="9" text-anchor="middle">'
                     f'{_e(label)}</text>')
    for n, (name, ys) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = [(x_of(i), y_of(v)) for i, v in enumerate(ys) if v is not None and math.isfinite(v)]
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points]
        legend_y = HEIGHT + 18 * n + 4
        parts.append(f'<rect x="{MARGIN}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{MARGIN + 16}" y="{legend_y}" font-size="11">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
