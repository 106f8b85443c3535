"""A Merkle tree over the evidence manifest's records, as in RFC 6962 (Certificate Transparency).

    leaf hash  = SHA-256(0x00 || record bytes)
    node hash  = SHA-256(0x01 || left || right)
    root of n leaves: the leaf hash when n = 1; else, with k the largest power of two below n,
    node(root(leaves[:k]), root(leaves[k:])). The root of no leaf is SHA-256 of nothing.

The two prefixes keep a leaf from passing for a node (second-preimage); because the tree is
ordered, changing, removing, adding or reordering a record changes the root. An audit path
proves one record's inclusion from its bytes, its index, the tree size and log2(n) hashes
(RFC 9162 section 2.1.3).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(record: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class RootBuilder:
    """The root of a stream of leaves in O(log n) memory: full subtrees are merged as soon as
    two of the same size meet, then the remaining ones from right to left (which is the
    RFC 6962 split, since every left subtree is a full power of two)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (leaf count, subtree hash)
        self.size = 0

    def add(self, record: bytes) -> bytes:
        """Add one record; returns its leaf hash."""
        leaf = leaf_hash(record)
        self.add_leaf(leaf)
        return leaf

    def add_leaf(self, leaf: bytes) -> None:
        self._stack.append((1, leaf))
        self.size += 1
        while len(self._stack) >= 2 and self._stack[-1][0] == self._stack[-2][0]:
            (n, right), (_, left) = self._stack.pop(), self._stack.pop()
            self._stack.append((2 * n, node_hash(left, right)))

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        _, acc = self._stack[-1]
        for _, left in reversed(self._stack[:-1]):
            acc = node_hash(left, acc)
        return acc


def root_of(leaves: Iterable[bytes]) -> bytes:
    """The root over leaf hashes."""
    builder = RootBuilder()
    for leaf in leaves:
        builder.add_leaf(leaf)
    return builder.root()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def audit_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The sibling hashes from leaf `index` up to the root (RFC 6962 PATH(m, D[n])).

    IndexError when `index` is outside the tree."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} outside a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*audit_path(index, leaves[:k]), root_of(leaves[k:])]
    return [*audit_path(index - k, leaves[k:]), root_of(leaves[:k])]


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that `leaf` at `index` in a tree of `size` leaves and its audit `path` imply,
    or None when the path cannot belong to that position (RFC 9162 section 2.1.3.2)."""
    if not 0 <= index < size:
        return None
    fn, sn, acc = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            acc = node_hash(sibling, acc)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            acc = node_hash(acc, sibling)
        fn, sn = fn >> 1, sn >> 1
    return acc if sn == 0 else None


def verify_inclusion(
    record: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """True when `record` is leaf `index` of the tree of `size` leaves whose root is `root`."""
    return root_from_path(leaf_hash(record), index, size, path) == root
