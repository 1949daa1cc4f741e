"""The report's two charts as inline SVG: the attrition funnel and the washout timeline.

Coordinates are rounded to one decimal so the page is byte-for-byte reproducible. Every chart has a
<title> and <desc>, and the same numbers are in a table next to it (a chart is never the only telling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from html import escape
from typing import Any

from fhirscreen.report.html.model import Washout

WIDTH = 900
ROW = 24


def _n(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def funnel_svg(attrition: Sequence[Mapping[str, Any]]) -> str:
    """Patients left after each criterion, in protocol order; the darker tail is what it alone excludes."""
    if not attrition:
        return ""
    total = max(int(attrition[0].get("remaining") or 0), 1)
    left, right = 300, 680
    span = right - left
    height = ROW * len(attrition) + 30
    parts = [
        f'<svg class="chart funnel" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-labelledby="funnel-title funnel-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="funnel-title">Attrition funnel</title>',
        f'<desc id="funnel-desc">Patients left after each criterion, out of {total} in the initial '
        "population. The table below gives the same numbers.</desc>",
    ]
    for i, row in enumerate(attrition):
        y = 10 + i * ROW
        remaining = int(row.get("remaining") or 0)
        gain = int(row.get("gain") or 0)
        label = "Population" if i == 0 else str(row.get("criterion"))
        title = "SLE diagnosis on record" if i == 0 else str(row.get("title") or "")
        title = title if len(title) <= 34 else title[:33].rstrip() + "…"
        width = span * remaining / total
        gain_width = span * gain / total
        parts.append(f'<text x="{left - 10}" y="{_n(y + 15)}" text-anchor="end" class="lbl">'
                     f"{escape(label)} {escape(title)}</text>")
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{_n(width)}" height="{ROW - 6}" class="bar"/>')
        if gain:
            parts.append(f'<rect x="{_n(left + width)}" y="{y + 3}" width="{_n(gain_width)}" '
                         f'height="{ROW - 6}" class="bar-gain"/>')
        note = f"{remaining} left" + (f", {gain} excluded by {label} alone" if gain else "")
        parts.append(f'<text x="{_n(left + width + gain_width + 8)}" y="{_n(y + 15)}" class="val">'
                     f"{escape(note)}</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def _months(start: date, end: date) -> list[date]:
    first = date(start.year, start.month, 1)
    out = []
    while first <= end:
        if first >= start:
            out.append(first)
        first = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    return out


def timeline_svg(washouts: Sequence[Washout], as_of: date) -> str:
    """One row per patient with a washout ending after the screening date: a bar from the screening date
    to each end date, a marker at the end. Day 0 can be once the last washout of a row has ended (whether
    on its end date or the day after is the criterion's wording, so the label says "ends")."""
    upcoming = [w for w in washouts if w.ends >= as_of]
    if not upcoming:
        return ""
    rows: dict[str, list[Washout]] = {}
    for w in upcoming:
        rows.setdefault(w.patient.ref, []).append(w)
    last = max(w.ends for w in upcoming)
    end = last + timedelta(days=max(14, (last - as_of).days // 8))
    left, right = 330, 740
    days = max((end - as_of).days, 1)

    def x(day: date) -> float:
        return left + (right - left) * (day - as_of).days / days

    height = 40 + ROW * len(rows)
    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-labelledby="tl-title tl-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="tl-title">Washout end dates</title>',
        f'<desc id="tl-desc">For each patient with a washout still running on {as_of.isoformat()}, the '
        "dates it ends; Day 0 can be once the last one has ended. The table below lists the same "
        "dates.</desc>",
    ]
    for month in _months(as_of + timedelta(days=1), end):
        mx = _n(x(month))
        parts.append(f'<line x1="{mx}" y1="22" x2="{mx}" y2="{height - 4}" class="grid"/>')
        label = month.strftime("%b %Y")
        parts.append(f'<text x="{mx}" y="16" text-anchor="middle" class="tick">{label}</text>')
    parts.append(f'<line x1="{left}" y1="22" x2="{left}" y2="{height - 4}" class="today"/>')
    parts.append(f'<text x="{left}" y="16" text-anchor="middle" class="tick">as of {as_of.isoformat()}'
                 "</text>")
    for i, (ref, items) in enumerate(rows.items()):
        y = 30 + i * ROW
        mid = y + ROW / 2
        row_last = max(w.ends for w in items)
        patient = items[0].patient
        parts.append(f'<a href="#{patient.anchor}"><text x="{left - 10}" y="{_n(mid + 4)}" '
                     f'text-anchor="end" class="lbl">{escape(ref.removeprefix("Patient/"))}</text></a>')
        parts.append(f'<line x1="{left}" y1="{_n(mid)}" x2="{_n(x(row_last))}" y2="{_n(mid)}" class="wait"/>')
        for w in sorted(items, key=lambda w: (w.ends, w.criterion)):
            cx, cy = x(w.ends), mid
            shape = (f'<path d="M{_n(cx)} {_n(cy - 7)} L{_n(cx + 7)} {_n(cy)} L{_n(cx)} {_n(cy + 7)} '
                     f'L{_n(cx - 7)} {_n(cy)} Z" class="mark {w.outcome}"/>')
            parts.append(f"<g><title>{escape(w.criterion)}: ends {w.ends.isoformat()}</title>{shape}</g>")
        parts.append(f'<text x="{_n(x(row_last) + 10)}" y="{_n(mid + 4)}" class="val">washouts end '
                     f"{row_last.isoformat()}</text>")
    parts.append("</svg>")
    return "\n".join(parts)
