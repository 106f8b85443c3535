"""The readiness report as one self-contained HTML file (inline CSS and SVG, no script).

Nothing is fetched: a Content-Security-Policy forbids every network source, and the page
holds no external URL. Charts are drawn here as SVG: throughput per rehearsal over time and
the phase durations of the last rehearsal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from bascule.readiness.model import (
    CONDITIONAL,
    NOT_READY,
    READY,
    DatasetReadiness,
    PhaseDuration,
    Readiness,
    RehearsalPoint,
)

COLOURS = {READY: "#1a7f37", CONDITIONAL: "#b35900", NOT_READY: "#c62828"}
GREY = "#6b7280"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#111827;background:#fff;padding:0 1rem}
h1{margin:0 0 .2rem}h2{margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.sub{color:#6b7280}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:.8rem 1.1rem;min-width:180px}
.card .big{font-size:2rem;font-weight:700}.card .lbl{color:#6b7280;font-size:.85rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.45rem .6rem;
border-bottom:1px solid #e5e7eb;vertical-align:top}th{background:#f9fafb;font-size:.85rem}
.badge{display:inline-block;padding:.15rem .55rem;border-radius:999px;color:#fff;
font-size:.8rem;white-space:nowrap}.num{text-align:right;font-variant-numeric:tabular-nums}
ul.reasons{margin:0;padding-left:1.1rem;font-size:.9rem}.blockers li{margin:.3rem 0}
svg text{font-family:system-ui,sans-serif;font-size:12px;fill:#374151}
.bar{background:#e5e7eb;border-radius:4px;height:10px;width:160px}
.bar>div{background:#2563eb;height:10px;border-radius:4px}
"""


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _human_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s >= 86400:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def _badge(status: str) -> str:
    colour = COLOURS.get(status, GREY)
    return f'<span class="badge" style="background:{colour}">{escape(status)}</span>'


def _card(big: str, label: str, colour: str = "#111827") -> str:
    return (
        f'<div class="card"><div class="big" style="color:{colour}">{escape(big)}</div>'
        f'<div class="lbl">{escape(label)}</div></div>'
    )


def _cards(r: Readiness) -> str:
    days = "n/a" if r.days_left is None else str(r.days_left)
    p = r.projection
    rate = f"{_human_bytes(p.measured_rate_bps)}/s" if p.measured_rate_bps else "not measured"
    volume = _human_bytes(p.production_bytes) if p.production_bytes else "(volume not set)"
    return (
        '<div class="cards">'
        + "".join(
            [
                _card(days, f"days to the deadline ({r.deadline or 'none set'})"),
                _card(r.overall, "overall readiness", COLOURS.get(r.overall, GREY)),
                _card(
                    _human_seconds(p.full_copy_s),
                    f"full copy of {volume} with {p.workers} worker(s)",
                ),
                _card(
                    _human_seconds(p.freeze_window_needed_s),
                    f"freeze window needed (target {_human_seconds(p.freeze_window_target_s)})",
                ),
                _card(rate, "measured throughput"),
            ]
        )
        + "</div>"
    )


def _progress(done: int, total: int) -> str:
    share = 0 if total <= 0 else min(100, round(100 * done / total))
    return f'<div class="bar" title="{share}%"><div style="width:{share}%"></div></div>'


def _row(d: DatasetReadiness) -> str:
    reasons = "".join(f"<li>{escape(x)}</li>" for x in d.reasons)
    verified_share = _progress(d.objects_verified, d.objects_copied)
    return (
        f"<tr><td><b>{escape(d.name)}</b></td><td>{_badge(d.status)}</td>"
        f'<td><ul class="reasons">{reasons}</ul></td>'
        f'<td class="num">{d.rehearsal_objects} / {_human_bytes(d.rehearsal_bytes)}'
        f"{'' if not d.rehearsal_findings else f' ({d.rehearsal_findings} findings)'}</td>"
        f'<td class="num">{d.objects_copied} / {_human_bytes(d.bytes_copied)}</td>'
        f'<td class="num">{d.objects_verified}{verified_share}</td></tr>'
    )


def _table(r: Readiness) -> str:
    head = (
        "<tr><th>dataset</th><th>readiness</th><th>why</th><th>last rehearsal: verified "
        "objects / bytes</th><th>production: copied objects / bytes</th>"
        "<th>production: verified</th></tr>"
    )
    rows = "".join(_row(d) for d in r.datasets)
    return f'<table id="readiness">{head}{rows}</table>'


def _axis_label(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %H:%M")


def throughput_svg(points: tuple[RehearsalPoint, ...]) -> str:
    """Throughput (MiB/s) of each rehearsal's copy steps, in time order, as an SVG chart."""
    w, h, left, bottom, top = 720, 260, 60, 40, 20
    pts = [p for p in points if p.rate_bps]
    parts = [
        f'<svg id="throughput-chart" width="{w}" '
        f'height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="throughput per '
        'rehearsal">'
    ]
    parts.append(
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#9ca3af"/>'
    )
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#9ca3af"/>')
    if not pts:
        parts.append(
            f'<text x="{w / 2}" y="{h / 2}" text-anchor="middle">no rehearsal has '
            "copied data yet</text></svg>"
        )
        return "".join(parts)
    peak = max(p.rate_bps or 0 for p in pts) / 1024**2 or 1.0
    span = (w - left - 30) / max(1, len(pts) - 1)
    coords = []
    for i, p in enumerate(pts):
        x = left + 15 + i * span if len(pts) > 1 else left + (w - left) / 2
        y = h - bottom - ((p.rate_bps or 0) / 1024**2) / peak * (h - bottom - top - 10)
        coords.append((x, y, p))
    parts.append(
        '<polyline fill="none" stroke="#2563eb" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
        + '"/>'
    )
    for x, y, p in coords:
        colour = "#1a7f37" if p.status == "completed" else "#c62828"
        mib = (p.rate_bps or 0) / 1024**2
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"><title>r{p.run_id}'
            f" {escape(p.status)}: {mib:.1f} MiB/s</title></circle>"
        )
        parts.append(f'<text x="{x:.1f}" y="{y - 9:.1f}" text-anchor="middle">{mib:.1f}</text>')
        parts.append(
            f'<text x="{x:.1f}" y="{h - bottom + 16}" text-anchor="middle">'
            f"{escape(_axis_label(p.started))}</text>"
        )
    parts.append(f'<text x="12" y="{top + 5}">MiB/s</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 14}" text-anchor="end">{peak:.0f}</text>')
    parts.append(f'<text x="{left - 6}" y="{h - bottom}" text-anchor="end">0</text>')
    parts.append(f'<text x="{left}" y="{h - 5}">green: rehearsal passed; red: failed</text>')
    parts.append("</svg>")
    return "".join(parts)


def phases_svg(phases: tuple[PhaseDuration, ...]) -> str:
    """Horizontal bars: seconds per phase of the last rehearsal."""
    row_h, left, w = 30, 150, 720
    h = max(60, row_h * len(phases) + 30)
    parts = [
        f'<svg id="phases-chart" width="{w}" '
        f'height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="phase durations">'
    ]
    if not phases:
        parts.append(f'<text x="{w / 2}" y="30" text-anchor="middle">no rehearsal yet</text></svg>')
        return "".join(parts)
    longest = max(p.seconds for p in phases) or 1.0
    for i, p in enumerate(phases):
        y = 10 + i * row_h
        length = max(2.0, p.seconds / longest * (w - left - 120))
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(p.phase)}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="20" rx="3" '
            f'fill="#7c3aed"><title>{escape(p.phase)}: {p.seconds:.1f} s</title></rect>'
        )
        parts.append(
            f'<text x="{left + length + 6:.1f}" y="{y + 15}">'
            f"{escape(_human_seconds(p.seconds))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _blockers(r: Readiness) -> str:
    if not r.blockers:
        return "<p>Nothing blocks the switchover.</p>"
    items = "".join(f"<li>{escape(b)}</li>" for b in r.blockers)
    return f'<ul class="blockers">{items}</ul>'


def _rehearsal_rows(r: Readiness) -> str:
    rows = []
    for p in reversed(r.rehearsals[-10:]):
        rate = f"{_human_bytes(p.rate_bps)}/s" if p.rate_bps else "-"
        rows.append(
            f"<tr><td>r{p.run_id}</td><td>{escape(_axis_label(p.started))}</td>"
            f"<td>{escape(p.runbook)}</td><td>{_badge_run(p.status)}</td>"
            f'<td class="num">{_human_bytes(p.bytes)}</td><td class="num">{rate}</td>'
            f'<td class="num">{_human_seconds(p.seconds)}</td>'
            f"<td>{escape(p.failed_step or '')}</td></tr>"
        )
    head = (
        "<tr><th>rehearsal</th><th>started (UTC)</th><th>runbook</th><th>outcome</th>"
        "<th>copied</th><th>throughput</th><th>duration</th><th>failed at</th></tr>"
    )
    return f'<table id="rehearsals">{head}{"".join(rows)}</table>'


def _badge_run(status: str) -> str:
    return _badge(READY if status == "completed" else NOT_READY).replace(
        escape(READY if status == "completed" else NOT_READY), escape(status)
    )


def render_html(r: Readiness) -> str:
    """The whole report page for `r`."""
    title = f"bascule readiness: {escape(r.project)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
<div class="sub">Switchover from {escape(r.source)} to
<strong id="target">{escape(r.target)}</strong>. Report generated
{escape(r.generated_at)} (UTC) from the migration journal.</div>
{_cards(r)}
<h2>Readiness per dataset</h2>
{_table(r)}
<h2>What blocks</h2>
{_blockers(r)}
<h2>Throughput per rehearsal</h2>
{throughput_svg(r.rehearsals)}
<h2>Phase durations of the last rehearsal</h2>
{phases_svg(r.last_phases)}
<h2>Rehearsal history</h2>
{_rehearsal_rows(r)}
<p class="sub">Ready: rehearsed recently with a full verification. Conditionally ready: rehearsed,
with something to fix. Not ready: the last rehearsal failed on it, or the schedule does not fit.
Unknown: never rehearsed. Projections assume throughput scales with the number of workers.</p>
</body></html>
"""
