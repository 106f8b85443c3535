"""The streamed plan: the merge against the old in-memory diff, its counters, its laziness."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.age.sizes import ciphertext_size, header_length
from bascule.connectors.base import Capabilities, ObjectInfo
from bascule.errors import ConnectorError
from bascule.migration.journal import Journal
from bascule.migration.plan import (
    Blocked,
    DatasetSpec,
    DatasetTally,
    Extra,
    JournalObject,
    ObjectPlan,
    Unchanged,
    in_key_order,
    item_record,
    plan_dataset,
    stream_dataset,
    target_key_for,
)

MiB = 1024 * 1024
SPEC = DatasetSpec("ds", "s/", "t/", True, 5 * MiB, 1)
HLEN = header_length(1)
CAPS = Capabilities(max_key_bytes=12, max_object_size=40)


def _reference(
    spec: DatasetSpec,
    source: Iterable[ObjectInfo],
    target: Iterable[ObjectInfo],
    journal: Mapping[str, JournalObject],
    caps: Capabilities,
) -> tuple[dict[str, str], set[str], set[str], set[str]]:
    """The diff as it was made in memory before the merge (dicts and sets, any order):
    (action by source key, unchanged source keys, extra target keys, blocked source keys)."""
    on_target = {o.key: o for o in target}
    actions: dict[str, str] = {}
    unchanged: set[str] = set()
    blocked: set[str] = set()
    mapped: set[str] = set()
    for obj in source:
        key = target_key_for(obj.key, spec.source_prefix, spec.target_prefix)
        mapped.add(key)
        if len(key.encode()) > caps.max_key_bytes or obj.size > caps.max_object_size:
            blocked.add(obj.key)
            continue
        known, seen = journal.get(key), on_target.get(key)
        if known is None:
            actions[obj.key] = "new"
        elif known.source_etag != obj.etag or known.source_size != obj.size:
            actions[obj.key] = "changed"
        elif not known.committed:
            actions[obj.key] = "resume"
        elif seen is None or seen.size != known.target_size:
            actions[obj.key] = "missing-on-target"
        else:
            unchanged.add(obj.key)
    return actions, unchanged, set(on_target) - mapped, blocked


names = st.text("ab/é-\U0001f600", min_size=1, max_size=6)


@st.composite
def listings(
    draw: st.DrawFn,
) -> tuple[list[ObjectInfo], list[ObjectInfo], dict[str, JournalObject]]:
    keys = draw(st.lists(names, max_size=30, unique=True))
    source = [ObjectInfo(f"s/{k}", draw(st.integers(0, 50)), f"e-{k}") for k in keys]
    journal: dict[str, JournalObject] = {}
    target: dict[str, ObjectInfo] = {}
    for obj in source:
        key = "t/" + obj.key[2:]
        state = draw(st.sampled_from(["none", "same", "changed", "half"]))
        size = ciphertext_size(obj.size, HLEN)
        if state != "none":
            etag = "old" if state == "changed" else obj.etag
            journal[key] = JournalObject(key, etag, obj.size, size, state != "half")
        if draw(st.booleans()):
            target[key] = ObjectInfo(key, size if draw(st.booleans()) else size + 1)
    for k in draw(st.lists(names, max_size=10)):  # journal rows of deleted sources, strays
        journal.setdefault("t/" + k, JournalObject("t/" + k, "gone", 1, 1, True))
        target.setdefault("t/~" + k, ObjectInfo("t/~" + k, 1))
    return source, list(target.values()), journal


@settings(max_examples=300, deadline=None)
@given(data=listings())
def test_merge_decides_as_the_in_memory_diff_did(
    data: tuple[list[ObjectInfo], list[ObjectInfo], dict[str, JournalObject]],
) -> None:
    source, target, journal = data
    actions, unchanged, extra, blocked = _reference(SPEC, source, target, journal, CAPS)
    tally = DatasetTally("ds")
    items = list(
        stream_dataset(
            SPEC,
            sorted(source, key=lambda o: o.key),
            sorted(target, key=lambda o: o.key),
            sorted(journal.values(), key=lambda j: j.target_key),
            CAPS,
            tally,
        )
    )
    objects = [i for i in items if isinstance(i, ObjectPlan)]
    assert {o.source_key: o.action for o in objects} == actions
    assert {i.source_key for i in items if isinstance(i, Unchanged)} == unchanged
    assert {i.target_key for i in items if isinstance(i, Extra)} == extra
    assert {i.source_key for i in items if isinstance(i, Blocked)} == blocked
    # one pass, in target-key order
    order = [_target_key(i) for i in items]
    assert order == sorted(order)
    # the counters say what the items say
    assert (tally.objects, tally.unchanged, tally.extra, tally.blocked) == (
        len(actions), len(unchanged), len(extra), len(blocked)
    )  # fmt: skip
    assert tally.bytes_to_copy == sum(o.size for o in objects)
    assert tally.parts == sum(len(o.parts) for o in objects)
    assert tally.first_extra == sorted(extra)[:20]
    # and the collected form is the same plan
    collected = plan_dataset(SPEC, source, target, journal, CAPS)
    assert collected.objects == tuple(objects)
    assert set(collected.unchanged) == unchanged and set(collected.extra) == extra


def _target_key(item: object) -> str:
    if isinstance(item, ObjectPlan | Extra):
        return item.target_key
    assert isinstance(item, Unchanged | Blocked)
    return target_key_for(item.source_key, "s/", "t/")


def test_tally_keeps_only_the_first_blocked_and_extra_by_name() -> None:
    source = [ObjectInfo(f"s/big{i:03d}", 100) for i in range(50)]
    target = [ObjectInfo(f"t/~{i:03d}", 1) for i in range(50)]
    tally = DatasetTally("ds")
    for _ in stream_dataset(SPEC, source, target, [], Capabilities(max_object_size=10), tally):
        pass
    assert (tally.blocked, tally.extra) == (50, 50)
    assert [b.source_key for b in tally.first_blocked] == [f"s/big{i:03d}" for i in range(20)]
    assert tally.first_extra == [f"t/~{i:03d}" for i in range(20)]


def test_a_listing_out_of_key_order_is_refused_naming_the_storage() -> None:
    listing = [ObjectInfo("b", 1), ObjectInfo("a", 1)]
    with pytest.raises(ConnectorError, match=r"s3://bucket listed 'a' after 'b'") as err:
        list(in_key_order(listing, lambda o: o.key, "s3://bucket"))
    assert err.value.connector == "s3://bucket"
    with pytest.raises(ConnectorError, match="out of key order"):  # a duplicate too
        list(in_key_order(["a", "a"], str, "x"))


def test_json_record_of_each_kind_carries_its_fields() -> None:
    items = list(
        stream_dataset(
            SPEC,
            [ObjectInfo("s/a", 10, "e"), ObjectInfo("s/" + "k" * 20, 1)],
            [ObjectInfo("t/z", 1)],
            [],
            CAPS,
        )
    )
    records = [item_record(i) for i in items]
    assert [r["type"] for r in records] == ["object", "blocked", "extra"]
    obj = records[0]
    assert (obj["source_key"], obj["target_key"], obj["action"]) == ("s/a", "t/a", "new")
    assert obj["parts"][0]["cipher_length"] == ciphertext_size(10, HLEN)
    assert records[2] == {"type": "extra", "dataset": "ds", "target_key": "t/z"}


# --- memory: nothing is materialised ----------------------------------------------------------


class Produced:
    """A generator wrapper that counts how many items were drawn from it."""

    def __init__(self, items: Iterator[ObjectInfo]) -> None:
        self.items = items
        self.count = 0

    def __iter__(self) -> Iterator[ObjectInfo]:
        for item in self.items:
            self.count += 1
            yield item


def test_the_merge_reads_its_streams_lazily_and_keeps_no_object_plan() -> None:
    n = 200_000
    spec = DatasetSpec("ds", "s/", "t/", False, 5 * MiB, 1)
    source = Produced(ObjectInfo(f"s/{i:07d}", i % 100, "e") for i in range(n))
    target = Produced(ObjectInfo(f"t/{i:07d}", i % 100) for i in range(0, n, 2))
    journal = (JournalObject(f"t/{i:07d}", "e", i % 100, i % 100, True) for i in range(0, n, 2))
    alive: weakref.WeakSet[ObjectPlan] = weakref.WeakSet()
    tally = DatasetTally("ds")
    seen = 0
    for item in stream_dataset(spec, source, target, journal, Capabilities(), tally):
        seen += 1
        # the source is read one object ahead of what was yielded, never further
        assert source.count <= seen + 1
        assert target.count <= source.count + 1
        if isinstance(item, ObjectPlan):
            alive.add(item)
        del item
        assert len(alive) == 0  # the planner holds no reference to what it yielded
    assert seen == n and source.count == n
    assert (tally.objects, tally.unchanged) == (n // 2, n // 2)


def test_journal_rows_stream_in_key_order_page_by_page(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db", "cfg")
    keys = ["t/b", "t/a/z", "t/a-b", "t/é", "t/\U0001f600", "t/A", "t/ab"]
    for i, key in enumerate(keys):
        journal.begin_object(
            {"dataset": "ds", "source_key": f"s/{i}", "target_key": key, "source_etag": "e",
             "source_size": 1, "target_size": 2, "encrypt": 0, "part_size": 1, "parts": 1,
             "header": None, "nonce": None, "wrapped_key": None, "resume_token": None,
             "run_id": 1}
        )  # fmt: skip
    journal.begin_object(
        {"dataset": "other", "source_key": "s/x", "target_key": "t/c", "source_etag": "e",
         "source_size": 1, "target_size": 2, "encrypt": 0, "part_size": 1, "parts": 1,
         "header": None, "nonce": None, "wrapped_key": None, "resume_token": None,
         "run_id": 1}
    )  # fmt: skip
    rows = list(journal.plan_rows("ds", page=2))
    journal.close()
    assert [r.target_key for r in rows] == sorted(keys)  # Python's order is SQLite's
    assert not any(r.committed for r in rows)
