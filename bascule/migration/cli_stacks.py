"""`bascule stacks` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="stacks commands", no_args_is_help=True)
