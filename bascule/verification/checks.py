"""The comparisons behind `bascule verify`, as pure functions over listings and journal facts.

Nothing here reads data, calls the network or prints: the caller lists both sides, reads
what the level asks for (`reread.py`), and hands the results here to turn into findings.

- `stream_pairs` matches source and target listings (target key = target prefix + the key
  below the source prefix) with the journal's records, as one merge of sorted streams, and
  keeps a deterministic sample (`pair_objects`: the same, collected);
- `quick_findings`: existence, exact sizes, stale sources, the etag recorded at commit, the
  S3 multipart etag recomputed from the journal's part etags, Azure Content-MD5 (plain data);
- `full_findings`: the composites read now on both sides against each other and the journal;
- `rows_findings`: row counts on both sides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from bascule.age.sizes import NONCE_SIZE, ciphertext_size, encrypted_length
from bascule.connectors.base import ObjectInfo
from bascule.migration.plan import target_key_for
from bascule.verification.evidence import Finding, Kind, SampleInfo

T = TypeVar("T")
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-(\d+)$")


@dataclass(frozen=True)
class Copy:
    """What the journal recorded of one object's copy (`committed` false: still in flight)."""

    source_etag: str
    source_size: int
    target_size: int
    part_size: int
    parts: int
    committed: bool
    plain_sha256: str | None = None
    cipher_sha256: str | None = None
    target_etag: str | None = None
    part_etags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pair:
    """One object as both sides list it, with the journal's record; either side may be
    absent. `header_len` is the age header length the target should have (encrypted only);
    `etag_is_md5` says a single-part target etag is the MD5 of its bytes (S3)."""

    dataset: str
    source_key: str | None
    target_key: str | None
    source: ObjectInfo | None
    target: ObjectInfo | None
    copy: Copy | None
    encrypt: bool
    header_len: int = 0
    etag_is_md5: bool = False

    @property
    def committed(self) -> bool:
        return self.copy is not None and self.copy.committed

    @property
    def stale(self) -> bool:
        """The source is not what the journal says was copied (or nothing was copied)."""
        if self.source is None or self.copy is None or not self.copy.committed:
            return True
        return (
            self.copy.source_etag != self.source.etag or self.copy.source_size != self.source.size
        )

    @property
    def expected_target_size(self) -> int | None:
        if self.committed:
            assert self.copy is not None
            return self.copy.target_size
        if self.source is None:
            return None
        if self.encrypt:
            return ciphertext_size(self.source.size, self.header_len)
        return self.source.size


def header_len_of(copy: Copy) -> int:
    """The age header length implied by a committed encrypted copy's sizes."""
    return copy.target_size - NONCE_SIZE - encrypted_length(copy.source_size)


def in_sample(relative_key: str, percent: float) -> bool:
    """Whether an object belongs to a deterministic `percent`% sample (hash of its key below
    the dataset prefix, so source and target agree and every run picks the same ones)."""
    digest = hashlib.sha256(relative_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 < percent * 10_000


@dataclass
class PairCount:
    """What `stream_pairs` saw: objects in all, and kept in the sample (all without one)."""

    total: int = 0
    kept: int = 0


def stream_pairs(
    dataset: str,
    source_prefix: str,
    target_prefix: str,
    sources: Iterable[ObjectInfo],
    targets: Iterable[ObjectInfo],
    copies: Iterable[tuple[str, Copy]],
    *,
    encrypt: bool,
    header_len: int,
    etag_is_md5: bool = False,
    sample: float | None = None,
    count: PairCount | None = None,
) -> Iterator[Pair]:
    """Every object of either listing, with the journal's record of it, one at a time in
    target-key order; with `sample`, only that share of them (counted into `count`).

    Contract: `sources` (keys under `source_prefix`), `targets` and `copies` ((target key,
    copy) from the journal) each come strictly ascending by key, as `plan.stream_dataset`
    takes them (`plan.in_key_order` checks a listing); mapping a source key to its target
    key keeps that order, so one pass pairs all three and memory does not grow with their
    length. Journal rows of keys on neither side are skipped."""
    count = count if count is not None else PairCount()
    skip = len(target_prefix)
    on_target: _Head[ObjectInfo] = _Head(targets, _info_key)
    in_journal: _Head[tuple[str, Copy]] = _Head(copies, _copy_key)

    def kept(pair: Pair) -> bool:
        count.total += 1
        if sample is not None and not in_sample((pair.target_key or "")[skip:], sample):
            return False
        count.kept += 1
        return True

    for src in sources:
        tkey = target_key_for(src.key, source_prefix, target_prefix)
        while on_target.key is not None and on_target.key < tkey:
            if kept(extra := _extra_pair(dataset, on_target.take(), in_journal, encrypt)):
                yield extra
        tgt = on_target.take() if on_target.key == tkey else None
        known = in_journal.find(tkey)
        pair = _pair(dataset, tkey, src, tgt, known[1] if known else None, encrypt,
                     header_len, etag_is_md5)  # fmt: skip
        if kept(pair):
            yield pair
    while on_target.key is not None:
        if kept(extra := _extra_pair(dataset, on_target.take(), in_journal, encrypt)):
            yield extra


class _Head(Generic[T]):
    """The head of a stream sorted by `key`; `key` is None at its end."""

    def __init__(self, items: Iterable[T], key: Callable[[T], str]) -> None:
        self._items = iter(items)
        self._key = key
        self._head: T | None = None
        self.key: str | None = None
        self.take()

    def take(self) -> T:
        """The head, and advance past it (only while `key` is not None)."""
        head = self._head
        self._head = nxt = next(self._items, None)
        self.key = None if nxt is None else self._key(nxt)
        return head  # type: ignore[return-value]

    def find(self, key: str) -> T | None:
        """The item of `key` (None if absent), after skipping every item before it."""
        while self.key is not None and self.key < key:
            self.take()
        return self.take() if self.key == key else None


def _copy_key(item: tuple[str, Copy]) -> str:
    return item[0]


def _info_key(info: ObjectInfo) -> str:
    return info.key


def _extra_pair(
    dataset: str, target: ObjectInfo, journal: _Head[tuple[str, Copy]], encrypt: bool
) -> Pair:
    known = journal.find(target.key)
    return Pair(dataset, None, target.key, None, target, known[1] if known else None, encrypt)


def _pair(
    dataset: str,
    tkey: str,
    src: ObjectInfo,
    tgt: ObjectInfo | None,
    copy: Copy | None,
    encrypt: bool,
    header_len: int,
    etag_is_md5: bool,
) -> Pair:
    hlen = header_len_of(copy) if encrypt and copy and copy.committed else header_len
    return Pair(dataset, src.key, tkey, src, tgt, copy, encrypt, hlen, etag_is_md5)


def pair_objects(
    dataset: str,
    source_prefix: str,
    target_prefix: str,
    sources: Iterable[ObjectInfo],
    targets: Iterable[ObjectInfo],
    copies: Mapping[str, Copy],
    *,
    encrypt: bool,
    header_len: int,
    etag_is_md5: bool = False,
    sample: float | None = None,
) -> tuple[list[Pair], SampleInfo | None]:
    """`stream_pairs` collected (tests, small listings): the listings in any order, `copies`
    keyed by target key."""
    count = PairCount()
    pairs = list(
        stream_pairs(
            dataset, source_prefix, target_prefix, sorted(sources, key=_info_key),
            sorted(targets, key=_info_key), sorted(copies.items()), encrypt=encrypt,
            header_len=header_len, etag_is_md5=etag_is_md5, sample=sample, count=count,
        )
    )  # fmt: skip
    return pairs, SampleInfo(sample, count.kept, count.total) if sample is not None else None


def multipart_etag(part_etags: Iterable[str]) -> str:
    """S3's etag of a multipart object: MD5 of the concatenated part MD5s, then ``-N``."""
    digests = [bytes.fromhex(e) for e in part_etags]
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def md5_hex(content_md5_b64: str) -> str | None:
    """The hex form of a base64 Content-MD5 (as Azure and S3 give it); None if malformed."""
    try:
        raw = base64.b64decode(content_md5_b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def _finding(pair: Pair, kind: Kind, what: str, src: object, tgt: object, msg: str) -> Finding:
    def norm(v: object) -> str | int | None:
        return v if v is None or isinstance(v, int | str) else str(v)

    return Finding(kind, pair.dataset, pair.source_key, pair.target_key, what, norm(src),
                   norm(tgt), msg)  # fmt: skip


def _where(pair: Pair) -> str:
    return f"{pair.dataset}:{pair.target_key or pair.source_key}"


def quick_findings(pair: Pair) -> list[Finding]:
    """Existence, size, staleness and what the target reports, without reading any data."""
    if pair.source is None:
        return [_extra(pair)]
    if pair.target is None:
        return [_missing(pair)]
    found = _stale(pair) + _size(pair)
    found += _recorded_etag(pair) + _multipart(pair) + _content_md5(pair)
    return found


def _extra(pair: Pair) -> Finding:
    assert pair.target is not None
    return _finding(
        pair, "extra", "existence", None, pair.target.size,
        f"{_where(pair)}: on the target but mapped from no source object; delete it or find "
        "who wrote it",
    )  # fmt: skip


def _missing(pair: Pair) -> Finding:
    assert pair.source is not None
    return _finding(
        pair, "missing", "existence", pair.source.size, None,
        f"{_where(pair)}: not on the target; run `bascule migrate` to copy it",
    )  # fmt: skip


def _stale(pair: Pair) -> list[Finding]:
    assert pair.source is not None
    if not pair.committed:
        return [
            _finding(
                pair, "stale", "journal", pair.source.etag, None,
                f"{_where(pair)}: the journal holds no finished copy of this object; run "
                "`bascule migrate`",
            )
        ]  # fmt: skip
    assert pair.copy is not None
    if not pair.stale:
        return []
    return [
        _finding(
            pair, "stale", "source etag/size",
            f"{pair.source.etag} / {pair.source.size}",
            f"{pair.copy.source_etag} / {pair.copy.source_size}",
            f"{_where(pair)}: the source changed since it was copied (now etag "
            f"{pair.source.etag}, {pair.source.size} bytes; copied etag {pair.copy.source_etag}, "
            f"{pair.copy.source_size} bytes); run `bascule migrate` to copy it again",
        )
    ]  # fmt: skip


def _size(pair: Pair) -> list[Finding]:
    assert pair.target is not None
    expected = pair.expected_target_size
    if expected is None or expected == pair.target.size:
        return []
    return [
        _finding(
            pair, "size-mismatch", "target size", expected, pair.target.size,
            f"{_where(pair)}: the target holds {pair.target.size} bytes, {expected} expected; "
            "delete it on the target and run `bascule migrate` to copy it again",
        )
    ]  # fmt: skip


def _recorded_etag(pair: Pair) -> list[Finding]:
    assert pair.target is not None
    recorded = pair.copy.target_etag if pair.copy and pair.committed else None
    if not recorded or not pair.target.etag or recorded == pair.target.etag:
        return []
    return [
        _finding(
            pair, "checksum-mismatch", "target etag (recorded at commit vs listed now)",
            recorded, pair.target.etag,
            f"{_where(pair)}: the target object was rewritten after the copy (etag {recorded} "
            f"at commit, {pair.target.etag} now); run `verify --level full`, then delete it and "
            "run `bascule migrate`",
        )
    ]  # fmt: skip


def _multipart(pair: Pair) -> list[Finding]:
    assert pair.target is not None
    match = _MULTIPART_ETAG.match(pair.target.etag)
    copy = pair.copy
    if not match or copy is None or not pair.committed:
        return []
    etags = copy.part_etags
    if len(etags) != int(match.group(1)) or not all(_MD5_HEX.match(e) for e in etags):
        return []  # parts not recorded as MD5s: nothing to recompute from
    expected = multipart_etag(etags)
    if expected == pair.target.etag:
        return []
    return [
        _finding(
            pair, "checksum-mismatch", "s3 multipart etag (from journal parts vs listed)",
            expected, pair.target.etag,
            f"{_where(pair)}: the target's multipart etag {pair.target.etag} is not the one its "
            f"recorded parts give ({expected}); run `verify --level full`",
        )
    ]  # fmt: skip


def _target_md5(pair: Pair) -> str | None:
    assert pair.target is not None
    reported = pair.target.checksums.get("content-md5")
    if reported:
        return md5_hex(reported)
    if pair.etag_is_md5 and _MD5_HEX.match(pair.target.etag):
        return pair.target.etag
    return None


def _content_md5(pair: Pair) -> list[Finding]:
    """Only plain copies: an encrypted target's MD5 is of ciphertext, unrelated to the source."""
    assert pair.source is not None
    if pair.encrypt or pair.stale:
        return []
    source_b64 = pair.source.checksums.get("content-md5")
    if not source_b64:
        return []
    source = md5_hex(source_b64)
    target = _target_md5(pair)
    if source is None or target is None or source == target:
        return []
    return [
        _finding(
            pair, "checksum-mismatch", "md5 (source Content-MD5 vs target)", source, target,
            f"{_where(pair)}: the source's Content-MD5 {source} differs from the target's MD5 "
            f"{target}; run `verify --level full`",
        )
    ]  # fmt: skip


@dataclass(frozen=True)
class Reread:
    """What `--level full` read of one object: composites (None when that side was not read
    or failed), the source bytes' MD5 when asked, and the first error on each side."""

    source_plain: str | None = None
    target_plain: str | None = None
    target_cipher: str | None = None
    source_md5: str | None = None
    source_error: str | None = None
    target_error: str | None = None
    target_error_kind: Kind = "unreadable"


def full_findings(pair: Pair, read: Reread) -> list[Finding]:
    """Findings from an independent re-read of both sides (see `Reread`)."""
    found: list[Finding] = []
    if read.source_error:
        found.append(
            _finding(pair, "unreadable", "source read", read.source_error, None,
                     f"{_where(pair)}: the source cannot be read: {read.source_error}")
        )  # fmt: skip
    if read.target_error:
        found.append(
            _finding(pair, read.target_error_kind, "target read", None, read.target_error,
                     f"{_where(pair)}: the target cannot be read back: {read.target_error}")
        )  # fmt: skip
    found += _plain_composites(pair, read) + _cipher_composite(pair, read)
    found += _source_md5(pair, read)
    return found


def _plain_composites(pair: Pair, read: Reread) -> list[Finding]:
    manifest = pair.copy.plain_sha256 if pair.copy and pair.committed else None
    source = None if pair.stale else read.source_plain
    seen = {v for v in (manifest, source, read.target_plain) if v is not None}
    if len(seen) < 2:
        return []
    shown_source = source if source is not None else manifest
    return [
        _finding(
            pair, "checksum-mismatch", "plaintext sha256 composite", shown_source,
            read.target_plain,
            f"{_where(pair)}: plaintext differs (source read {source or '-'}, target read "
            f"{read.target_plain or '-'}, journal {manifest or '-'}); delete it on the target and "
            "run `bascule migrate`",
        )
    ]  # fmt: skip


def _cipher_composite(pair: Pair, read: Reread) -> list[Finding]:
    manifest = pair.copy.cipher_sha256 if pair.copy and pair.committed else None
    if not pair.encrypt or manifest is None or read.target_cipher in (None, manifest):
        return []
    return [
        _finding(
            pair, "checksum-mismatch", "ciphertext sha256 composite (journal vs target read)",
            manifest, read.target_cipher,
            f"{_where(pair)}: the stored ciphertext is not what was written (journal "
            f"{manifest}, read {read.target_cipher}); delete it on the target and run "
            "`bascule migrate`",
        )
    ]  # fmt: skip


def _source_md5(pair: Pair, read: Reread) -> list[Finding]:
    reported = pair.source.checksums.get("content-md5") if pair.source else None
    expected = md5_hex(reported) if reported else None
    if expected is None or read.source_md5 is None or read.source_md5 == expected:
        return []
    return [
        _finding(
            pair, "checksum-mismatch", "md5 (source Content-MD5 vs source bytes)", expected,
            read.source_md5,
            f"{_where(pair)}: the source's bytes do not match its own Content-MD5 ({expected} "
            f"reported, {read.source_md5} read): the source itself is damaged",
        )
    ]  # fmt: skip


@dataclass(frozen=True)
class RowsRead:
    """Row counts of one object on both sides; an error when a side cannot be counted."""

    format: str
    source_rows: int | None = None
    target_rows: int | None = None
    source_error: str | None = None
    target_error: str | None = None
    target_error_kind: Kind = "unreadable"


def rows_findings(pair: Pair, rows: RowsRead) -> list[Finding]:
    found: list[Finding] = []
    if rows.source_error:
        found.append(
            _finding(pair, "unreadable", f"rows ({rows.format}) on the source", rows.source_error,
                     None, f"{_where(pair)}: the source cannot be counted as {rows.format}: "
                     f"{rows.source_error}")
        )  # fmt: skip
    if rows.target_error:
        found.append(
            _finding(pair, rows.target_error_kind, f"rows ({rows.format}) on the target", None,
                     rows.target_error, f"{_where(pair)}: the target cannot be counted as "
                     f"{rows.format}: {rows.target_error}")
        )  # fmt: skip
    s, t = rows.source_rows, rows.target_rows
    if s is not None and t is not None and s != t and not pair.stale:
        found.append(
            _finding(pair, "rows-mismatch", f"rows ({rows.format})", s, t,
                     f"{_where(pair)}: {s} rows on the source, {t} on the target; delete it on "
                     "the target and run `bascule migrate`")
        )  # fmt: skip
    return found
