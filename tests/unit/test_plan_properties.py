"""Property tests for part and age-chunk arithmetic and for plan diffs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.age.sizes import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    ciphertext_size,
    header_length,
)
from bascule.connectors.base import Capabilities, ObjectInfo
from bascule.migration.plan import DatasetSpec, JournalObject, plan_dataset, plan_parts

MiB = 1024 * 1024
sizes = st.integers(min_value=0, max_value=200 * MiB)
part_sizes = st.sampled_from([5 * MiB, 8 * MiB, 16 * MiB, 64 * MiB])


@settings(max_examples=300, deadline=None)
@given(size=sizes, part_size=part_sizes, recipients=st.integers(1, 4), encrypt=st.booleans())
def test_parts_tile_plaintext_and_ciphertext_exactly(
    size: int, part_size: int, recipients: int, encrypt: bool
) -> None:
    hlen = header_length(recipients) if encrypt else 0
    parts = plan_parts(size, part_size, encrypt, hlen)
    plain_end = cipher_end = 0
    for p in parts:
        assert p.plain_offset == plain_end and p.cipher_offset == cipher_end
        assert p.plain_offset % CHUNK_SIZE == 0 and p.first_chunk == p.plain_offset // CHUNK_SIZE
        assert p.plain_length <= part_size
        plain_end += p.plain_length
        cipher_end += p.cipher_length
    assert plain_end == size
    assert cipher_end == (ciphertext_size(size, hlen) if encrypt else size)
    assert [p.final for p in parts] == [False] * (len(parts) - 1) + [True]


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 50 * MiB), offset=st.integers(0, 50 * MiB))
def test_chunk_k_sits_at_its_fixed_offset(size: int, offset: int) -> None:
    hlen = header_length(2)
    k = min(offset, size - 1) // CHUNK_SIZE
    parts = plan_parts(size, 5 * MiB, True, hlen)
    part = next(
        p for p in parts if p.first_chunk <= k < p.first_chunk + -(-p.plain_length // CHUNK_SIZE)
    )
    start = hlen + NONCE_SIZE + k * ENCRYPTED_CHUNK_SIZE
    inner = (k - part.first_chunk) * ENCRYPTED_CHUNK_SIZE + (
        hlen + NONCE_SIZE if part.number == 1 else 0
    )
    assert part.cipher_offset + inner == start


keys = st.lists(st.text("abcé /", min_size=1, max_size=6), min_size=0, max_size=20, unique=True)


@settings(max_examples=200, deadline=None)
@given(
    keys=keys,
    data=st.data(),
)
def test_plan_diff_partitions_the_source_and_finds_every_extra(
    keys: list[str], data: st.DataObject
) -> None:
    spec = DatasetSpec("ds", "s/", "t/", True, 5 * MiB, 1)
    hlen = header_length(1)
    source = [ObjectInfo(f"s/{k}", size=len(k), etag=f"e-{k}") for k in keys]
    copied = data.draw(st.sets(st.sampled_from(keys))) if keys else set()
    changed = data.draw(st.sets(st.sampled_from(sorted(copied)))) if copied else set()
    journal = {
        f"t/{k}": JournalObject(f"t/{k}", "old" if k in changed else f"e-{k}", len(k),
                                ciphertext_size(len(k), hlen), True)
        for k in copied
    }  # fmt: skip
    stray = data.draw(st.sets(st.text("xyz", min_size=1, max_size=3)))
    target = [ObjectInfo(f"t/{k}", size=ciphertext_size(len(k), hlen)) for k in copied]
    target += [ObjectInfo(f"t/~{s}", size=1) for s in stray]
    plan = plan_dataset(spec, source, target, journal, Capabilities())
    to_copy = {o.source_key for o in plan.objects}
    assert to_copy | set(plan.unchanged) == {o.key for o in source}
    assert not to_copy & set(plan.unchanged)
    assert set(plan.unchanged) == {f"s/{k}" for k in copied - changed}
    assert set(plan.extra) == {f"t/~{s}" for s in stray}
