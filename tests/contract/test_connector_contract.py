"""One conformance suite for every connector (rclone's fstests, in spirit).

Every test runs on every backend of `tests.conftest.BACKENDS`. A test is skipped only where
the connector's `Capabilities` declare the lack (the reason names it), or where the backend
has no such thing at all (no credentials on a local folder or in memory).

Listing sizes: the listing test sets a page size and seeds ten and a half pages of keys, so
that one listing ends on a partial page and a listing of a longer prefix (the first ten pages'
keys) ends on a full one. In memory: 10,500 objects in pages of 1,000. Elsewhere each object
costs a request or an fsync, so 1,050 objects in pages of 100 (paging, laziness and key order
do not depend on the page size; 10,000 objects took one to two and a half minutes per server).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from bascule.connectors.base import (
    ByteRange,
    Connector,
    KiB,
    PartReceipt,
    PartWriterOpener,
    PushReader,
)
from bascule.errors import (
    AccessDenied,
    ConnectorError,
    ContainerNotFound,
    ObjectNotFound,
    PreconditionFailed,
    UnsupportedOperation,
)
from bascule.migration.retry import call_with_retries
from tests.conftest import Backend

# (objects, page size, the prefix of the first ten pages' keys) for the listing test.
MEMORY_LISTING = (10_500, 1_000, "many/0")
LISTING = (1_050, 100, "many/00")


def payload(size: int, seed: str = "x") -> bytes:
    """Deterministic, non-repeating bytes (so an off-by-one read is visible)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}-{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def put_bytes(connector: Connector, key: str, data: bytes, **meta: str) -> None:
    connector.put(key, io.BytesIO(data), len(data), metadata=meta or None)


def read_all(connector: Connector, key: str, **kwargs: Any) -> bytes:
    with connector.open_read(key, **kwargs) as stream:
        return stream.read()


def part_writer_opener(connector: Connector) -> PartWriterOpener:
    if not (isinstance(connector, PartWriterOpener) and connector.capabilities.resumable_parts):
        pytest.skip(f"{connector.url}: capabilities declare no resumable parts")
    return connector


def set_page_size(connector: Connector, size: int) -> None:
    if hasattr(connector, "list_page_size"):
        connector.list_page_size = size


# --- listing ----------------------------------------------------------------------------------


def test_list_is_lazy_paged_and_in_key_order(backend: Backend) -> None:
    count, page_size, ten_pages_prefix = MEMORY_LISTING if backend.name == "memory" else LISTING
    keys = [f"many/{i:05d}.bin" for i in range(count)]
    seeder = backend.make_seeder() if backend.make_seeder else backend.make()

    def seed(key: str) -> None:
        # Seeding is not under test: `rclone serve s3` answers a rare 500 to concurrent
        # first writes under one new prefix, which the retry policy absorbs as in a copy.
        call_with_retries(lambda: put_bytes(seeder, key, b"k"), seeder.should_retry, 5)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(seed, keys))
    put_bytes(seeder, "other/outside.bin", b"o")

    assert count % page_size  # the whole listing ends on a partial page
    _check_lazy_paged_listing(backend, "many/", keys, page_size)
    ten_pages = [k for k in keys if k.startswith(ten_pages_prefix)]
    assert len(ten_pages) == 10 * page_size  # this one ends on a full page
    _check_lazy_paged_listing(backend, ten_pages_prefix, ten_pages, page_size)


def _check_lazy_paged_listing(
    backend: Backend, prefix: str, keys: list[str], page_size: int
) -> None:
    """`list(prefix)` is an iterator that had fetched one page when its first object came
    out, yields exactly `keys` in order, and fetched at least one page per `page_size`."""
    connector = backend.make()
    set_page_size(connector, page_size)
    # memory: make() gives the same connector each time, and its counter goes on
    pages_before = getattr(connector, "list_pages_fetched", None)
    listing = connector.list(prefix)
    assert isinstance(listing, Iterator)
    assert not isinstance(listing, list | tuple)
    first = next(listing)
    pages_after_first = getattr(connector, "list_pages_fetched", None)
    seen = [first.key, *(info.key for info in listing)]

    assert seen == keys
    if pages_before is not None and pages_after_first is not None:
        # Only the first page had been fetched when the first object came out.
        assert pages_after_first - pages_before == 1
        pages = connector.list_pages_fetched - pages_before  # type: ignore[attr-defined]
        assert pages >= math.ceil(len(keys) / page_size)
        print(f"{backend.name} {prefix}: {pages} pages of {page_size}")
    else:
        print(f"{backend.name}: no page counter (lists one directory at a time)")


def test_list_prefix_is_a_string_prefix(connector_factory: Any) -> None:
    connector = connector_factory()
    for key in ("a/b", "a-b", "a/c/d", "ab", "b"):
        put_bytes(connector, key, key.encode())
    assert [o.key for o in connector.list("a")] == ["a-b", "a/b", "a/c/d", "ab"]
    assert [o.key for o in connector.list("a/")] == ["a/b", "a/c/d"]
    assert [o.key for o in connector.list("a/c")] == ["a/c/d"]
    assert [o.key for o in connector.list("zzz")] == []
    sizes = {o.key: o.size for o in connector.list()}
    assert sizes == {"a/b": 3, "a-b": 3, "a/c/d": 5, "ab": 2, "b": 1}


# --- reads ------------------------------------------------------------------------------------


def test_ranged_reads_at_start_boundaries_and_last_byte(connector_factory: Any) -> None:
    connector = connector_factory()
    part = 64 * KiB
    data = payload(3 * part + 17)
    put_bytes(connector, "ranged.bin", data)
    cases = [
        (0, 1),
        (0, part),
        (part - 1, 2),  # straddles a part boundary
        (part, part),
        (2 * part, part + 17),
        (len(data) - 1, 1),  # last byte
        (len(data) - 5, 50),  # past the end: clipped
        (len(data), 10),  # starts at the end: empty
        (123, 0),  # empty range
    ]
    for start, length in cases:
        got = read_all(connector, "ranged.bin", byte_range=ByteRange(start, length))
        assert got == data[start : start + length], (start, length)
    assert read_all(connector, "ranged.bin") == data


def test_if_match_on_a_stale_etag_is_refused(connector_factory: Any) -> None:
    connector = connector_factory()
    put_bytes(connector, "changing.bin", b"version one")
    old = connector.stat("changing.bin").etag
    put_bytes(connector, "changing.bin", b"version two!")
    new = connector.stat("changing.bin").etag
    assert old != new
    assert read_all(connector, "changing.bin", if_match=new) == b"version two!"
    rng = ByteRange(0, 7)
    assert read_all(connector, "changing.bin", if_match=new, byte_range=rng) == b"version"
    with pytest.raises(PreconditionFailed):
        read_all(connector, "changing.bin", if_match=old)
    with pytest.raises(PreconditionFailed):
        read_all(connector, "changing.bin", if_match=old, byte_range=rng)


def test_missing_object(connector_factory: Any) -> None:
    connector = connector_factory()
    with pytest.raises(ObjectNotFound):
        connector.stat("nope/missing.bin")
    with pytest.raises(ObjectNotFound):
        read_all(connector, "nope/missing.bin")


# The connectors that read from a network implement PushReader (the data path's reads);
# local folders, memory and the rclone CLI connector have streams only.
PUSH_BACKENDS = pytest.mark.parametrize(
    "backend", ["azure_blob", "s3_rclone", "s3_moto"], indirect=True
)


def push_reader(connector: Connector) -> PushReader:
    assert isinstance(connector, PushReader), connector.url
    return connector


def pushed(connector: Connector, key: str, rng: ByteRange, if_match: str | None = None) -> bytes:
    pieces: list[bytes] = []
    push_reader(connector).read_to(key, rng, pieces.append, if_match=if_match)
    return b"".join(pieces)


@PUSH_BACKENDS
def test_pushed_reads_hand_over_what_ranged_reads_return(connector_factory: Any) -> None:
    connector = connector_factory()
    push_reader(connector)
    data = payload(5 * 64 * KiB + 17)  # several network pieces
    put_bytes(connector, "pushed.bin", data)
    end = len(data)
    cases = [(0, 1), (0, end), (KiB - 1, 3 * 64 * KiB), (end - 5, 50), (end, 9), (7, 0)]
    for start, length in cases:
        got = pushed(connector, "pushed.bin", ByteRange(start, length))
        assert got == data[start : start + length], (start, length)


@PUSH_BACKENDS
def test_a_pushed_read_checks_the_etag_before_any_byte(connector_factory: Any) -> None:
    connector = connector_factory()
    push_reader(connector)
    put_bytes(connector, "changing.bin", b"version one")
    old = connector.stat("changing.bin").etag
    put_bytes(connector, "changing.bin", b"version two!")
    new = connector.stat("changing.bin").etag
    assert pushed(connector, "changing.bin", ByteRange(0, 7), if_match=new) == b"version"
    received: list[bytes] = []
    with pytest.raises(PreconditionFailed):
        push_reader(connector).read_to(
            "changing.bin", ByteRange(0, 7), received.append, if_match=old
        )
    assert received == []
    with pytest.raises(ObjectNotFound):
        pushed(connector, "nope/missing.bin", ByteRange(0, 10))


@PUSH_BACKENDS
def test_an_error_of_the_sink_stops_the_read_and_comes_out_unchanged(
    connector_factory: Any,
) -> None:
    connector = connector_factory()
    reader = push_reader(connector)
    data = payload(4 * 64 * KiB)
    put_bytes(connector, "big.bin", data)
    mine = RuntimeError("the sink's own error")
    calls = 0

    def sink(piece: bytes) -> None:
        nonlocal calls
        calls += 1
        raise mine

    with pytest.raises(RuntimeError) as caught:
        reader.read_to("big.bin", ByteRange(0, len(data)), sink)
    assert caught.value is mine
    assert calls == 1  # stopped at the first piece
    assert pushed(connector, "big.bin", ByteRange(0, len(data))) == data  # next read is fine


# --- writes -----------------------------------------------------------------------------------


def test_put_stat_metadata_round_trip(connector_factory: Any) -> None:
    connector = connector_factory()
    data = payload(1000)
    meta = {"bascule-encryption": "age-v1", "source-etag": "e1"}
    put_bytes(connector, "meta.bin", data, **meta)
    info = connector.stat("meta.bin")
    assert info.key == "meta.bin"
    assert info.size == 1000
    assert info.etag
    assert info.last_modified is not None
    assert info.metadata == meta
    assert read_all(connector, "meta.bin") == data


def test_reported_checksums_are_right(connector_factory: Any) -> None:
    connector = connector_factory()
    data = payload(70_000, "sum")
    put_bytes(connector, "summed.bin", data)
    checksums = connector.stat("summed.bin").checksums
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    if connector.capabilities.server_side_checksums:
        assert checksums, "capabilities promise provider checksums"
    if "content-md5" in checksums:
        assert checksums["content-md5"] == md5
    if "sha256" in checksums:
        assert checksums["sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize(
    "key",
    [
        "with space/file name.csv",
        "données/été/ñandú-ü €.parquet",
        "a/b/c/d/e/f/g/h/i/j/deep.jsonl",
        "dcir/2023/01 - janvier (v2).csv",
    ],
)
def test_unusual_keys_round_trip(connector_factory: Any, key: str) -> None:
    connector = connector_factory()
    assert connector.key_problem(key) is None
    put_bytes(connector, key, key.encode())
    assert [o.key for o in connector.list()] == [key]
    assert connector.stat(key).size == len(key.encode())
    assert read_all(connector, key) == key.encode()
    connector.delete(key)
    assert list(connector.list()) == []


@pytest.mark.parametrize("key", ["", "a/../b", "../a", "a/./b", ".", "a\x00b", "caf\udce9.csv"])
def test_key_problem_names_keys_no_target_can_hold(connector_factory: Any, key: str) -> None:
    problem = connector_factory().key_problem(key)
    assert problem is not None and "rename" in problem


# Per backend: (a key at the limit, the same key one past it).
KEY_LIMITS = {
    "local": ("d/" + "n" * 250, "d/" + "n" * 251),  # room for the ".json" sidecar
    "memory": ("é" * 512, "é" * 512 + "x"),
    "s3_moto": ("é" * 512, "é" * 512 + "x"),
    "s3_rclone": ("é" * 512, "é" * 512 + "x"),
    "rclone": ("é" * 512, "é" * 512 + "x"),
    "azure_blob": ("é" * 1024, "é" * 1025),
}


def test_key_problem_knows_the_backend_length_limits(backend: Backend) -> None:
    connector = backend.make()
    fits, too_long = KEY_LIMITS[backend.name]
    assert connector.key_problem(fits) is None
    assert connector.key_problem(too_long) is not None
    if backend.name == "azure_blob":  # Azure drops a trailing dot or slash from names
        assert connector.key_problem("d/name.") is not None


def test_zero_byte_object(connector_factory: Any) -> None:
    connector = connector_factory()
    put_bytes(connector, "empty/zero.bin", b"")
    assert connector.stat("empty/zero.bin").size == 0
    assert [(o.key, o.size) for o in connector.list("empty/")] == [("empty/zero.bin", 0)]
    assert read_all(connector, "empty/zero.bin") == b""
    assert read_all(connector, "empty/zero.bin", byte_range=ByteRange(0, 10)) == b""


def test_delete_of_a_missing_key_is_fine(connector_factory: Any) -> None:
    connector = connector_factory()
    connector.delete("never/existed.bin")
    put_bytes(connector, "gone.bin", b"1")
    connector.delete("gone.bin")
    connector.delete("gone.bin")
    with pytest.raises(ObjectNotFound):
        connector.stat("gone.bin")


# --- parts ------------------------------------------------------------------------------------


def _part_size(connector: Connector) -> int:
    return max(connector.capabilities.min_part_size, 64 * KiB)


def test_parts_out_of_order_one_rewritten_commit_exact_bytes(connector_factory: Any) -> None:
    connector = connector_factory()
    opener = part_writer_opener(connector)
    size = _part_size(connector)
    parts = {1: payload(size, "p1"), 2: payload(size, "p2"), 3: payload(1000, "p3")}
    writer = opener.open_writer("parts/object.bin", metadata={"kind": "parts"})
    receipts: dict[int, PartReceipt] = {}
    receipts[3] = writer.write_part(3, parts[3])
    receipts[2] = writer.write_part(2, parts[2])
    receipts[1] = writer.write_part(1, parts[1])
    receipts[2] = writer.write_part(2, parts[2])  # a retried part: the same bytes again
    assert [(r.number, r.size) for r in writer.list_parts()] == [(1, size), (2, size), (3, 1000)]
    # Nothing is visible before commit.
    assert list(connector.list("parts/")) == []

    info = writer.commit([receipts[1], receipts[2], receipts[3]])
    expected = parts[1] + parts[2] + parts[3]
    assert info.size == len(expected)
    assert read_all(connector, "parts/object.bin") == expected
    assert connector.stat("parts/object.bin").metadata == {"kind": "parts"}
    boundary = ByteRange(size - 3, 6)
    assert (
        read_all(connector, "parts/object.bin", byte_range=boundary)
        == expected[size - 3 : size + 3]
    )
    assert list(opener.list_uploads("parts/")) == []


def test_a_part_handed_as_a_view_is_read_during_the_call_only(connector_factory: Any) -> None:
    """Parts are built in a buffer each worker thread reuses: a writer gets a view of it,
    valid during `write_part` only, and must not keep it (the next part overwrites it)."""
    connector = connector_factory()
    opener = part_writer_opener(connector)
    size = _part_size(connector)
    parts = [payload(size, "v1"), payload(size // 2, "v2")]
    buffer = bytearray(size)
    writer = opener.open_writer("parts/viewed.bin")
    receipts = []
    for number, data in enumerate(parts, start=1):
        buffer[: len(data)] = data
        receipts.append(writer.write_part(number, memoryview(buffer)[: len(data)]))
    buffer[:] = bytes(size)
    writer.commit(receipts)
    assert read_all(connector, "parts/viewed.bin") == parts[0] + parts[1]


def test_part_rewritten_with_new_bytes_as_capabilities_declare(connector_factory: Any) -> None:
    """With `part_rewrite` the last write of a part wins; without it, the rewrite is refused
    (UnsupportedOperation), never committed silently with the old bytes."""
    connector = connector_factory()
    opener = part_writer_opener(connector)
    size = _part_size(connector)
    writer = opener.open_writer("rewrite.bin")
    writer.write_part(1, payload(size, "old"))
    last = writer.write_part(2, b"tail")
    if not connector.capabilities.part_rewrite:
        with pytest.raises(UnsupportedOperation):
            writer.write_part(1, payload(size, "new"))
        writer.abort()
        return
    first = writer.write_part(1, payload(size, "new"))
    writer.commit([first, last])
    assert read_all(connector, "rewrite.bin") == payload(size, "new") + b"tail"


def test_resume_token_reattaches_from_a_new_connector(connector_factory: Any) -> None:
    connector = connector_factory()
    opener = part_writer_opener(connector)
    size = _part_size(connector)
    writer = opener.open_writer("resume/object.bin")
    first = writer.write_part(1, payload(size, "r1"))
    token = writer.resume_token

    fresh = connector_factory()
    restarted = part_writer_opener(fresh)
    again = restarted.open_writer("resume/object.bin", resume_token=token)
    assert again.list_parts() == [first]
    second = again.write_part(2, b"tail")
    again.commit([first, second])
    assert read_all(fresh, "resume/object.bin") == payload(size, "r1") + b"tail"
    with pytest.raises(ObjectNotFound):
        restarted.open_writer("resume/object.bin", resume_token=token)


def test_abort_leaves_nothing(connector_factory: Any) -> None:
    connector = connector_factory()
    opener = part_writer_opener(connector)
    writer = opener.open_writer("aborted/object.bin")
    writer.write_part(1, payload(_part_size(connector)))
    writer.write_part(2, b"end")
    writer.abort()
    writer.abort()  # twice is fine
    assert list(connector.list()) == []
    assert list(opener.list_uploads()) == []
    with pytest.raises(ObjectNotFound):
        connector.stat("aborted/object.bin")


def test_abort_over_an_existing_object_keeps_it(connector_factory: Any) -> None:
    connector = connector_factory()
    opener = part_writer_opener(connector)
    put_bytes(connector, "existing.bin", b"committed before", origin="first")
    before = connector.stat("existing.bin")
    writer = opener.open_writer("existing.bin")
    writer.write_part(1, payload(_part_size(connector)))
    writer.abort()
    after = connector.stat("existing.bin")
    assert read_all(connector, "existing.bin") == b"committed before"
    assert (after.size, after.metadata) == (before.size, {"origin": "first"})


def test_abandoned_upload_is_listed_and_aborted(connector_factory: Any) -> None:
    connector = connector_factory()
    opener = part_writer_opener(connector)
    put_bytes(connector, "orphans/kept.bin", b"committed")
    writer = opener.open_writer("orphans/lost.bin")
    writer.write_part(1, b"half-written")
    token = writer.resume_token
    del writer  # the process "crashed"

    later = part_writer_opener(connector_factory())
    pending = list(later.list_uploads("orphans/"))
    assert [p.key for p in pending] == ["orphans/lost.bin"]
    assert list(later.list_uploads("elsewhere/")) == []
    later.abort_upload(pending[0].key, pending[0].resume_token)
    later.abort_upload(pending[0].key, pending[0].resume_token)  # already gone: fine
    assert list(later.list_uploads()) == []
    assert [o.key for o in connector.list()] == ["orphans/kept.bin"]
    assert read_all(connector, "orphans/kept.bin") == b"committed"
    with pytest.raises(ObjectNotFound):
        later.open_writer("orphans/lost.bin", resume_token=token)


def test_commit_with_a_part_missing_fails(connector_factory: Any) -> None:
    connector = connector_factory()
    opener = part_writer_opener(connector)
    writer = opener.open_writer("incomplete.bin")
    one = writer.write_part(1, b"only part")
    with pytest.raises(ConnectorError):
        writer.commit([one, PartReceipt(2, 10, "not-written")])
    writer.abort()


# --- errors -----------------------------------------------------------------------------------


def test_wrong_credentials_are_access_denied(backend: Backend) -> None:
    if backend.make_bad_credentials is None:
        pytest.skip(f"{backend.name}: no credentials to get wrong")
    connector = backend.make_bad_credentials()
    with backend.checking_credentials():
        with pytest.raises(AccessDenied):
            list(connector.list())
        with pytest.raises(AccessDenied):
            connector.stat("any.bin")
        with pytest.raises(AccessDenied):
            put_bytes(connector, "any.bin", b"data")


def test_missing_container(backend: Backend) -> None:
    connector = backend.make_missing_container()
    with pytest.raises(ContainerNotFound):
        list(connector.list())
    with pytest.raises(ContainerNotFound):
        connector.stat("any.bin")
    with pytest.raises(ContainerNotFound):
        put_bytes(connector, "any.bin", b"data")
