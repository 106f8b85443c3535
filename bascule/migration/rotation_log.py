"""The journal's record of key rotations: one `rotations` row per object per rotation.

A row is written `in_progress` before the first byte of the new object is sent (with the
upload's resume token, the new age header, the target etag it replaces, and the size and
ciphertext checksum the new object will have), and turns `committed` in the same
transaction that updates the object's copy record (target size, etag, ciphertext
composite), so `verify --level quick` and `migrate` see the rotated object as the copy.
Recipients appear as fingerprints only; no file key is ever stored here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bascule.migration.journal import Journal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rotations (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, dataset TEXT NOT NULL,
    target_key TEXT NOT NULL, mode TEXT NOT NULL, path TEXT NOT NULL, state TEXT NOT NULL,
    old_recipients TEXT NOT NULL, new_recipients TEXT NOT NULL, new_set TEXT NOT NULL,
    old_etag TEXT NOT NULL, new_header BLOB, resume_token TEXT, target_etag TEXT,
    target_size INTEGER NOT NULL, cipher_sha256 TEXT, pending TEXT,
    bytes_sent INTEGER NOT NULL DEFAULT 0,
    bytes_copied INTEGER NOT NULL DEFAULT 0, started REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rotations_key ON rotations (dataset, target_key);
"""
_COLS = (
    "id, run_id, dataset, target_key, mode, path, state, old_recipients, new_recipients, "
    "new_set, old_etag, new_header, resume_token, target_etag, target_size, cipher_sha256, "
    "pending, bytes_sent, bytes_copied"
)


@dataclass(frozen=True)
class NewCopy:
    """What the object's copy record becomes once the rotated object is committed.
    `parts`: (number, cipher_size, cipher_sha256, etag) of every part whose record changes."""

    target_etag: str
    target_size: int
    cipher_sha256: str
    parts: tuple[tuple[int, int, str, str], ...] = ()
    clear_part_etags: bool = True

    def to_json(self) -> str:
        return json.dumps(
            {"target_etag": self.target_etag, "target_size": self.target_size,
             "cipher_sha256": self.cipher_sha256, "parts": [list(p) for p in self.parts],
             "clear_part_etags": self.clear_part_etags}
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> NewCopy:
        d = json.loads(text)
        parts = tuple((int(n), int(s), str(h), str(e)) for n, s, h, e in d["parts"])
        return cls(str(d["target_etag"]), int(d["target_size"]), str(d["cipher_sha256"]),
                   parts, bool(d["clear_part_etags"]))  # fmt: skip


@dataclass(frozen=True)
class RotationRow:
    """One object's rotation. `mode`: rewrap | rekey; `path`: copy (server-side) | rewrite;
    `state`: in_progress | committed. Recipients are fingerprints (see `rotation`).
    `pending`: what the copy record becomes, once known (before the commit), so that a
    commit that landed before a crash is finished from the journal alone."""

    id: int
    run_id: int
    dataset: str
    target_key: str
    mode: str
    path: str
    state: str
    old_recipients: tuple[str, ...]
    new_recipients: tuple[str, ...]
    new_set: str
    old_etag: str
    new_header: bytes | None
    resume_token: str | None
    target_etag: str | None
    target_size: int
    cipher_sha256: str | None
    pending: NewCopy | None
    bytes_sent: int
    bytes_copied: int


def _row(r: Sequence[Any]) -> RotationRow:
    values = list(r)
    values[7] = tuple(json.loads(values[7]))
    values[8] = tuple(json.loads(values[8]))
    values[16] = NewCopy.from_json(values[16]) if values[16] else None
    return RotationRow(*values)


class RotationLog:
    """The `rotations` table of one journal (created on first use)."""

    def __init__(self, journal: Journal, *, create: bool = True) -> None:
        """With `create` false (dry runs) nothing is written: a journal without the table
        reads as holding no rotation."""
        self._j = journal
        if create:
            with journal.transaction() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        found = journal.query("SELECT 1 FROM sqlite_master WHERE name='rotations'")
        self._exists = bool(found)

    def rows(self, dataset: str | None = None, state: str | None = None) -> list[RotationRow]:
        if not self._exists:
            return []
        sql = f"SELECT {_COLS} FROM rotations WHERE 1=1"
        args: list[str] = []
        if dataset is not None:
            sql, args = sql + " AND dataset=?", [*args, dataset]
        if state is not None:
            sql, args = sql + " AND state=?", [*args, state]
        return [_row(r) for r in self._j.query(sql + " ORDER BY id", tuple(args))]

    def latest_committed(self, dataset: str) -> dict[str, RotationRow]:
        """The last committed rotation of each target key of `dataset`."""
        return {r.target_key: r for r in self.rows(dataset, "committed")}

    def begin(self, values: Mapping[str, Any]) -> int:
        """Record a rotation about to send bytes; returns its id."""
        cols = dict(values, state="in_progress", started=time.time(), updated=time.time())
        cols["old_recipients"] = json.dumps(list(cols["old_recipients"]))
        cols["new_recipients"] = json.dumps(list(cols["new_recipients"]))
        if cols.get("pending") is not None:
            cols["pending"] = cols["pending"].to_json()
        names, marks = ", ".join(cols), ", ".join("?" for _ in cols)
        with self._j.transaction() as db:
            cur = db.execute(
                f"INSERT INTO rotations ({names}) VALUES ({marks})", tuple(cols.values())
            )
        return int(cur.lastrowid or 0)

    def drop(self, rotation_id: int) -> None:
        with self._j.transaction() as db:
            db.execute("DELETE FROM rotations WHERE id=?", (rotation_id,))

    def set_pending(self, rotation_id: int, new: NewCopy) -> None:
        with self._j.transaction() as db:
            db.execute(
                "UPDATE rotations SET pending=?, updated=? WHERE id=?",
                (new.to_json(), time.time(), rotation_id),
            )

    def commit(
        self, rotation_id: int, object_id: int, new: NewCopy, sent: int, copied: int
    ) -> None:
        """The rotation and the object's copy record, in one transaction.

        Part etags of the copy record are cleared unless given: the rotated object's
        multipart layout is not the migration's, so they no longer describe it."""
        now = time.time()
        with self._j.transaction() as db:
            db.execute(
                "UPDATE rotations SET state='committed', target_etag=?, target_size=?, "
                "cipher_sha256=?, bytes_sent=?, bytes_copied=?, resume_token=NULL, pending=NULL, "
                "updated=? WHERE id=?",
                (
                    new.target_etag,
                    new.target_size,
                    new.cipher_sha256,
                    sent,
                    copied,
                    now,
                    rotation_id,
                ),
            )
            db.execute(
                "UPDATE objects SET target_size=?, target_etag=?, cipher_sha256=?, updated=? "
                "WHERE id=?",
                (new.target_size, new.target_etag, new.cipher_sha256, now, object_id),
            )
            if new.clear_part_etags:
                db.execute("UPDATE parts SET etag='' WHERE object_id=?", (object_id,))
            for number, size, digest, etag in new.parts:
                db.execute(
                    "UPDATE parts SET cipher_size=?, cipher_sha256=?, etag=?, updated=? "
                    "WHERE object_id=? AND number=?",
                    (size, digest, etag, now, object_id, number),
                )
