"""The manifest's Merkle tree: RFC 6962 roots (Certificate Transparency's reference vectors),
audit paths that prove every leaf, and the changes that must break them."""

from __future__ import annotations

import pytest

from bascule.verification.merkle import (
    EMPTY_ROOT,
    RootBuilder,
    audit_path,
    leaf_hash,
    root_from_path,
    root_of,
    verify_inclusion,
)

# The leaves and roots of the certificate-transparency reference tests (merkle_tree_test).
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_rfc6962_reference_vectors(n: int) -> None:
    builder = RootBuilder()
    for record in CT_LEAVES[:n]:
        builder.add(record)
    assert builder.root().hex() == CT_ROOTS[n - 1]
    assert builder.size == n


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert RootBuilder().root() == EMPTY_ROOT == root_of([])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 33])
def test_every_leaf_proves_its_inclusion(size: int) -> None:
    records = [f"record {i}".encode() for i in range(size)]
    leaves = [leaf_hash(r) for r in records]
    root = root_of(leaves)
    for index, record in enumerate(records):
        path = audit_path(index, leaves)
        assert verify_inclusion(record, index, size, path, root)
        # The same path proves nothing for another record or index (the tree size comes
        # from the signed SEAL, not from the path).
        assert not verify_inclusion(record + b"x", index, size, path, root)
        if size > 1:
            assert not verify_inclusion(record, (index + 1) % size, size, path, root)


def test_a_path_of_the_wrong_length_is_refused() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(6)]
    path = audit_path(2, leaves)
    assert root_from_path(leaves[2], 2, 6, path[:-1]) is None
    assert root_from_path(leaves[2], 2, 6, [*path, path[0]]) is None
    assert root_from_path(leaves[2], 6, 6, path) is None
    with pytest.raises(IndexError):
        audit_path(6, leaves)


def test_change_remove_reorder_and_add_all_change_the_root() -> None:
    records = [f"r{i}".encode() for i in range(5)]
    root = root_of(leaf_hash(r) for r in records)
    variants = [
        [records[0], b"r1!", *records[2:]],
        records[:2] + records[3:],
        [records[1], records[0], *records[2:]],
        [*records, b"r5"],
        # A node's two children presented as one leaf: the 0x00/0x01 prefixes tell them apart.
        [leaf_hash(records[0]) + leaf_hash(records[1]), *records[2:]],
    ]
    for variant in variants:
        assert root_of(leaf_hash(r) for r in variant) != root
