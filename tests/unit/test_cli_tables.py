"""CLI tables keep dataset names whole at 80 columns, leaving other columns out first."""

from __future__ import annotations

import io

from rich.console import Console

from bascule.cli.tables import dataset_table
from bascule.verification.evidence import KINDS

LONG_NAMES = ["beneficiaires-ir-ben-r-2023", "dcir-er-prs-f-2023-mensuel", "pmsi-mco-t-mco23b"]


def render(width: int, headers: tuple[str, ...]) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    rows = [(name, *(str(i * 1000 + j) for j in range(len(headers) - 1)))
            for i, name in enumerate(LONG_NAMES)]  # fmt: skip
    console.print(dataset_table(console, "t", headers, rows))
    return console.export_text()


def test_dataset_names_stay_whole_at_80_columns_with_every_verify_column() -> None:
    headers = ("dataset", "objects", "verified", *KINDS)
    text = render(80, headers)
    for name in LONG_NAMES:
        assert name in text, text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "left out at this width:" in text
    assert "(see --json)" in text


def test_nothing_is_left_out_when_the_terminal_is_wide_enough() -> None:
    headers = ("dataset", "objects", "verified", "missing")
    text = render(200, headers)
    assert "left out" not in text
    for header in headers:
        assert header in text


def test_cell_text_is_not_markup() -> None:
    console = Console(width=80, file=io.StringIO(), record=True, color_system=None)
    console.print(dataset_table(console, "t", ("dataset", "n"), [("[/red]odd[b]", "1")]))
    assert "[/red]odd[b]" in console.export_text()
