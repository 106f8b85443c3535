"""Tables keyed by dataset that fit the terminal without cutting a dataset's name.

A dataset name is what an operator types back (`--dataset NAME`), so it is never shortened:
its column is as wide as the longest name. Other columns fold their headers first, then are
left out from the right until the table fits; the caption says which were left out and that
`--json` has them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text


def dataset_table(
    console: Console,
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
    left: Sequence[str] = (),
) -> Table:
    """A table whose first column (the dataset) is kept whole at `console.width`.

    `headers[0]` names the dataset column; `rows` hold one cell per header; columns named in
    `left` are left-justified (the others, numbers, to the right). Values are taken as plain
    text (no markup) unless given as `Text`."""
    keep = len(headers)
    while True:
        table = _build(title, headers[:keep], [row[:keep] for row in rows], left)
        if keep <= 2 or _min_width(table) <= console.width:
            break
        keep -= 1
    if keep < len(headers):
        left_out = ", ".join(headers[keep:])
        table.caption = f"left out at this width: {left_out} (see --json)"
    return table


def _build(
    title: str, headers: Sequence[str], rows: Sequence[Sequence[str | Text]], left: Sequence[str]
) -> Table:
    table = Table(title=title)
    names = [Text(str(row[0])) for row in rows]
    widest = max([len(headers[0]), *(len(name) for name in names)])
    table.add_column(headers[0], no_wrap=True, min_width=widest)
    for i, header in enumerate(headers[1:], start=1):
        justify: JustifyMethod = "left" if header in left else "right"
        # a column never narrower than its longest header word or its widest short value
        words = [len(w) for w in header.split()]
        values = [_widest_line(row[i]) for row in rows]
        widest_value = max([v for v in values if v <= 16], default=0)
        table.add_column(
            header, justify=justify, overflow="fold", min_width=max([*words, widest_value])
        )
    for name, row in zip(names, rows, strict=True):
        table.add_row(name, *(c if isinstance(c, Text) else Text(c) for c in row[1:]))
    return table


def _widest_line(cell: str | Text) -> int:
    return max((len(line) for line in str(cell).splitlines()), default=0)


def _min_width(table: Table) -> int:
    """Width of the table with every column at its minimum: cell padding 1 + 1, one border
    between columns and one at each edge (rich's default box)."""
    return sum((column.min_width or 1) + 2 for column in table.columns) + len(table.columns) + 1
