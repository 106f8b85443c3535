"""A merge of two streams sorted by key: one pass, memory independent of their length.

Listings come in key order (the `Connector.list` contract), and the journal returns rows in
key order from an index, so comparing two of them needs neither side in memory. Python's
string order is the order of the UTF-8 bytes, which is S3's listing order and SQLite's BINARY
collation: the three agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from bascule.errors import PlanError

L = TypeVar("L")
R = TypeVar("R")


def _ordered(items: Iterable[L], key: Callable[[L], str], what: str) -> Iterator[tuple[str, L]]:
    previous: str | None = None
    for item in items:
        k = key(item)
        if previous is not None and k <= previous:
            raise PlanError(
                f"{what} is not in key order ({k!r} after {previous!r}); a listing must come "
                "sorted by key, once per key"
            )
        previous = k
        yield k, item


def merge_sorted(
    left: Iterable[L],
    right: Iterable[R],
    left_key: Callable[[L], str],
    right_key: Callable[[R], str],
    *,
    what: tuple[str, str] = ("the left stream", "the right stream"),
) -> Iterator[tuple[str, L | None, R | None]]:
    """(key, left item or None, right item or None) for every key of either stream, in key
    order. PlanError when a stream is out of order or repeats a key (`what` names them)."""
    lefts = _ordered(left, left_key, what[0])
    rights = _ordered(right, right_key, what[1])
    a = next(lefts, None)
    b = next(rights, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            yield a[0], a[1], None
            a = next(lefts, None)
        elif a is None or b[0] < a[0]:
            yield b[0], None, b[1]
            b = next(rights, None)
        else:
            yield a[0], a[1], b[1]
            a = next(lefts, None)
            b = next(rights, None)
