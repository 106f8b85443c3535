"""The evidence pack's summary.html: one self-contained page (inline CSS, no script).

Nothing is fetched: a Content-Security-Policy forbids every network source and the page
names no external URL. It is sealed like every other file of the pack, so editing it breaks
`bascule evidence check`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

OK, BAD, WARN, GREY = "#1a7f37", "#c62828", "#b35900", "#6b7280"
OUTCOME = {"passed": OK, "completed": OK, "verified": OK, "failed": BAD, "warned": WARN}
CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#111827;background:#fff;padding:0 1rem}
h1{margin:0 0 .2rem}h2{margin-top:2rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.sub{color:#6b7280}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1.2rem 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:.8rem 1.1rem;min-width:180px}
.card .big{font-size:1.6rem;font-weight:700}.card .lbl{color:#6b7280;font-size:.85rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .55rem;
border-bottom:1px solid #e5e7eb;vertical-align:top;font-size:.9rem}th{background:#f9fafb}
.badge{display:inline-block;padding:.15rem .55rem;border-radius:999px;color:#fff;
font-size:.8rem;white-space:nowrap}.num{text-align:right;font-variant-numeric:tabular-nums}
code,.hash{font-family:ui-monospace,monospace;font-size:.8rem;word-break:break-all}
"""


def _badge(text: str) -> str:
    colour = OUTCOME.get(text, GREY)
    return f'<span class="badge" style="background:{colour}">{escape(text)}</span>'


def _card(big: str, label: str, colour: str = "#111827") -> str:
    return (
        f'<div class="card"><div class="big" style="color:{colour}">{escape(big)}</div>'
        f'<div class="lbl">{escape(label)}</div></div>'
    )


def _table(table_id: str, head: Sequence[str], rows: list[str]) -> str:
    if not rows:
        return '<p class="sub">none</p>'
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f'<table id="{table_id}"><tr>{th}</tr>{"".join(rows)}</table>'


def _td(value: Any, css: str = "") -> str:
    text = "" if value is None else str(value)
    return f'<td class="{css}">{escape(text)}</td>' if css else f"<td>{escape(text)}</td>"


def _cards(o: Mapping[str, Any]) -> str:
    run = o["run.json"]["run"]
    verdicts: dict[str, int] = o["verdicts"]
    verified = verdicts.get("verified", 0)
    others = o["records"] - verified
    return '<div class="cards">' + "".join([
        _card(str(run["status"]), f"{run['command']} run {run['id']}",
              OUTCOME.get(run["status"], BAD)),
        _card(str(o["records"]), "objects in the manifest"),
        _card(str(verified), "verified (latest verification)", OK),
        _card(str(others), "not verified or with findings", BAD if others else GREY),
        _card(o["stacks_line"].split(" (")[0], "landing zones (stacks)"),
    ]) + "</div>"  # fmt: skip


def _steps(steps: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr>{_td(s['phase'])}{_td(s['step'])}{_td(s['kind'])}<td>{_badge(s['outcome'])}</td>"
        f"{_td(s['started'])}{_td(s['ended'])}{_td(s['detail'].get('message'))}</tr>"
        for s in steps
    ]
    return _table("steps", ("phase", "step", "kind", "outcome", "started (UTC)", "ended (UTC)",
                            "message"), rows)  # fmt: skip


def _approvals(items: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr>{_td(a['step'])}<td>{_badge(a['outcome'])}</td>{_td(a['by'])}{_td(a['how'])}"
        f"{_td(a['at'])}{_td(a['text'])}</tr>"
        for a in items
    ]
    return _table("approvals", ("step", "outcome", "by", "how", "when (UTC)", "approval text"),
                  rows)  # fmt: skip


def _gates(items: list[dict[str, Any]]) -> str:
    rows = [
        f"<tr>{_td(g['step'])}<td>{_badge(g['outcome'])}</td>{_td(', '.join(g['conditions']))}"
        f"{_td('; '.join(g['problems']) or 'all conditions hold')}</tr>"
        for g in items
    ]
    return _table("gates", ("gate", "outcome", "conditions", "result"), rows)


def _objects(sample: list[dict[str, Any]], total: int) -> str:
    rows = []
    for r in sample:
        rows_text = "" if r["source_rows"] is None else f"{r['source_rows']} / {r['target_rows']}"
        rows.append(
            f"<tr>{_td(r['dataset'])}{_td(r['source_key'])}{_td(r['target_key'])}"
            f"{_td(r['source_size'], 'num')}{_td(rows_text, 'num')}<td>{_badge(r['verdict'])}</td>"
            f'{_td(r["verified_at"])}<td class="hash">'
            f"{escape((r['plaintext_sha256_composite'] or '')[:16])}</td></tr>"
        )
    more = total - len(sample)
    tail = f'<p class="sub">{more} more records in manifest.jsonl.</p>' if more > 0 else ""
    head = ("dataset", "source key", "target key", "bytes", "rows (source / target)", "verdict",
            "verified at (UTC)", "plaintext sha256 (start)")  # fmt: skip
    return _table("objects", head, rows) + tail


def _stacks(doc: Mapping[str, Any]) -> str:
    if not doc["configured"]:
        return f"<p>{escape(doc['reason'])}</p>"
    rows = [
        f"<tr>{_td(p['source'] + ' -> ' + p['target'])}"
        f"<td>{_badge('passed' if p['ok'] else 'failed')}</td>"
        f"{_td(sum(1 for r in p['rows'] if r['status'] == 'gap'))}</tr>"
        for p in doc["parity"]
    ]
    policy = doc["policy"]
    verdict = _badge("passed" if policy["ok"] else "failed")
    return (
        _table("parity", ("parity", "result", "gaps"), rows)
        + f"<p>Policy over {policy['resources']} resources: {verdict} "
        f"({len(policy['violations'])} violations).</p>"
    )


def _integrity(o: Mapping[str, Any]) -> str:
    cfg = o["config.json"]
    return (
        f"<p>Manifest Merkle root (RFC 6962, {o['records']} records): "
        f'<span class="hash">{escape(o["merkle_root"])}</span></p>'
        f'<p>Configuration hash: <span class="hash">{escape(cfg["config_sha256"])}</span> '
        f"({escape(cfg['file'])}; left out: {escape(', '.join(cfg['left_out']) or 'nothing')})</p>"
        f"<p>bascule {escape(o['versions.json']['bascule'])}, Python "
        f"{escape(o['versions.json']['python'])}. Check the seal with "
        "<code>bascule evidence check DIR --public-key FILE</code> or the standalone script "
        "of docs/evidence-pack.md; this page is one of the sealed files.</p>"
    )


def render_summary(o: Mapping[str, Any]) -> str:
    """The summary page of a pack from its documents (see pack.py `_fill`)."""
    run = o["run.json"]["run"]
    title = f"bascule evidence: {escape(o['project'])}, {escape(run['command'])} run {run['id']}"
    rehearsals = o["run.json"]["rehearsals_of_this_runbook"]
    passed = sum(1 for r in rehearsals if r["status"] == "completed")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{_CSS}</style></head>
<body>
<h1>{title}</h1>
<div class="sub">Runbook {escape(run["runbook"])} (sha256 <span class="hash">
{escape(run["runbook_sha256"][:16])}</span>), by {escape(run["by"])}, started
{escape(str(run["started"]))} (UTC). Pack sealed {escape(o["created"])} (UTC).
{len(rehearsals)} rehearsal(s) of this runbook, {passed} passed.</div>
{_cards(o)}
<h2>Runbook steps</h2>
{_steps(o["run.json"]["steps"])}
<h2>Approvals</h2>
{_approvals(o["run.json"]["approvals"])}
<h2>Gates</h2>
{_gates(o["run.json"]["gates"])}
<h2>Objects</h2>
{_objects(o["sample"], o["records"])}
<h2>Landing zones: parity and policy</h2>
{_stacks(o["stacks.json"])}
<h2>Integrity</h2>
{_integrity(o)}
</body></html>
"""
