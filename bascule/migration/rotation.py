"""Key rotation: re-wrap the file key of every object of an encrypted dataset, on the target.

An age payload is sealed under the file key and the payload nonce alone, so a change of
recipients only changes the header (the stanzas and the header MAC). For each object the
journal holds as copied, `rotate` reads the header, unwraps the file key with the
configured identity, wraps it for the new recipient set, and writes the object again as
new header + the unchanged nonce and payload, by one of three paths:

- ``copy`` (server-side, where the target declares `Capabilities.range_copy`): a multipart
  upload whose part 1 is the new header plus just enough of the old payload to reach the
  minimum part size, and whose other parts the server copies from the old object
  (`RangeCopier`), within the part count and part size limits. The client sends
  `min_part_size` bytes per object, whatever its size;
- ``rewrite``: the whole object sent again (small objects, targets without range copy);
- ``rekey`` (``--rekey``): a new file key and nonce, the plaintext decrypted from the target
  and encrypted again in the migration's part layout: real revocation of the old key.

The new object replaces the old one only when it is committed (CompleteMultipartUpload or
one put), so every object stays readable throughout. Each object's rotation is journaled
before its first byte is sent (`rotation_log`); a re-run finishes a commit that landed
before a crash, aborts the uploads of those that did not, and rotates them again.

The recipients an object had are known from the journal: the set of its last rotation, or,
before any rotation, the config's `encryption.recipients` (the set `migrate` encrypts for).
The config itself is the operator's to update.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TypeVar

import structlog

from bascule.age.header import (
    Header,
    encode_header,
    parse_header_bytes,
    unwrap_header,
)
from bascule.age.keys import X25519Identity, X25519Recipient, load_identities, parse_recipients
from bascule.age.sizes import NONCE_SIZE, encrypted_length, header_length
from bascule.config import Config, Dataset, identity_path
from bascule.connectors.base import (
    ByteRange,
    Capabilities,
    Connector,
    ObjectInfo,
    PartReceipt,
    PartWriterOpener,
    RangeCopier,
)
from bascule.endpoints import EndpointRef, connector
from bascule.errors import (
    ConfigError,
    EncryptionError,
    ObjectNotFound,
    TransientStorageError,
    UnsupportedOperation,
    VerificationError,
)
from bascule.migration.journal import Journal, ObjectRow
from bascule.migration.orphans import abort_orphans
from bascule.migration.plan import PartSpec, fit_part_size, plan_parts
from bascule.migration.retry import call_with_retries
from bascule.migration.rotation_log import NewCopy, RotationLog, RotationRow
from bascule.migration.service import open_journal, target_ref
from bascule.migration.tasks import composite

log = structlog.get_logger("bascule.rotate")
T = TypeVar("T")
HEADER_WINDOW = 64 * 1024  # headers of up to ~480 recipients
READ_PIECE = 16 * 1024 * 1024


def recipient_fingerprint(recipient: X25519Recipient) -> str:
    """What the journal and the output say of a recipient: a digest of its public key."""
    return "sha256:" + hashlib.sha256(recipient.public_bytes).hexdigest()[:16]


def set_fingerprint(recipients: Sequence[X25519Recipient]) -> str:
    keys = b"".join(sorted(r.public_bytes for r in recipients))
    return hashlib.sha256(keys).hexdigest()[:32]


@dataclass(frozen=True)
class RotationRequest:
    """What the operator asked for; recipients as given on the command line."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    dataset: str | None = None
    rekey: bool = False


@dataclass(frozen=True)
class RecipientChange:
    """The config's recipients and the set the objects are rotated to."""

    current: tuple[X25519Recipient, ...]
    new: tuple[X25519Recipient, ...]
    absent: tuple[str, ...]  # removed recipients that were not in the config

    @property
    def new_fingerprints(self) -> tuple[str, ...]:
        return tuple(recipient_fingerprint(r) for r in self.new)


def _parse(values: Sequence[str], flag: str) -> list[X25519Recipient]:
    try:
        return parse_recipients(values)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def recipient_change(cfg: Config, request: RotationRequest) -> RecipientChange:
    """New set = (config recipients + added) - removed. ConfigError (exit 2) on an invalid
    recipient string, on nothing asked, and when no recipient would be left."""
    if not request.add and not request.remove and not request.rekey:
        raise ConfigError(
            "nothing to rotate: give --add-recipient age1... and/or --remove-recipient age1... "
            "(or --rekey)"
        )
    current = parse_recipients(cfg.encryption.recipients)
    added = _parse(request.add, "--add-recipient")
    removed = _parse(request.remove, "--remove-recipient")
    new = [r for r in dict.fromkeys([*current, *added]) if r not in removed]
    if not new:
        raise ConfigError(
            "--remove-recipient would remove the last recipient: no one could decrypt the "
            "data any more; add the new recipient with --add-recipient age1..."
        )
    absent = tuple(str(r) for r in removed if r not in current)
    return RecipientChange(tuple(current), tuple(new), absent)


def rotation_datasets(cfg: Config, name: str | None) -> list[Dataset]:
    """The encrypted datasets to rotate; ConfigError if the one named is not encrypted."""
    chosen = cfg.select(name)
    if name is not None and not chosen[0].encrypt:
        raise ConfigError(
            f"{cfg.source_path}: dataset {name!r} is not encrypted (encrypt: false): its "
            "objects have no age header to rotate; choose an encrypted dataset"
        )
    encrypted = [d for d in chosen if d.encrypt]
    if not encrypted:
        raise ConfigError(f"{cfg.source_path}: no dataset has encrypt: true; nothing to rotate")
    return encrypted


def rotation_identities(cfg: Config) -> list[X25519Identity]:
    path = identity_path(cfg, required=True, why="keys rotate (it unwraps each file key)")
    assert path is not None
    return load_identities(path)


# -- the server-side layout --------------------------------------------------------------


@dataclass(frozen=True)
class CopyLayout:
    """Part 1 = new header + `resend` payload bytes sent by the client; then `copies`,
    ranges of the old object the server copies as parts 2, 3, ..."""

    first_part: int
    resend: int
    copies: tuple[ByteRange, ...]

    @property
    def copied(self) -> int:
        return sum(r.length for r in self.copies)


def copy_layout(
    old_hlen: int, old_size: int, new_hlen: int, caps: Capabilities
) -> CopyLayout | None:
    """The server-side layout, or None when the object is too small for one (its whole new
    form fits in one minimum-size part) or would need more parts than the target allows."""
    first = max(caps.min_part_size, new_hlen + 1)
    resend = first - new_hlen
    rest = old_size - old_hlen - resend
    if rest <= 0:
        return None
    count = -(-rest // caps.max_part_size)
    if count + 1 > caps.max_parts:
        return None
    size = -(-rest // count)
    start = old_hlen + resend
    copies = tuple(ByteRange(start + i * size, min(size, rest - i * size)) for i in range(count))
    return CopyLayout(first, resend, copies)


def _can_copy(tgt: Connector) -> bool:
    return (
        tgt.capabilities.range_copy
        and isinstance(tgt, RangeCopier)
        and isinstance(tgt, PartWriterOpener)
    )


def old_header_length(row: ObjectRow) -> int:
    """The age header length of a committed encrypted copy, from its sizes."""
    return row.target_size - NONCE_SIZE - encrypted_length(row.source_size)


# -- planning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectWork:
    """One object to rotate, with the bytes its path sends and has the server copy."""

    dataset: str
    target: EndpointRef
    row: ObjectRow
    info: ObjectInfo
    path: str  # copy | rewrite | rekey
    old_recipients: tuple[str, ...]
    bytes_sent: int
    bytes_copied: int


@dataclass
class RotationPlan:
    change: RecipientChange
    mode: str  # rewrap | rekey
    work: list[ObjectWork] = field(default_factory=list)
    current: int = 0  # already rotated to the new set
    changed: list[str] = field(default_factory=list)  # differ from the journal: left alone
    unknown: list[str] = field(default_factory=list)  # on the target, not copied by bascule

    @property
    def bytes_sent(self) -> int:
        return sum(w.bytes_sent for w in self.work)

    @property
    def bytes_copied(self) -> int:
        return sum(w.bytes_copied for w in self.work)


def _path_of(mode: str, tgt: Connector, row: ObjectRow, new_hlen: int) -> tuple[str, int, int]:
    new_size = row.target_size - old_header_length(row) + new_hlen
    if mode == "rekey":
        return "rekey", new_size, 0
    if _can_copy(tgt):
        layout = copy_layout(old_header_length(row), row.target_size, new_hlen, tgt.capabilities)
        if layout is not None:
            return "copy", layout.first_part, layout.copied
    return "rewrite", new_size, 0


def _is_current(done: RotationRow | None, mode: str, new_set: str, info: ObjectInfo) -> bool:
    if done is None or done.new_set != new_set or done.target_etag != info.etag:
        return False
    return mode == "rewrap" or done.mode == "rekey"


def plan_rotation(
    cfg: Config, datasets: list[Dataset], change: RecipientChange, mode: str,
    journal: Journal, rotations: RotationLog,
) -> RotationPlan:  # fmt: skip
    """What to rotate: every object the journal holds as copied and whose target etag is
    the recorded one, unless already rotated to this recipient set (by this mode)."""
    plan = RotationPlan(change, mode)
    new_set = set_fingerprint(change.new)
    new_hlen = header_length(len(change.new))
    config_fps = tuple(recipient_fingerprint(r) for r in change.current)
    for ds in datasets:
        ref = target_ref(cfg, ds)
        tgt = connector(ref)
        listed = {o.key: o for o in tgt.list(ds.target.prefix)}
        done = rotations.latest_committed(ds.name)
        copies = {r.target_key: r for r in journal.objects(ds.name, "committed")}
        plan.unknown += [f"{ds.name}:{k}" for k in sorted(set(listed) - set(copies))]
        for key, row in copies.items():
            info = listed.get(key)
            if info is None or info.etag != row.target_etag or info.size != row.target_size:
                plan.changed.append(f"{ds.name}:{key}")
                continue
            last = done.get(key)
            if _is_current(last, mode, new_set, info):
                plan.current += 1
                continue
            path, sent, copied = _path_of(mode, tgt, row, new_hlen)
            old = last.new_recipients if last else config_fps
            plan.work.append(ObjectWork(ds.name, ref, row, info, path, old, sent, copied))
    return plan


# -- running ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RotatedObject:
    dataset: str
    target_key: str
    path: str
    bytes_sent: int
    bytes_copied: int


@dataclass
class RotationOutcome:
    plan: RotationPlan
    rotated: list[RotatedObject] = field(default_factory=list)
    finished_after_crash: int = 0  # commits that had landed before a crash
    restarted: int = 0  # rotations a crash interrupted, aborted and done again
    orphans_aborted: int = 0
    run_id: int = 0
    dry_run: bool = False
    copy_refused: list[str] = field(default_factory=list)  # targets that refused range copy


@dataclass
class _Reads:
    """What reading the target needs: the retry budget and the identities."""

    cfg: Config
    identities: list[X25519Identity]

    def retry(self, conn: Connector, call: Callable[[], T]) -> T:
        return call_with_retries(call, conn.should_retry, self.cfg.transfer.max_attempts)[0]


@dataclass
class _Context(_Reads):
    journal: Journal
    rotations: RotationLog
    change: RecipientChange
    mode: str
    run_id: int
    copy_refused: list[str] = field(default_factory=list)


def _read(ctx: _Reads, tgt: Connector, key: str, start: int, length: int, etag: str) -> bytes:
    """Exactly `length` bytes at `start` of the object version `etag` (retried)."""

    def get() -> bytes:
        with contextlib.closing(tgt.open_read(key, ByteRange(start, length), etag)) as body:
            data = body.read(length + 1)
        if len(data) != length:
            raise TransientStorageError(
                f"read {len(data)} of {length} bytes at {start}", connector=tgt.url, key=key
            )
        return data

    return b"" if length == 0 else ctx.retry(tgt, get)


def _new_bytes(
    ctx: _Reads, tgt: Connector, w: ObjectWork, new_header: bytes, old_hlen: int,
    start: int, length: int,
) -> bytes:  # fmt: skip
    """Bytes [start, start+length) of the new object: new header, then the old payload."""
    head = new_header[start : start + length]
    rest = length - len(head)
    offset = old_hlen + max(0, start - len(new_header))
    return head + _read(ctx, tgt, w.row.target_key, offset, rest, w.info.etag)


def _open_header(ctx: _Reads, tgt: Connector, w: ObjectWork) -> tuple[Header, bytes]:
    """The object's header and file key. EncryptionError if the identity opens no stanza."""
    window = _read(ctx, tgt, w.row.target_key, 0, min(w.info.size, HEADER_WINDOW), w.info.etag)
    try:
        header = parse_header_bytes(window)
        return header, unwrap_header(header, ctx.identities)
    except EncryptionError as exc:
        raise EncryptionError(f"{w.dataset}:{w.row.target_key}: {exc}") from None


def _migration_parts(row: ObjectRow, hlen: int) -> tuple[PartSpec, ...]:
    """The parts the copy was cut into (the journal's cipher composite is over these)."""
    part_size = row.part_size if row.parts > 1 else max(row.source_size, 1) + 65536
    parts = plan_parts(row.source_size, part_size, True, hlen)
    if len(parts) != row.parts:
        raise VerificationError(
            f"{row.dataset}:{row.target_key}: the journal records {row.parts} parts, the "
            f"sizes give {len(parts)}; run `bascule verify --level full`"
        )
    return parts


def _cipher_digests(
    ctx: _Context, tgt: Connector, w: ObjectWork, new_header: bytes, old_hlen: int
) -> list[str]:
    """SHA-256 of each migration part of the new object: part 1 is hashed (new header, old
    bytes), the others come from the journal when it holds them, else are read."""
    parts = _migration_parts(w.row, old_hlen)
    first = parts[0]
    rest = first.cipher_length - old_hlen
    part1 = hashlib.sha256(new_header)
    for offset in range(0, rest, READ_PIECE):
        n = min(READ_PIECE, rest - offset)
        part1.update(_read(ctx, tgt, w.row.target_key, old_hlen + offset, n, w.info.etag))
    known = {p.number: p.cipher_sha256 for p in ctx.journal.parts(w.row.id)}
    digests = [part1.hexdigest()]
    for spec in parts[1:]:
        if spec.number in known:
            digests.append(known[spec.number])
            continue
        h = hashlib.sha256()
        for offset in range(0, spec.cipher_length, READ_PIECE):
            n = min(READ_PIECE, spec.cipher_length - offset)
            h.update(_read(ctx, tgt, w.row.target_key, spec.cipher_offset + offset, n, w.info.etag))
        digests.append(h.hexdigest())
    return digests


def _begin(ctx: _Context, w: ObjectWork, path: str, header: bytes, token: str | None,
           size: int, pending: NewCopy | None) -> int:  # fmt: skip
    return ctx.rotations.begin(
        {"run_id": ctx.run_id, "dataset": w.dataset, "target_key": w.row.target_key,
         "mode": ctx.mode, "path": path, "old_recipients": w.old_recipients,
         "new_recipients": ctx.change.new_fingerprints, "new_set": set_fingerprint(ctx.change.new),
         "old_etag": w.info.etag, "new_header": header, "resume_token": token,
         "target_size": size, "pending": pending,
         "bytes_sent": w.bytes_sent, "bytes_copied": w.bytes_copied}
    )  # fmt: skip


def _finish(ctx: _Context, tgt: Connector, w: ObjectWork, rid: int, new: NewCopy,
            sent: int, copied: int) -> RotatedObject:  # fmt: skip
    info = ctx.retry(tgt, lambda: tgt.stat(w.row.target_key))
    if info.size != new.target_size:
        raise VerificationError(
            f"{w.dataset}:{w.row.target_key}: {info.size} bytes after the rotation, "
            f"{new.target_size} expected; run `bascule verify --level full`"
        )
    ctx.rotations.commit(rid, w.row.id, replace(new, target_etag=info.etag), sent, copied)
    log.info("rotate.object", key=w.row.target_key, path=w.path, sent=sent, copied=copied)
    return RotatedObject(w.dataset, w.row.target_key, w.path, sent, copied)


def _rewrap(ctx: _Context, w: ObjectWork) -> RotatedObject:
    tgt = connector(w.target)
    header, file_key = _open_header(ctx, tgt, w)
    new_header = encode_header(file_key, ctx.change.new)
    old_hlen = len(header.raw)
    new_size = w.info.size - old_hlen + len(new_header)
    digests = _cipher_digests(ctx, tgt, w, new_header, old_hlen)
    new = NewCopy("", new_size, composite(digests))
    layout = None
    if w.path == "copy" and tgt.url not in ctx.copy_refused:
        layout = copy_layout(old_hlen, w.info.size, len(new_header), tgt.capabilities)
    if layout is not None:
        try:
            return _copy_path(ctx, tgt, w, new_header, old_hlen, layout, new)
        except UnsupportedOperation as exc:
            # The server declared the copy and refused it: rewrite this object and the
            # rest (the aborted upload and its journal row are gone).
            log.warning("rotate.copy_refused", target=tgt.url, error=str(exc))
            ctx.copy_refused.append(tgt.url)
    return _rewrite_path(ctx, tgt, replace_path(w), new_header, old_hlen, new)


def _copy_path(ctx: _Context, tgt: Connector, w: ObjectWork, new_header: bytes,
               old_hlen: int, layout: CopyLayout, new: NewCopy) -> RotatedObject:  # fmt: skip
    assert isinstance(tgt, PartWriterOpener) and isinstance(tgt, RangeCopier)
    key = w.row.target_key
    writer = ctx.retry(tgt, lambda: tgt.open_writer(key, w.info.metadata))
    token = writer.resume_token
    rid = _begin(ctx, w, "copy", new_header, token, new.target_size, new)
    first = _new_bytes(ctx, tgt, w, new_header, old_hlen, 0, layout.first_part)
    receipts = [ctx.retry(tgt, lambda: writer.write_part(1, first))]
    for number, rng in enumerate(layout.copies, start=2):
        copy = partial(tgt.copy_part, key, token, number, key, rng, w.info.etag)
        try:
            receipts.append(ctx.retry(tgt, copy))
        except UnsupportedOperation:
            ctx.retry(tgt, writer.abort)
            ctx.rotations.drop(rid)
            raise
    ctx.retry(tgt, lambda: writer.commit(receipts))
    return _finish(ctx, tgt, w, rid, new, len(first), layout.copied)


def replace_path(w: ObjectWork) -> ObjectWork:
    """`w` sent whole: what the rewrite path sends."""
    return replace(w, path="rewrite", bytes_sent=w.row.target_size, bytes_copied=0)


def _rewrite_path(ctx: _Context, tgt: Connector, w: ObjectWork, new_header: bytes,
                  old_hlen: int, new: NewCopy) -> RotatedObject:  # fmt: skip
    key = w.row.target_key
    size = new.target_size
    part_size = ctx.cfg.transfer.part_size
    if size <= part_size or not isinstance(tgt, PartWriterOpener):
        rid = _begin(ctx, w, "rewrite", new_header, None, size, new)
        data = _new_bytes(ctx, tgt, w, new_header, old_hlen, 0, size)
        ctx.retry(tgt, lambda: tgt.put(key, io.BytesIO(data), size, w.info.metadata))
        return _finish(ctx, tgt, w, rid, new, size, 0)
    part_size = fit_part_size(size, part_size, tgt.capabilities)
    writer = ctx.retry(tgt, lambda: tgt.open_writer(key, w.info.metadata))
    rid = _begin(ctx, w, "rewrite", new_header, writer.resume_token, size, new)
    receipts = []
    for number, start in enumerate(range(0, size, part_size), start=1):
        data = _new_bytes(ctx, tgt, w, new_header, old_hlen, start, min(part_size, size - start))
        receipts.append(ctx.retry(tgt, partial(writer.write_part, number, data)))
    ctx.retry(tgt, lambda: writer.commit(receipts))
    return _finish(ctx, tgt, w, rid, new, size, 0)


def _rekey(ctx: _Context, w: ObjectWork) -> RotatedObject:
    """A new file key and nonce: decrypt each migration part from the target, encrypt it
    again, in the same part layout (so the plaintext composite must come out unchanged)."""
    from bascule.age.stream import AgeRangeReader, PayloadCipher, new_file

    tgt = connector(w.target)
    key = w.row.target_key

    def fetch(offset: int, length: int) -> bytes:
        return _read(ctx, tgt, key, offset, length, w.info.etag)

    try:
        reader = AgeRangeReader(fetch, w.info.size, ctx.identities)
    except EncryptionError as exc:
        raise EncryptionError(f"{w.dataset}:{key}: {exc}") from None
    material = new_file(ctx.change.new)
    cipher = PayloadCipher(material.file_key, material.nonce)
    specs = _migration_parts(w.row, len(material.header))
    multipart = len(specs) > 1 and isinstance(tgt, PartWriterOpener)
    writer = None
    if multipart:
        assert isinstance(tgt, PartWriterOpener)
        writer = ctx.retry(tgt, lambda: tgt.open_writer(key, w.info.metadata))
    size = sum(s.cipher_length for s in specs)
    rid = _begin(ctx, w, "rekey", material.header, writer.resume_token if writer else None,
                 size, None)  # fmt: skip
    plain, sealed, receipts, blobs = [], [], [], []
    for spec in specs:
        text = reader.read(spec.plain_offset, spec.plain_length)
        prefix = material.header + material.nonce if spec.number == 1 else b""
        data = prefix + cipher.encrypt_chunks(spec.first_chunk, text, spec.final)
        plain.append(hashlib.sha256(text).hexdigest())
        sealed.append(hashlib.sha256(data).hexdigest())
        if writer is not None:
            receipts.append(ctx.retry(tgt, partial(writer.write_part, spec.number, data)))
        else:
            blobs.append(data)
    if w.row.plain_sha256 and composite(plain) != w.row.plain_sha256:
        if writer is not None:
            ctx.retry(tgt, writer.abort)
        ctx.rotations.drop(rid)
        raise VerificationError(
            f"{w.dataset}:{key}: the plaintext decrypted from the target does not match the "
            "journal's checksum; nothing was replaced; run `bascule verify --level full`"
        )
    parts = tuple((s.number, s.cipher_length, h, r.etag if receipts else "")
                  for s, h, r in zip(specs, sealed, receipts or [PartReceipt(0, 0)] * len(specs),
                                     strict=True))  # fmt: skip
    new = NewCopy("", size, composite(sealed), parts, clear_part_etags=False)
    ctx.rotations.set_pending(rid, new)
    if writer is not None:
        ctx.retry(tgt, lambda: writer.commit(receipts))
    else:
        body = b"".join(blobs)
        ctx.retry(tgt, lambda: tgt.put(key, io.BytesIO(body), size, w.info.metadata))
    return _finish(ctx, tgt, w, rid, new, size, 0)


def _resume(ctx: _Context, ds: Dataset) -> tuple[int, int]:
    """Settle the rotations a crash interrupted: (commits finished, rotations restarted).

    A commit that landed (the target now starts with the journaled new header) is finished
    from the journal; any other is aborted (its upload too) and done again by this run."""
    tgt = connector(target_ref(ctx.cfg, ds))
    finished = restarted = 0
    objects = {r.target_key: r for r in ctx.journal.objects(ds.name)}
    for r in ctx.rotations.rows(ds.name, "in_progress"):
        if r.resume_token and isinstance(tgt, PartWriterOpener):
            ctx.retry(tgt, partial(tgt.abort_upload, r.target_key, r.resume_token))
        row = objects.get(r.target_key)
        if row is not None and r.pending is not None and _landed(ctx, tgt, r):
            info = ctx.retry(tgt, partial(tgt.stat, r.target_key))
            new = replace(r.pending, target_etag=info.etag)
            ctx.rotations.commit(r.id, row.id, new, r.bytes_sent, r.bytes_copied)
            finished += 1
            continue
        ctx.rotations.drop(r.id)
        restarted += 1
    return finished, restarted


def _landed(ctx: _Context, tgt: Connector, r: RotationRow) -> bool:
    assert r.new_header is not None
    try:
        info = ctx.retry(tgt, lambda: tgt.stat(r.target_key))
    except ObjectNotFound:
        return False
    if info.etag == r.old_etag or info.size < len(r.new_header):
        return False
    head = _read(ctx, tgt, r.target_key, 0, len(r.new_header), info.etag)
    return head == r.new_header


def check_identity_opens(cfg: Config, plan: RotationPlan, ids: list[X25519Identity]) -> None:
    """Unwrap the first object's file key before anything is written: a wrong identity is
    one ConfigError line (exit 2), not a half-done rotation."""
    if not plan.work:
        return
    w = plan.work[0]
    tgt = connector(w.target)
    try:
        _open_header(_Reads(cfg, ids), tgt, w)
    except EncryptionError as exc:
        raise ConfigError(
            f"the identity file of encryption.identity_file_env cannot open {exc}; use the "
            "identity of a recipient the data is encrypted to"
        ) from None


def rotate(cfg: Config, request: RotationRequest, *, dry_run: bool = False) -> RotationOutcome:
    """Rotate (or with `dry_run` only plan) the recipients of the selected datasets.

    Bad input raises ConfigError before anything is written. Resumable: run it again after
    a crash or an error."""
    change = recipient_change(cfg, request)
    datasets = rotation_datasets(cfg, request.dataset)
    identities = rotation_identities(cfg)
    mode = "rekey" if request.rekey else "rewrap"
    reader = open_journal(cfg, create=False)
    if reader is None:
        raise ConfigError(
            f"{cfg.journal}: no journal: nothing has been copied yet; run `bascule migrate`"
        )
    try:
        plan = plan_rotation(cfg, datasets, change, mode, reader,
                             RotationLog(reader, create=False))  # fmt: skip
    finally:
        reader.close()
    check_identity_opens(cfg, plan, identities)
    if dry_run:
        return RotationOutcome(plan, dry_run=True)
    journal = open_journal(cfg, create=True)
    assert journal is not None
    try:
        return _run(cfg, datasets, change, mode, journal, identities)
    finally:
        journal.close()


def _run(cfg: Config, datasets: list[Dataset], change: RecipientChange, mode: str,
         journal: Journal, identities: list[X25519Identity]) -> RotationOutcome:  # fmt: skip
    rotations = RotationLog(journal)
    since = time.time()
    run_id = journal.start_run("rotate", {"datasets": [d.name for d in datasets], "mode": mode,
                                          "recipients": list(change.new_fingerprints)})  # fmt: skip
    ctx = _Context(cfg, identities, journal, rotations, change, mode, run_id)
    outcome = RotationOutcome(RotationPlan(change, mode), run_id=run_id)
    status = "failed"
    try:
        for ds in datasets:
            finished, restarted = _resume(ctx, ds)
            outcome.finished_after_crash += finished
            outcome.restarted += restarted
            # uploads a migration of this journal left open (its own are resumed above)
            outcome.orphans_aborted += abort_orphans(journal, ds.name, target_ref(cfg, ds), since)
        outcome.plan = plan_rotation(cfg, datasets, change, mode, journal, rotations)
        for w in outcome.plan.work:
            outcome.rotated.append(_rekey(ctx, w) if mode == "rekey" else _rewrap(ctx, w))
        outcome.copy_refused = ctx.copy_refused
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        sent = sum(r.bytes_sent for r in outcome.rotated)
        journal.end_run(run_id, status, sent, len(outcome.rotated), 0.0)
    return outcome
