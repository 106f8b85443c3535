"""The copy benchmark's figures as tables: text for the terminal, GitHub markdown for a file.

One table per transport and dataset (its CPU column is the figure that dataset is judged on:
CPU seconds per GiB moved for large objects, per 1,000 objects for small ones), then the
ratios: bascule / rclone (and the raw bounds) on MB/s and on CPU seconds, and, when both
transports ran, TLS / plain per line.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.lines import LineResult, MiB
from benchmarks.sandbox import DatasetShape

# (name, numerator line, denominator line), per transport and dataset.
RATIOS = [
    ("bascule plain / rclone plain", "bascule plain", "rclone plain"),
    ("bascule encrypted / rclone crypt", "bascule encrypted", "rclone crypt"),
    ("plain (sha256 parts) / rclone plain", "bascule plain (sha256 parts)", "rclone plain"),
    ("encrypted (sha256 parts) / rclone crypt", "bascule encrypted (sha256 parts)", "rclone crypt"),
    ("plain (sha256 parts) / raw write", "bascule plain (sha256 parts)", "raw write"),
    ("dask-local:2 / local (encrypted)", "bascule encrypted [dask-local:2]", "bascule encrypted"),
    ("bascule plain / raw read", "bascule plain", "raw read"),
    ("bascule plain / raw write", "bascule plain", "raw write"),
    ("plain, sha256 / content-md5 parts", "bascule plain (sha256 parts)", "bascule plain"),
    (
        "encrypted, sha256 / content-md5 parts",
        "bascule encrypted (sha256 parts)",
        "bascule encrypted",
    ),
]
TRANSPORT_TITLES = {"tls": "HTTPS (TLS)", "plain": "plain HTTP"}


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[LineResult], str]
    numeric: bool = True


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _status(r: LineResult) -> str:
    return "ok" if not r.error else f"FAILED: {r.error}"


def columns(large: bool) -> list[Column]:
    """The table's columns; the CPU-per-unit one depends on the dataset's kind."""
    per_unit = "CPU s/GiB" if large else "CPU s/1k obj"
    return [
        Column("round", lambda r: str(r.round)),
        Column("line", lambda r: r.line, numeric=False),
        Column("MB/s", lambda r: _num(r.mb_per_s)),
        Column("eng MB/s", lambda r: _num(r.engine_mb_per_s)),
        Column("seconds", lambda r: _num(r.seconds, 2)),
        Column("CPU s", lambda r: _num(r.cpu_seconds, 2)),
        Column(per_unit, lambda r: _num(r.cpu_per_unit, 2)),
        Column("servers CPU s", lambda r: _num(r.server_cpu_seconds, 2)),
        Column("Azurite", lambda r: _num(r.azurite_cpu_seconds, 2)),
        Column("S3 server", lambda r: _num(r.s3_server_cpu_seconds, 2)),
        Column("idle core-s", lambda r: _num(r.idle_core_seconds, 2)),
        Column("RSS MiB", lambda r: f"{r.peak_rss_bytes / MiB:,.0f}"),
        Column("tree MiB", lambda r: f"{r.peak_tree_rss_bytes / MiB:,.0f}"),
        Column("load before", lambda r: _num(r.load_1min_before)),
        Column("load after", lambda r: _num(r.load_1min_after)),
        Column("status", _status, numeric=False),
    ]


def groups(results: Sequence[LineResult]) -> list[tuple[str, str, list[LineResult]]]:
    """(transport, dataset, its lines) in the order they ran."""
    keys = dict.fromkeys((r.transport, r.dataset) for r in results)
    return [(t, d, [r for r in results if (r.transport, r.dataset) == (t, d)]) for t, d in keys]


def describe(rs: Sequence[LineResult]) -> str:
    first = rs[0]
    size = first.bytes // first.objects if first.objects else 0
    return DatasetShape(first.dataset, "", first.objects, size).describe()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _ratio_item(transport: str, dataset: str, name: str, a: LineResult, b: LineResult) -> Any:
    return {
        "transport": transport,
        "dataset": dataset,
        "ratio": name,
        "mb_per_s": _ratio(a.mb_per_s, b.mb_per_s),
        "engine_mb_per_s": _ratio(a.engine_mb_per_s, b.engine_mb_per_s),
        "cpu": _ratio(a.cpu_seconds, b.cpu_seconds),  # same dataset: also the per-unit ratio
    }


def ratios(results: Sequence[LineResult]) -> list[dict[str, Any]]:
    """Per round, transport and dataset: each RATIOS pair on MB/s (whole process, and
    engine where both have one) and on CPU seconds; then TLS / plain per line when both
    transports ran. Only lines of the same round are paired. Failed lines are left out."""
    ok = {(r.round, r.transport, r.dataset, r.line): r for r in results if not r.error}
    out: list[dict[str, Any]] = []
    for round_no in sorted({r.round for r in results}):
        for transport, dataset, _ in groups(results):
            for name, top, bottom in RATIOS:
                a = ok.get((round_no, transport, dataset, top))
                b = ok.get((round_no, transport, dataset, bottom))
                if a is not None and b is not None:
                    out.append(_ratio_item(transport, dataset, name, a, b) | {"round": round_no})
        for (r, transport, dataset, line), a in ok.items():
            b = ok.get((r, "plain", dataset, line))
            if r == round_no and transport == "tls" and b is not None:
                out.append(_ratio_item("tls / plain", dataset, line, a, b) | {"round": round_no})
    return out


def ratio_summary(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each ratio over the rounds: its median, lowest and highest, and how many rounds."""
    keys = dict.fromkeys((i["transport"], i["dataset"], i["ratio"]) for i in items)
    out = []
    for transport, dataset, name in keys:
        same = [
            i
            for i in items
            if (i["transport"], i["dataset"], i["ratio"]) == (transport, dataset, name)
        ]
        entry: dict[str, Any] = {
            "transport": transport,
            "dataset": dataset,
            "ratio": name,
            "rounds": len(same),
        }
        for field in ("mb_per_s", "engine_mb_per_s", "cpu"):
            values = sorted(v for v in (i[field] for i in same) if v is not None)
            entry[field] = round(statistics.median(values), 3) if values else None
            entry[f"{field}_range"] = [values[0], values[-1]] if values else None
        out.append(entry)
    return out


def _ratio_cells(item: dict[str, Any]) -> list[str]:
    return [
        item["transport"],
        item["dataset"],
        item["ratio"],
        *(_ranged(item, name) for name in ("mb_per_s", "engine_mb_per_s", "cpu")),
    ]


def _ranged(item: dict[str, Any], name: str) -> str:
    """The figure, and over several rounds its range: ``1.12 [1.05-1.20]``."""
    span = item.get(f"{name}_range")
    if not span or item.get("rounds", 1) < 2:
        return _num(item[name], 2)
    return f"{_num(item[name], 2)} [{_num(span[0], 2)}-{_num(span[1], 2)}]"


def ratio_rows(results: Sequence[LineResult]) -> list[dict[str, Any]]:
    """The ratios a report shows: of the one round, or over several, their medians."""
    items = ratios(results)
    return ratio_summary(items) if len({r.round for r in results}) > 1 else items


RATIO_HEADERS = ["transport", "data", "ratio", "MB/s", "eng MB/s", "CPU"]
RATIO_NUMERIC = [False, False, False, True, True, True]


def _text_table(headers: list[str], rows: Iterable[list[str]], numeric: list[bool]) -> str:
    body = [headers, *rows]
    widths = [max(len(row[i]) for row in body) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        cells = [
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric, strict=True)
        ]
        return "  ".join(cells).rstrip()

    return "\n".join(fmt(row) for row in body)


def _markdown_table(headers: list[str], rows: Iterable[list[str]], numeric: list[bool]) -> str:
    rule = ["---:" if n else "---" for n in numeric]
    body = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body)


TableFormat = Callable[[list[str], Iterable[list[str]], list[bool]], str]


def _line_tables(results: Sequence[LineResult], table: TableFormat) -> list[tuple[str, str]]:
    """(title, table) per transport and dataset."""
    out = []
    for transport, dataset, rs in groups(results):
        cols = columns(rs[0].large)
        title = f"{TRANSPORT_TITLES.get(transport, transport)}: {dataset}, {describe(rs)}"
        rows = [[c.cell(r) for c in cols] for r in rs]
        out.append((title, table([c.header for c in cols], rows, [c.numeric for c in cols])))
    return out


def text_report(results: Sequence[LineResult]) -> str:
    parts = [f"{title}\n{table}" for title, table in _line_tables(results, _text_table)]
    rows = [_ratio_cells(item) for item in ratio_rows(results)]
    if rows:
        parts.append(_ratio_title(results) + "\n" + _text_table(RATIO_HEADERS, rows, RATIO_NUMERIC))
    return "\n\n".join(parts) + "\n"


def _ratio_title(results: Sequence[LineResult]) -> str:
    rounds = len({r.round for r in results})
    return "ratios" if rounds < 2 else f"ratios, median of {rounds} rounds [lowest-highest]"


def _markdown_meta(meta: dict[str, Any]) -> list[str]:
    datasets = ", ".join(
        f"{d['name']} {DatasetShape(d['name'], '', d['objects'], d['size']).describe()}"
        for d in meta["datasets"]
    )
    return [
        f"- command: `{meta['command']}`",
        f"- commit measured: `{meta['source']}`",
        f"- machine: {meta['cpus']} cores ({meta.get('cpu_model', 'unknown')}), "
        f"{meta['platform']}, {meta.get('python_build', 'Python ' + meta['python'])}",
        f"- started: {meta['started']}",
        f"- transports: {', '.join(meta['transports'])}; datasets: {datasets}",
        f"- concurrency {meta['concurrency']}, part size {meta['part_size'] // MiB} MiB",
    ]


MARKDOWN_NOTES = [
    "MB/s: decimal megabytes of plaintext per second of the whole child process, start-up "
    "included; eng MB/s: bascule's own run (after loading, listing and starting the "
    "executor). CPU s: user + system of the measured process and the children it waited for; "
    "servers CPU s: Azurite and `rclone serve s3` over the same line, on the same cores. "
    "idle core-s: what the line left unused of all the machine's cores (a line that keeps "
    "every core busy is bound by its client's and servers' CPU over the cores). "
    "load: the 1-minute load average before and after the line.",
    "Ratios are numerator / denominator: above 1 on MB/s is faster, above 1 on CPU is more "
    "CPU spent for the same data.",
]


def markdown_report(meta: dict[str, Any], results: Sequence[LineResult]) -> str:
    """The whole run as GitHub markdown: how it was run, one table per transport and
    dataset, the ratios and what the columns mean."""
    parts = ["\n".join(_markdown_meta(meta))]
    parts += [f"**{title}**\n\n{table}" for title, table in _line_tables(results, _markdown_table)]
    rows = [_ratio_cells(item) for item in ratio_rows(results)]
    if rows:
        title = f"**{_ratio_title(results).capitalize()}**"
        parts.append(title + "\n\n" + _markdown_table(RATIO_HEADERS, rows, RATIO_NUMERIC))
    parts.append("\n\n".join(MARKDOWN_NOTES))
    return "\n\n".join(parts) + "\n"
