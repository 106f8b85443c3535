"""`bascule keys` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="keys commands", no_args_is_help=True)
