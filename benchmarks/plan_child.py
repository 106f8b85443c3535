"""One `bascule plan`, as the CLI runs it, in its own process, optionally on synthetic
listings.

Usage: python -m benchmarks.plan_child CONFIG [SYNTHETIC_OBJECTS] [--json]

With SYNTHETIC_OBJECTS, the endpoints named `synthetic-src` and `synthetic-dst` of CONFIG
are served by `benchmarks.synthetic.SyntheticListing`: the source lists that many objects,
the target every second one of them. The plan's output goes to stdout.
"""

from __future__ import annotations

import sys

from bascule import endpoints
from bascule.cli.app import app
from bascule.connectors.base import Connector
from benchmarks.synthetic import SyntheticListing


def _serve_synthetic(objects: int) -> None:
    real = endpoints.build_connector
    listings: dict[str, Connector] = {
        "synthetic-src": SyntheticListing(objects),
        "synthetic-dst": SyntheticListing(objects, every=2),
    }

    def build(ref: endpoints.EndpointRef) -> Connector:
        return listings[ref.name] if ref.name in listings else real(ref)

    endpoints.build_connector = build


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    if len(args) > 1:
        _serve_synthetic(int(args[1]))
    try:
        app(["plan", "-c", args[0], *(["--json"] if as_json else [])])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
