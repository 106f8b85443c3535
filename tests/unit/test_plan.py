"""The plan: part arithmetic tables and diff decisions (pure functions)."""

from __future__ import annotations

import itertools

import pytest

from bascule.age.sizes import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    ciphertext_size,
    header_length,
)
from bascule.connectors.base import Capabilities, ObjectInfo
from bascule.migration.plan import (
    DatasetSpec,
    JournalObject,
    MigrationPlan,
    fit_part_size,
    part_count,
    plan_dataset,
    plan_parts,
    target_key_for,
)

MiB = 1024 * 1024
CAPS = Capabilities(resumable_parts=True, min_part_size=5 * MiB)


@pytest.mark.parametrize(
    ("size", "part_size", "parts"),
    [(0, 8 * MiB, 1), (1, 8 * MiB, 1), (8 * MiB, 8 * MiB, 1), (8 * MiB + 1, 8 * MiB, 2),
     (24 * MiB, 8 * MiB, 3), (24 * MiB - 1, 8 * MiB, 3)],
)  # fmt: skip
def test_part_count(size: int, part_size: int, parts: int) -> None:
    assert part_count(size, part_size) == parts


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, 16), (1, 17), (CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE),
     (CHUNK_SIZE + 1, ENCRYPTED_CHUNK_SIZE + 17), (3 * CHUNK_SIZE, 3 * ENCRYPTED_CHUNK_SIZE)],
)  # fmt: skip
def test_ciphertext_size_matches_age_stream(size: int, expected: int) -> None:
    hlen = header_length(1)
    assert ciphertext_size(size, hlen) == hlen + NONCE_SIZE + expected


def test_header_length_matches_what_age_writes() -> None:
    from bascule.age import stream as age

    for n in (1, 2, 5):
        rs = [age.X25519Identity.generate().recipient() for _ in range(n)]
        assert len(age.new_file(rs).header) == header_length(n)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, 8 * MiB, 8 * MiB + 1, 20 * MiB + 12345])
def test_encrypted_parts_tile_the_ciphertext(size: int) -> None:
    hlen = header_length(2)
    parts = plan_parts(size, 8 * MiB, True, hlen)
    assert parts[0].cipher_offset == 0
    for a, b in itertools.pairwise(parts):
        assert a.cipher_offset + a.cipher_length == b.cipher_offset
        assert a.plain_offset + a.plain_length == b.plain_offset
        assert b.cipher_offset == hlen + NONCE_SIZE + b.first_chunk * ENCRYPTED_CHUNK_SIZE
    last = parts[-1]
    assert last.final and not any(p.final for p in parts[:-1])
    assert last.cipher_offset + last.cipher_length == ciphertext_size(size, hlen)
    assert sum(p.plain_length for p in parts) == size


def test_plain_parts_equal_plain_ranges() -> None:
    parts = plan_parts(17 * MiB, 8 * MiB, False, 0)
    assert [(p.cipher_offset, p.cipher_length) for p in parts] == [
        (0, 8 * MiB), (8 * MiB, 8 * MiB), (16 * MiB, MiB)
    ]  # fmt: skip


def test_fit_part_size_doubles_until_within_part_limit() -> None:
    caps = Capabilities(max_parts=10, max_part_size=64 * MiB)
    assert fit_part_size(80 * MiB, 8 * MiB, caps) == 8 * MiB
    assert fit_part_size(81 * MiB, 8 * MiB, caps) == 16 * MiB
    with pytest.raises(ValueError, match="part limit"):
        fit_part_size(700 * MiB, 8 * MiB, caps)


def test_target_key_keeps_the_path_below_the_prefix() -> None:
    assert (
        target_key_for("dcir/2023/a b/é.csv", "dcir/2023/", "snds/dcir/") == "snds/dcir/a b/é.csv"
    )


SPEC = DatasetSpec("ds", "src/", "dst/", True, 8 * MiB, 1)


def _obj(key: str, size: int = 10, etag: str = "e1") -> ObjectInfo:
    return ObjectInfo(key=key, size=size, etag=etag)


def test_plan_decides_new_changed_unchanged_missing_and_extra() -> None:
    hlen = header_length(1)
    source = [_obj("src/new"), _obj("src/same"), _obj("src/changed", etag="e2"),
              _obj("src/gone"), _obj("src/half")]  # fmt: skip
    target = [_obj("dst/same", size=ciphertext_size(10, hlen)), _obj("dst/stray")]
    journal = {
        "dst/same": JournalObject("dst/same", "e1", 10, ciphertext_size(10, hlen), True),
        "dst/changed": JournalObject("dst/changed", "e1", 10, ciphertext_size(10, hlen), True),
        "dst/gone": JournalObject("dst/gone", "e1", 10, ciphertext_size(10, hlen), True),
        "dst/half": JournalObject("dst/half", "e1", 10, ciphertext_size(10, hlen), False),
    }
    plan = plan_dataset(SPEC, source, target, journal, CAPS)
    actions = {o.source_key: o.action for o in plan.objects}
    assert actions == {"src/new": "new", "src/changed": "changed",
                       "src/gone": "missing-on-target", "src/half": "resume"}  # fmt: skip
    assert plan.unchanged == ("src/same",)
    assert plan.extra == ("dst/stray",)


def test_plan_blocks_keys_and_sizes_the_target_cannot_store() -> None:
    caps = Capabilities(max_key_bytes=20, max_object_size=100, max_parts=2, max_part_size=8 * MiB)
    source = [_obj("src/" + "k" * 30), _obj("src/big", size=101), _obj("src/ok")]
    plan = plan_dataset(SPEC, source, [], {}, caps)
    reasons = {b.source_key: b.reason for b in plan.blocked}
    assert "above the target's 20" in reasons["src/" + "k" * 30]
    assert "object limit" in reasons["src/big"]
    assert [o.source_key for o in plan.objects] == ["src/ok"]


def test_plan_round_trips_through_dict() -> None:
    plan = MigrationPlan((plan_dataset(SPEC, [_obj("src/a", 20 * MiB)], [], {}, CAPS),))
    again = MigrationPlan.from_dict(plan.to_dict())
    assert again == plan
    assert again.parts == 3


def _no_tmp(key: str) -> str | None:
    return (
        "a 'tmp' segment is reserved on this target; rename it" if "tmp" in key.split("/") else None
    )


def test_plan_blocks_target_keys_the_target_says_it_cannot_store() -> None:
    source = [_obj("src/tmp/x"), _obj("src/ok"), _obj("src/b/tmp")]
    plan = plan_dataset(SPEC, source, [], {}, CAPS, key_problem=_no_tmp)
    assert [(b.source_key, b.target_key) for b in plan.blocked] == [
        ("src/b/tmp", "dst/b/tmp"), ("src/tmp/x", "dst/tmp/x")
    ]  # key order, as the streamed plan gives it  # fmt: skip
    assert all("'tmp' segment" in b.reason for b in plan.blocked)
    assert [o.source_key for o in plan.objects] == ["src/ok"]
    data = MigrationPlan((plan,)).to_dict()
    assert data["totals"]["blocked"] == 2
    assert data["datasets"][0]["blocked"][0]["target_key"] == "dst/b/tmp"
    assert MigrationPlan.from_dict(data) == MigrationPlan((plan,))


@pytest.mark.parametrize("key", ["src/a/../../x", "src/./a", "src/a\x00b", "src/b/.."])
def test_plan_blocks_keys_no_target_can_store_whatever_the_target_says(key: str) -> None:
    plan = plan_dataset(SPEC, [_obj(key)], [], {}, CAPS)
    assert [b.source_key for b in plan.blocked] == [key]
    assert "rename" in plan.blocked[0].reason


def test_plan_blocks_a_key_that_is_not_utf8_without_crashing() -> None:
    plan = plan_dataset(SPEC, [_obj("src/caf\udce9.csv")], [], {}, CAPS)
    assert [b.source_key for b in plan.blocked] == ["src/caf\udce9.csv"]
    assert "UTF-8" in plan.blocked[0].reason
