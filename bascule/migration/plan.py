"""The plan: pure functions from listings and journal state to frozen dataclasses.

Nothing here reads files, calls the network, logs or prints.

At scale the plan is a stream: `stream_dataset` walks three streams sorted by target key
(the source listing mapped to target keys, the target listing, the journal's rows) in one
merge and yields one `PlanItem` at a time, counting into a `DatasetTally` as it goes, so
memory does not grow with the object count. `plan_dataset` is the same decision collected
into a `DatasetPlan` (tests, small datasets); a `MigrationPlan` serialises with
`to_dict`/`from_dict`.

Part arithmetic (age v1 STREAM, see DESIGN.md "Encryption"): plaintext is cut into parts of
`part_size` bytes (a multiple of the 64 KiB age chunk). Part 1 also carries the age header and
the 16-byte payload nonce, so part k (k >= 2) starts at header_len + 16 + first_chunk * 65552.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from bascule.age.sizes import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    ciphertext_size,
    encrypted_length,
    header_length,
)
from bascule.connectors.base import Capabilities, ObjectInfo, object_key_problem
from bascule.errors import ConnectorError

Action = Literal["new", "changed", "missing-on-target", "resume"]
# What the target says of a key it cannot store ("what; what to do"), None when it can.
KeyCheck = Callable[[str], str | None]


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def fit_part_size(size: int, part_size: int, caps: Capabilities) -> int:
    """The smallest multiple of `part_size`'s chunk grid >= part_size that keeps the part count
    within the target's limit. Raises ValueError if even max_part_size cannot."""
    fitted = part_size
    while part_count(size, fitted) > caps.max_parts:
        fitted *= 2
    if fitted > caps.max_part_size:
        raise ValueError(
            f"{size} bytes need parts of {fitted} bytes, above the target's "
            f"{caps.max_part_size}-byte part limit"
        )
    return fitted


@dataclass(frozen=True)
class PartSpec:
    """Part `number` (1-based): plaintext [plain_offset, +plain_length) and, when encrypted,
    ciphertext [cipher_offset, +cipher_length) of the target object."""

    number: int
    plain_offset: int
    plain_length: int
    cipher_offset: int
    cipher_length: int
    first_chunk: int
    final: bool


def plan_parts(size: int, part_size: int, encrypt: bool, header_len: int) -> tuple[PartSpec, ...]:
    """Cut an object of `size` bytes into parts. Unencrypted: cipher ranges equal plain ranges."""
    parts = []
    total = part_count(size, part_size)
    for i in range(total):
        offset = i * part_size
        length = min(part_size, size - offset) if size else 0
        final = i == total - 1
        if encrypt:
            first = offset // CHUNK_SIZE
            prefix = header_len + NONCE_SIZE
            c_off = 0 if i == 0 else prefix + first * ENCRYPTED_CHUNK_SIZE
            c_len = (prefix if i == 0 else 0) + encrypted_length(length)
        else:
            first, c_off, c_len = offset // CHUNK_SIZE, offset, length
        parts.append(PartSpec(i + 1, offset, length, c_off, c_len, first, final))
    return tuple(parts)


@dataclass(frozen=True)
class JournalObject:
    """What the journal knows of one target key (the plan's only view of the journal)."""

    target_key: str
    source_etag: str
    source_size: int
    target_size: int
    committed: bool


@dataclass(frozen=True)
class ObjectPlan:
    dataset: str
    source_key: str
    target_key: str
    size: int
    etag: str
    action: Action
    encrypt: bool
    part_size: int
    target_size: int
    parts: tuple[PartSpec, ...]


@dataclass(frozen=True)
class Blocked:
    """An object the target cannot take as it is; the run must not start while any exists."""

    dataset: str
    source_key: str
    reason: str
    target_key: str = ""


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset's plan held in memory (`plan_dataset`): small datasets and tests. The
    commands read the stream (`stream_dataset`) and keep only its counters."""

    dataset: str
    objects: tuple[ObjectPlan, ...] = ()
    unchanged: tuple[str, ...] = ()  # source keys already copied and unchanged
    unchanged_bytes: int = 0
    extra: tuple[str, ...] = ()  # target keys no source object maps to
    blocked: tuple[Blocked, ...] = ()
    skipped: tuple[str, ...] = ()  # source folders the source's listing leaves out (reserved)

    @property
    def bytes_to_copy(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def parts(self) -> int:
        return sum(len(o.parts) for o in self.objects)


@dataclass(frozen=True)
class MigrationPlan:
    """Collected dataset plans, serialisable with `to_dict`/`from_dict`."""

    datasets: tuple[DatasetPlan, ...] = field(default_factory=tuple)

    @property
    def objects(self) -> int:
        return sum(len(d.objects) for d in self.datasets)

    @property
    def bytes_to_copy(self) -> int:
        return sum(d.bytes_to_copy for d in self.datasets)

    @property
    def parts(self) -> int:
        return sum(d.parts for d in self.datasets)

    @property
    def blocked(self) -> tuple[Blocked, ...]:
        return tuple(b for d in self.datasets for b in d.blocked)

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": [asdict(d) for d in self.datasets],
            "totals": {
                "objects": self.objects,
                "bytes": self.bytes_to_copy,
                "parts": self.parts,
                "blocked": len(self.blocked),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrationPlan:
        return cls(tuple(_dataset_from_dict(d) for d in data["datasets"]))


def _dataset_from_dict(d: Mapping[str, Any]) -> DatasetPlan:
    objects = tuple(
        ObjectPlan(**{**o, "parts": tuple(PartSpec(**p) for p in o["parts"])}) for o in d["objects"]
    )
    return DatasetPlan(
        dataset=d["dataset"],
        objects=objects,
        unchanged=tuple(d["unchanged"]),
        unchanged_bytes=d["unchanged_bytes"],
        extra=tuple(d["extra"]),
        blocked=tuple(Blocked(**b) for b in d["blocked"]),
        skipped=tuple(d.get("skipped", ())),
    )


@dataclass(frozen=True)
class DatasetSpec:
    """The config facts the plan needs for one dataset (no endpoint, no secret)."""

    name: str
    source_prefix: str
    target_prefix: str
    encrypt: bool
    part_size: int
    recipients: int


def target_key_for(source_key: str, source_prefix: str, target_prefix: str) -> str:
    """Target prefix + the key's path below the source prefix, unchanged."""
    return target_prefix + source_key[len(source_prefix) :]


T = TypeVar("T")

# How many blocked objects and extra target keys a tally keeps by name (the counts are exact).
FIRST_N = 20


@dataclass(frozen=True, slots=True)
class Unchanged:
    """A source object already copied, unchanged and present at the expected size."""

    dataset: str
    source_key: str
    size: int


@dataclass(frozen=True, slots=True)
class Extra:
    """A target key no source object maps to."""

    dataset: str
    target_key: str


PlanItem = ObjectPlan | Unchanged | Extra | Blocked


@dataclass(frozen=True)
class Widened:
    """An object whose parts were widened past `transfer.part_size` (the target's part-count
    limit): its key, part count and the part size chosen."""

    source_key: str
    parts: int
    part_size: int


@dataclass
class DatasetTally:
    """The counters of one dataset's plan, filled while its stream is read. The first
    `FIRST_N` blocked objects and extra keys are kept by name, never more."""

    dataset: str
    objects: int = 0
    bytes_to_copy: int = 0
    parts: int = 0
    unchanged: int = 0
    unchanged_bytes: int = 0
    extra: int = 0
    blocked: int = 0
    first_extra: list[str] = field(default_factory=list)
    first_blocked: list[Blocked] = field(default_factory=list)
    # source folders the source connector leaves out on purpose (its reserved folders)
    skipped: tuple[str, ...] = ()
    # objects whose parts were widened past `part_size` to fit the target's part limit
    part_size: int = 0
    widened: int = 0
    first_widened: list[Widened] = field(default_factory=list)

    def count(self, item: PlanItem) -> None:
        if isinstance(item, ObjectPlan):
            self.objects += 1
            self.bytes_to_copy += item.size
            self.parts += len(item.parts)
            if self.part_size and item.part_size != self.part_size:
                self.widened += 1
                if len(self.first_widened) < FIRST_N:
                    self.first_widened.append(
                        Widened(item.source_key, len(item.parts), item.part_size)
                    )
        elif isinstance(item, Unchanged):
            self.unchanged += 1
            self.unchanged_bytes += item.size
        elif isinstance(item, Extra):
            self.extra += 1
            if len(self.first_extra) < FIRST_N:
                self.first_extra.append(item.target_key)
        else:
            self.blocked += 1
            if len(self.first_blocked) < FIRST_N:
                self.first_blocked.append(item)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "objects": self.objects, "bytes": self.bytes_to_copy,
            "parts": self.parts, "unchanged": self.unchanged,
            "unchanged_bytes": self.unchanged_bytes, "extra": self.extra,
            "blocked": self.blocked, "skipped": list(self.skipped), "widened": self.widened,
        }  # fmt: skip


@dataclass
class PlanSummary:
    """The totals of a streamed plan: one tally per dataset, in plan order."""

    datasets: list[DatasetTally] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(d.objects for d in self.datasets)

    @property
    def bytes_to_copy(self) -> int:
        return sum(d.bytes_to_copy for d in self.datasets)

    @property
    def parts(self) -> int:
        return sum(d.parts for d in self.datasets)

    @property
    def unchanged(self) -> int:
        return sum(d.unchanged for d in self.datasets)

    @property
    def blocked(self) -> int:
        return sum(d.blocked for d in self.datasets)

    @property
    def first_blocked(self) -> list[Blocked]:
        return [b for d in self.datasets for b in d.first_blocked]

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": [d.to_dict() for d in self.datasets],
            "totals": {
                "objects": self.objects, "bytes": self.bytes_to_copy, "parts": self.parts,
                "unchanged": self.unchanged, "blocked": self.blocked,
                "extra": sum(d.extra for d in self.datasets),
            },
        }  # fmt: skip


def item_record(item: PlanItem) -> dict[str, Any]:
    """One line of `bascule plan --json`: the item's fields and its "type" (object,
    unchanged, extra or blocked); an object carries its parts."""
    if isinstance(item, ObjectPlan):
        record = {"type": "object", **vars(item)}
        record["parts"] = [dict(vars(p)) for p in item.parts]
        return record
    kind = {Unchanged: "unchanged", Extra: "extra", Blocked: "blocked"}[type(item)]
    return {"type": kind, **asdict(item)}


def in_key_order(items: Iterable[T], key: Callable[[T], str], where: str) -> Iterator[T]:
    """`items`, checked to be strictly ascending by `key` (the merge's contract); a
    ConnectorError naming `where` at the first key out of order."""
    previous: str | None = None
    for item in items:
        current = key(item)
        if previous is not None and current <= previous:
            raise ConnectorError(
                f"{where} listed {current!r} after {previous!r}, out of key order; the plan "
                "needs sorted listings: report this storage's listing order as a bug",
                connector=where,
            )
        previous = current
        yield item


class _Cursor:
    """The head of a sorted stream, advanced by key."""

    def __init__(self, items: Iterable[Any], key: Callable[[Any], str]) -> None:
        self._items = iter(items)
        self._key = key
        self._head: Any = next(self._items, None)

    def below(self, key: str) -> Iterator[Any]:
        """Every remaining item whose key sorts before `key`."""
        while self._head is not None and self._key(self._head) < key:
            yield self._head
            self._head = next(self._items, None)

    def pop(self, key: str) -> Any:
        """The head if its key is `key` (then advanced past it), else None."""
        head = self._head
        if head is None or self._key(head) != key:
            return None
        self._head = next(self._items, None)
        return head

    def rest(self) -> Iterator[Any]:
        while self._head is not None:
            yield self._head
            self._head = next(self._items, None)


def stream_dataset(
    spec: DatasetSpec,
    source: Iterable[ObjectInfo],
    target: Iterable[ObjectInfo],
    journal: Iterable[JournalObject],
    caps: Capabilities,
    tally: DatasetTally | None = None,
    key_problem: KeyCheck = lambda key: None,
) -> Iterator[PlanItem]:
    """Decide what to copy for one dataset, one item at a time, in target-key order.

    Contract: `source` lists keys under `spec.source_prefix`, `target` the target prefix and
    `journal` the dataset's rows, each strictly ascending by key (code point order, which is
    UTF-8 byte order; `in_key_order` checks it). Mapping a source key to its target key
    replaces one prefix with another, which keeps that order, so one pass merges all three.
    Each item is counted into `tally` before it is yielded. `key_problem` is the target's
    verdict on each target key: a key it rejects is `Blocked`, with its reason."""
    tally = tally if tally is not None else DatasetTally(spec.name)
    tally.part_size = spec.part_size
    header_len = header_length(spec.recipients) if spec.encrypt else 0
    on_target = _Cursor(target, _info_key)
    in_journal = _Cursor(journal, _journal_key)
    for obj in source:
        key = target_key_for(obj.key, spec.source_prefix, spec.target_prefix)
        for stray in on_target.below(key):
            yield _counted(tally, Extra(spec.name, stray.key))
        for _ in in_journal.below(key):
            pass  # journal rows of objects no longer in the source
        seen, known = on_target.pop(key), in_journal.pop(key)
        # no local name for the item: the generator's frame must not keep it alive
        yield _counted(tally, _item(spec, obj, key, seen, known, caps, header_len, key_problem))
    for stray in on_target.rest():
        yield _counted(tally, Extra(spec.name, stray.key))


def _info_key(o: ObjectInfo) -> str:
    return o.key


def _journal_key(j: JournalObject) -> str:
    return j.target_key


def _counted(tally: DatasetTally, item: PlanItem) -> PlanItem:
    tally.count(item)
    return item


def _item(
    spec: DatasetSpec,
    obj: ObjectInfo,
    key: str,
    seen: ObjectInfo | None,
    known: JournalObject | None,
    caps: Capabilities,
    header_len: int,
    key_problem: KeyCheck,
) -> PlanItem:
    reason = _blocked_reason(spec, obj, key, caps, key_problem)
    if reason:
        return Blocked(spec.name, obj.key, reason, key)
    action = _decide(obj, seen, known)
    if action is None:
        return Unchanged(spec.name, obj.key, obj.size)
    return _object_plan(spec, obj, key, action, caps, header_len)


def _decide(obj: ObjectInfo, seen: ObjectInfo | None, known: JournalObject | None) -> Action | None:
    """None when the object is already copied, unchanged and present at the expected size."""
    if known is None:
        return "new"
    if known.source_etag != obj.etag or known.source_size != obj.size:
        return "changed"
    if not known.committed:
        return "resume"
    if seen is None or seen.size != known.target_size:
        return "missing-on-target"
    return None


def _blocked_reason(
    spec: DatasetSpec, obj: ObjectInfo, key: str, caps: Capabilities, key_problem: KeyCheck
) -> str | None:
    problem = object_key_problem(key, caps.max_key_bytes) or key_problem(key)
    if problem is not None:
        return problem
    if obj.size > caps.max_object_size:
        return f"{obj.size} bytes exceed the target's {caps.max_object_size}-byte object limit"
    try:
        fit_part_size(obj.size, spec.part_size, caps)
    except ValueError as exc:
        return str(exc)
    return None


def plan_dataset(
    spec: DatasetSpec,
    source: Iterable[ObjectInfo],
    target: Iterable[ObjectInfo],
    journal: Mapping[str, JournalObject],
    caps: Capabilities,
    key_problem: KeyCheck = lambda key: None,
) -> DatasetPlan:
    """`stream_dataset` over in-memory inputs in any order, collected into a DatasetPlan
    (small datasets and tests; `journal` is keyed by target key; `key_problem` is the
    target's verdict on each target key, see `Connector.key_problem`)."""
    items = stream_dataset(
        spec,
        sorted(source, key=_info_key),
        sorted(target, key=_info_key),
        sorted(journal.values(), key=_journal_key),
        caps,
        key_problem=key_problem,
    )
    objects: list[ObjectPlan] = []
    unchanged: list[str] = []
    unchanged_bytes = 0
    extra: list[str] = []
    blocked: list[Blocked] = []
    for item in items:
        if isinstance(item, ObjectPlan):
            objects.append(item)
        elif isinstance(item, Unchanged):
            unchanged.append(item.source_key)
            unchanged_bytes += item.size
        elif isinstance(item, Extra):
            extra.append(item.target_key)
        else:
            blocked.append(item)
    return DatasetPlan(
        spec.name, tuple(objects), tuple(unchanged), unchanged_bytes, tuple(extra), tuple(blocked)
    )


def _object_plan(
    spec: DatasetSpec, obj: ObjectInfo, key: str, action: Action, caps: Capabilities, hlen: int
) -> ObjectPlan:
    part_size = fit_part_size(obj.size, spec.part_size, caps)
    parts = plan_parts(obj.size, part_size, spec.encrypt, hlen)
    size_on_target = ciphertext_size(obj.size, hlen) if spec.encrypt else obj.size
    return ObjectPlan(
        spec.name,
        obj.key,
        key,
        obj.size,
        obj.etag,
        action,
        spec.encrypt,
        part_size,
        size_on_target,
        parts,
    )


def plan_migration(datasets: Sequence[DatasetPlan]) -> MigrationPlan:
    return MigrationPlan(tuple(datasets))
