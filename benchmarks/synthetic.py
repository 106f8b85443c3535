"""A synthetic listing source for plan benchmarks: generated keys and sizes, no storage.

`SyntheticListing` lists `objects` keys under its prefix in key order (zero-padded numbers,
1,000 per "directory"), each with a size and an etag derived from its index; `every`
lists only one object in `every` (a target holding part of the source). Nothing is stored
and nothing can be read or written: only `list`, `capabilities` and `key_problem` answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import BinaryIO

from bascule.connectors.base import ByteRange, Capabilities, ObjectInfo, object_key_problem
from bascule.errors import UnsupportedOperation

MAX_SIZE = 256 * 1024


def synthetic_key(i: int) -> str:
    return f"{i // 1000:06d}/{i:010d}.csv"


def synthetic_size(i: int) -> int:
    return (i * 2654435761) % MAX_SIZE


class SyntheticListing:
    def __init__(self, objects: int, *, every: int = 1) -> None:
        self.objects = objects
        self.every = every
        self._url = f"synthetic:{objects}/{every}"

    @property
    def url(self) -> str:
        return self._url

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(sorted_listing=True)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for i in range(0, self.objects, self.every):
            yield ObjectInfo(prefix + synthetic_key(i), synthetic_size(i), f"{i:x}")

    def stat(self, key: str) -> ObjectInfo:
        raise UnsupportedOperation("a synthetic listing stores nothing", connector=self.url)

    def open_read(
        self, key: str, byte_range: ByteRange | None = None, if_match: str | None = None
    ) -> BinaryIO:
        raise UnsupportedOperation("a synthetic listing stores nothing", connector=self.url)

    def put(
        self,
        key: str,
        data: BinaryIO,
        size: int,
        metadata: Mapping[str, str] | None = None,
        *,
        sha256: bytes | None = None,
    ) -> ObjectInfo:
        raise UnsupportedOperation("a synthetic listing stores nothing", connector=self.url)

    def delete(self, key: str) -> None:
        raise UnsupportedOperation("a synthetic listing stores nothing", connector=self.url)

    def should_retry(self, exc: BaseException) -> bool:
        return False

    def key_problem(self, key: str) -> str | None:
        """The rules every target shares (`object_key_problem`): plan asks it per target key."""
        return object_key_problem(key)
