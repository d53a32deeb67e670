"""Sparklines drawn on the server: inline SVG for the pages, PNG for mail clients (which do not show SVG).

One geometry for both, so the page and the mail show the same picture: the series, the baseline band (where the
anomaly score does not count), the incident window shaded, and the onset as a vertical marker.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

from state import MetricChart

WIDTH, HEIGHT, PAD = 300, 64, 3
COLORS = {
    "band": "#d8f0dd",  # the baseline band: calm green
    "window": "#f6f8fa",  # the incident window
    "line": "#0969da",
    "onset": "#cf222e",
    "baseline": "#57606a",
}


@dataclass(frozen=True)
class Geometry:
    """Pixel coordinates of one sparkline in a WIDTH x HEIGHT box."""

    segments: list[list[tuple[float, float]]]  # the series, split at gaps
    band: tuple[float, float]  # y of the band's top and bottom
    baseline_y: float
    window_x: float  # where the incident window starts
    onset_x: float | None


def geometry(chart: MetricChart, window_start: datetime, onset: datetime | None) -> Geometry:
    """Lay out the chart: x is time from the chart's start, y spans the values and the band."""
    values = [v for v in chart.values if v is not None]
    low = min([*values, chart.band_low])
    if low < 0 <= min(values, default=0):  # a band below zero for a quantity that never is: cut at zero
        low = 0.0
    high = max([*values, chart.band_high])
    if high - low < 1e-12:
        high, low = high + 1, low - 1
    span_seconds = chart.step_seconds * max(len(chart.values) - 1, 1)
    start = chart.start.timestamp()

    def x_of(at: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * min(max((at - start) / span_seconds, 0.0), 1.0)

    def y_of(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value - low) / (high - low)

    segments: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(chart.values):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append((x_of(start + i * chart.step_seconds), y_of(value)))
    return Geometry(
        segments=[s for s in segments if s],
        band=(y_of(min(chart.band_high, high)), y_of(max(chart.band_low, low))),
        baseline_y=y_of(chart.baseline),
        window_x=x_of(window_start.timestamp()),
        onset_x=x_of(onset.timestamp()) if onset else None,
    )


def sparkline_svg(chart: MetricChart, window_start: datetime, onset: datetime | None, label: str) -> Markup:
    """An inline, responsive SVG; `label` is its accessible name (escaped here)."""
    g = geometry(chart, window_start, onset)
    parts = [
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>',
        f'<rect class="window" x="{g.window_x:.1f}" y="0" width="{WIDTH - g.window_x:.1f}" height="{HEIGHT}" '
        f'fill="{COLORS["window"]}"/>',
        f'<rect class="band" x="0" y="{g.band[0]:.1f}" width="{WIDTH}" height="{max(g.band[1] - g.band[0], 1):.1f}" '
        f'fill="{COLORS["band"]}"/>',
        f'<line class="baseline" x1="0" x2="{WIDTH}" y1="{g.baseline_y:.1f}" y2="{g.baseline_y:.1f}" '
        f'stroke="{COLORS["baseline"]}" stroke-width="1" stroke-dasharray="3 3" vector-effect="non-scaling-stroke"/>',
    ]
    for segment in g.segments:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
        parts.append(f'<polyline class="series" points="{points}" fill="none" stroke="{COLORS["line"]}" '
                     'stroke-width="2" stroke-linejoin="round" vector-effect="non-scaling-stroke"/>')
    if g.onset_x is not None:
        parts.append(f'<line class="onset" x1="{g.onset_x:.1f}" x2="{g.onset_x:.1f}" y1="0" y2="{HEIGHT}" '
                     f'stroke="{COLORS["onset"]}" stroke-width="2" vector-effect="non-scaling-stroke"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline_png(chart: MetricChart, window_start: datetime, onset: datetime | None, scale: int = 2) -> bytes:
    """The same picture as a PNG (`scale` x for sharp lines on dense screens), for HTML mail."""
    from PIL import Image, ImageDraw

    g = geometry(chart, window_start, onset)
    supersample = 3  # drawn larger and scaled down: anti-aliased lines without a font or a vector library
    k = scale * supersample
    image = Image.new("RGB", (WIDTH * k, HEIGHT * k), "#ffffff")
    draw = ImageDraw.Draw(image)
    draw.rectangle([g.window_x * k, 0, WIDTH * k, HEIGHT * k], fill=COLORS["window"])
    draw.rectangle([0, g.band[0] * k, WIDTH * k, max(g.band[1], g.band[0] + 1) * k], fill=COLORS["band"])
    for x in range(0, WIDTH * k, 6 * k):
        draw.line([(x, g.baseline_y * k), (x + 3 * k, g.baseline_y * k)], fill=COLORS["baseline"], width=k)
    for segment in g.segments:
        points = [(x * k, y * k) for x, y in segment]
        if len(points) == 1:
            x, y = points[0]
            draw.ellipse([x - k, y - k, x + k, y + k], fill=COLORS["line"])
        else:
            draw.line(points, fill=COLORS["line"], width=2 * k, joint="curve")
    if g.onset_x is not None:
        draw.line([(g.onset_x * k, 0), (g.onset_x * k, HEIGHT * k)], fill=COLORS["onset"], width=2 * k)
    # each output pixel the mean of its supersample x supersample block (the box filter of supersampling); a
    # windowed-sinc resize costs ten times more and only adds ringing at the band's and the line's edges
    image = image.reduce(supersample)
    out = io.BytesIO()
    image.save(out, format="PNG")  # zlib's default level; optimize=True tried harder for ~6% fewer bytes, 4x the time
    return out.getvalue()
