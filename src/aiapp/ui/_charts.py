"""Charts as inline SVG, rendered on the server: no JavaScript, no plotting library, no build step.

A time series is a polyline over evenly spaced buckets (gaps where a bucket has no value), with its
axis range, a title and a ``<title>`` tooltip per point; a bar chart is rectangles. Each chart is a
few kilobytes of markup, and a browser test can count its points.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence

_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2")


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.0f}"
    if abs(value) >= 0.01:
        return f"{value:.2f}"
    return f"{value:.2g}"


def _label(ts: float, bucket_s: int) -> str:
    when = dt.datetime.fromtimestamp(ts, dt.UTC)
    return when.strftime("%H:%M") if bucket_s < 86400 / 4 else when.strftime("%m-%d %H:%M")


def line_chart(
    title: str,
    series: Sequence[tuple[str, Sequence[float | None]]],
    buckets: Sequence[float],
    bucket_s: int,
    *,
    width: int = 420,
    height: int = 150,
    unit: str = "",
    chart_id: str = "",
) -> str:
    """An SVG line chart of one or more series over the same buckets."""
    esc = html.escape
    pad_l, pad_r, pad_t, pad_b = 44, 8, 22, 20
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    values = [v for _, vs in series for v in vs if v is not None]
    top = max(values) if values else 1.0
    top = top if top > 0 else 1.0
    n = max(1, len(buckets) - 1)
    parts = [
        f"<svg class='chart' id='{esc(chart_id)}' role='img' aria-label='{esc(title)}' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>",
        f"<text x='{pad_l}' y='14' font-size='12' font-weight='600'>{esc(title)}</text>",
        f"<line x1='{pad_l}' y1='{pad_t + plot_h}' x2='{pad_l + plot_w}' y2='{pad_t + plot_h}' stroke='#999'/>",
        f"<line x1='{pad_l}' y1='{pad_t}' x2='{pad_l}' y2='{pad_t + plot_h}' stroke='#999'/>",
        f"<text x='{pad_l - 4}' y='{pad_t + 8}' font-size='9' text-anchor='end'>{_fmt(top)}{esc(unit)}</text>",
        f"<text x='{pad_l - 4}' y='{pad_t + plot_h}' font-size='9' text-anchor='end'>0</text>",
    ]
    if buckets:
        parts.append(
            f"<text x='{pad_l}' y='{height - 4}' font-size='9'>{_label(buckets[0], bucket_s)}</text>"
            f"<text x='{pad_l + plot_w}' y='{height - 4}' font-size='9' text-anchor='end'>"
            f"{_label(buckets[-1], bucket_s)}</text>"
        )
    for index, (name, vs) in enumerate(series):
        color = _COLORS[index % len(_COLORS)]
        segments: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(vs):
            if v is None:
                if segments[-1]:
                    segments.append([])
                continue
            segments[-1].append((pad_l + plot_w * i / n, pad_t + plot_h - plot_h * v / top))
        for segment in segments:
            if len(segment) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
                parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{points}'/>")
        for i, v in enumerate(vs):
            if v is not None:
                x, y = pad_l + plot_w * i / n, pad_t + plot_h - plot_h * v / top
                when = _label(buckets[i], bucket_s) if i < len(buckets) else str(i)
                parts.append(
                    f"<circle class='point' cx='{x:.1f}' cy='{y:.1f}' r='2' fill='{color}'>"
                    f"<title>{esc(name)} {when}: {_fmt(v)}{esc(unit)}</title></circle>"
                )
        if len(series) > 1:
            parts.append(
                f"<text x='{pad_l + plot_w - 4 - 60 * (len(series) - 1 - index)}' y='14' font-size='10' "
                f"fill='{color}' text-anchor='end'>{esc(name)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str, bars: Sequence[tuple[str, float]], *, width: int = 420, height: int = 150, chart_id: str = ""
) -> str:
    """An SVG bar chart of labelled values (e.g. a metric per run)."""
    esc = html.escape
    pad_l, pad_t, pad_b = 8, 22, 28
    plot_h = height - pad_t - pad_b
    top = max([v for _, v in bars] + [1e-9])
    bar_w = (width - 2 * pad_l) / max(1, len(bars))
    parts = [
        f"<svg class='chart' id='{esc(chart_id)}' role='img' aria-label='{esc(title)}' width='{width}' "
        f"height='{height}' xmlns='http://www.w3.org/2000/svg'>",
        f"<text x='{pad_l}' y='14' font-size='12' font-weight='600'>{esc(title)}</text>",
    ]
    for i, (label, value) in enumerate(bars):
        h = plot_h * value / top
        x = pad_l + i * bar_w
        parts.append(
            f"<rect class='bar' x='{x + 2:.1f}' y='{pad_t + plot_h - h:.1f}' width='{bar_w - 4:.1f}' "
            f"height='{h:.1f}' fill='{_COLORS[0]}'><title>{esc(label)}: {_fmt(value)}</title></rect>"
            f"<text x='{x + bar_w / 2:.1f}' y='{height - 14}' font-size='9' text-anchor='middle'>"
            f"{esc(label[:14])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
