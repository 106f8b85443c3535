"""What the smoke step reads of one object, and what it compares.

On the target (after a switch to it), an object is re-read whole in one task (`read_parts`,
the same reader as `verify --level full`): source and target, cut at the copy's part
boundaries, so the composites compare with the journal's. The target must match the journal's
recorded plaintext composite SHA-256 and, when encrypted, its ciphertext composite (bytes as
stored), and the source. An object the journal holds no finished copy of (or whose source
changed since) is compared with the source alone, as bytes.
"""

from __future__ import annotations

import hashlib

from bascule.age.sizes import header_length
from bascule.config import Config, Dataset
from bascule.endpoints import connector
from bascule.migration.journal import Journal, ObjectRow
from bascule.migration.plan import target_key_for
from bascule.migration.service import source_ref, target_ref
from bascule.migration.tasks import composite
from bascule.verification.checks import Copy, Pair, header_len_of
from bascule.verification.reread import ReadResult, ReadTask, read_parts
from bascule.verification.verify import layout


def source_digest(cfg: Config, ds: Dataset, key: str) -> str:
    """SHA-256 of the source object's bytes."""
    digest = hashlib.sha256()
    with connector(source_ref(cfg, ds)).open_read(key) as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(row: ObjectRow | None) -> Copy | None:
    if row is None or row.state != "committed":
        return None
    return Copy(row.source_etag, row.source_size, row.target_size, row.part_size, row.parts,
                True, row.plain_sha256, row.cipher_sha256, row.target_etag)  # fmt: skip


def _pair(cfg: Config, ds: Dataset, key: str, journal: Journal | None) -> Pair:
    tkey = target_key_for(key, ds.source.prefix, ds.target.prefix)
    source = connector(source_ref(cfg, ds)).stat(key)
    copy = _copy(journal.get_object(ds.name, tkey) if journal else None)
    hlen = header_length(len(cfg.encryption.recipients))
    if ds.encrypt and copy is not None:
        hlen = header_len_of(copy)
    return Pair(ds.name, key, tkey, source, None, copy, ds.encrypt, hlen)


def _composites(result: ReadResult) -> tuple[str | None, str | None, str | None]:
    """(source plaintext, target plaintext, target as stored) composites; None when a side
    could not be read whole."""

    def comp(values: list[str | None]) -> str | None:
        return composite([v for v in values if v]) if values and all(values) else None

    digests = sorted(result.digests, key=lambda d: d.number)
    return (comp([d.source_sha256 for d in digests]), comp([d.target_sha256 for d in digests]),
            comp([d.target_cipher_sha256 for d in digests]))  # fmt: skip


def check_target_object(
    cfg: Config, ds: Dataset, key: str, journal: Journal | None
) -> tuple[list[str], bool]:
    """(problems with the target copy of source `key`, whether the journal's checksums were
    compared). Raises ConfigError when an encrypted target needs the identity and none is set."""
    pair = _pair(cfg, ds, key, journal)
    where = f"{ds.name}:{pair.target_key}"
    task = ReadTask(source_ref(cfg, ds), key, target_ref(cfg, ds), pair.target_key or "",
                    ds.encrypt, pair.header_len, layout(pair, cfg.transfer.part_size), False,
                    cfg.encryption.identity_file_env)  # fmt: skip
    result = read_parts(task)
    errors = [f"{where}: {e}" for e in (result.source_error, result.target_error) if e]
    if errors:
        return errors, False
    source, plain, stored = _composites(result)
    problems = []
    if plain != source:
        problems.append(f"{where} differs from the source (plaintext {plain}, source {source})")
    if pair.stale:  # nothing recorded for this version of the source: the source alone
        return problems, False
    assert pair.copy is not None
    if plain != pair.copy.plain_sha256:
        recorded_plain = pair.copy.plain_sha256
        problems.append(f"{where}: plaintext {plain} is not the journal's {recorded_plain} "
                        "(the target changed since the copy)")  # fmt: skip
    recorded = pair.copy.cipher_sha256
    if ds.encrypt and recorded and stored != recorded:
        problems.append(f"{where}: stored bytes {stored} are not the journal's ciphertext "
                        f"{recorded} (the target changed since the copy)")  # fmt: skip
    return problems, True
