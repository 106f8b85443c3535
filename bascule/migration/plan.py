"""The plan: a pure function from listings and journal state to frozen dataclasses.

Nothing here reads files, calls the network, logs or prints. A plan serialises with
`to_dict`/`from_dict` so it can be reviewed, stored and replayed (`bascule plan --json`).

Part arithmetic (age v1 STREAM, see DESIGN.md "Encryption"): plaintext is cut into parts of
`part_size` bytes (a multiple of the 64 KiB age chunk). Part 1 also carries the age header and
the 16-byte payload nonce, so part k (k >= 2) starts at header_len + 16 + first_chunk * 65552.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bascule.age.sizes import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    ciphertext_size,
    encrypted_length,
    header_length,
)
from bascule.connectors.base import Capabilities, ObjectInfo, object_key_problem

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


def _decide(
    obj: ObjectInfo, target_key: str, target: Mapping[str, ObjectInfo], known: JournalObject | None
) -> Action | None:
    """None when the object is already copied, unchanged and present at the expected size."""
    if known is None:
        return "new"
    if known.source_etag != obj.etag or known.source_size != obj.size:
        return "changed"
    if not known.committed:
        return "resume"
    seen = target.get(target_key)
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
    """Decide what to copy for one dataset. `target` lists the target prefix; `journal` is
    keyed by target key; `key_problem` is the target's verdict on each target key (see
    `Connector.key_problem`): a key it rejects is blocked, with its reason."""
    target_by_key = {o.key: o for o in target}
    header_len = header_length(spec.recipients) if spec.encrypt else 0
    objects: list[ObjectPlan] = []
    unchanged: list[str] = []
    unchanged_bytes = 0
    blocked: list[Blocked] = []
    mapped: set[str] = set()
    for obj in source:
        key = target_key_for(obj.key, spec.source_prefix, spec.target_prefix)
        mapped.add(key)
        reason = _blocked_reason(spec, obj, key, caps, key_problem)
        if reason:
            blocked.append(Blocked(spec.name, obj.key, reason, key))
            continue
        action = _decide(obj, key, target_by_key, journal.get(key))
        if action is None:
            unchanged.append(obj.key)
            unchanged_bytes += obj.size
            continue
        objects.append(_object_plan(spec, obj, key, action, caps, header_len))
    extra = tuple(sorted(k for k in target_by_key if k not in mapped))
    return DatasetPlan(
        spec.name, tuple(objects), tuple(unchanged), unchanged_bytes, extra, tuple(blocked)
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
