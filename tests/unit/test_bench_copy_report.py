"""The copy benchmark pairs lines of the same round only, and sums several rounds up as the
median ratio with its range (pure functions of the results; no server runs here)."""

from __future__ import annotations

import pytest

from benchmarks.bench_copy import dataset_shapes, parse_args
from benchmarks.copy_report import ratio_rows, ratios, text_report
from benchmarks.lines import LineResult


def _line(line: str, seconds: float, round_no: int, cpu: float = 1.0) -> LineResult:
    return LineResult(
        transport="tls", dataset="large", line=line, bytes=1024**3, objects=4,
        seconds=seconds, engine_seconds=None, peak_rss_bytes=0, peak_tree_rss_bytes=0,
        cpu_seconds=cpu, server_cpu_seconds=0.0, azurite_cpu_seconds=0.0,
        s3_server_cpu_seconds=0.0, stored_objects=4, stored_bytes=1024**3,
        load_1min_before=0.0, load_1min_after=0.0, exit_code=0, round=round_no,
    )  # fmt: skip


def test_lines_are_paired_within_their_round() -> None:
    results = [
        _line("bascule plain", 10.0, 1), _line("rclone plain", 12.0, 1),
        _line("rclone plain", 9.0, 2), _line("bascule plain", 10.0, 2),
    ]  # fmt: skip
    mb = [item["mb_per_s"] for item in ratios(results)]
    assert mb == [1.2, 0.9]  # never round 1's bascule over round 2's rclone


def test_several_rounds_give_the_median_and_its_range() -> None:
    results = []
    for round_no, rclone in enumerate([12.0, 9.0, 11.0], start=1):
        results += [_line("bascule plain", 10.0, round_no), _line("rclone plain", rclone, round_no)]
    (summary,) = [r for r in ratio_rows(results) if r["ratio"] == "bascule plain / rclone plain"]
    assert (summary["mb_per_s"], summary["mb_per_s_range"], summary["rounds"]) == (
        1.1, [0.9, 1.2], 3
    )  # fmt: skip
    assert "median of 3 rounds" in text_report(results)
    assert "1.10 [0.90-1.20]" in text_report(results)


def test_datasets_option_narrows_the_throughput_datasets() -> None:
    def names(*argv: str) -> list[str]:
        return [shape.name for shape in dataset_shapes(parse_args(list(argv)))]

    assert names() == ["large", "small"]
    assert names("--datasets", "small") == ["small"]
    assert names("--quick", "--datasets", "large") == ["large"]
    assert names("--memory") == ["huge"]
    with pytest.raises(SystemExit):
        parse_args(["--memory", "--datasets", "small"])
