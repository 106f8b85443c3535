"""`python -m bascule.cli`: the same as the `bascule` command."""

from bascule.cli.app import main

main()
