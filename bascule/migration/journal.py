"""The journal: SQLite (WAL), written by the coordinator only.

It keeps facts: runs, objects, parts, attempts, checksums, and for each object in flight its
age header, nonce and file key, the file key wrapped (ChaCha20-Poly1305) under a local key
file of mode 0600, never in plaintext. Every state change is one committed transaction, so a
SIGKILL at any instant loses at most the parts in flight.

Rows leave the journal as frozen dataclasses (`ObjectRow`, `PartRow`, `RunRow`, `StepRow`,
`VerificationRow`). The free-form JSON `detail` of runs, steps and verifications stays
available read-only; the fields other packages rely on are typed accessors on the rows, so
the key names live here and nowhere else.

A journal belongs to one configuration: its fingerprint (project and the datasets' source
and target locations) is stored at creation and checked at every open.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import structlog
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bascule.errors import JournalError
from bascule.migration.lock import WriterLock
from bascule.migration.plan import JournalObject

log = structlog.get_logger("bascule.journal")

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, command TEXT NOT NULL, started REAL NOT NULL, ended REAL,
    status TEXT NOT NULL, bytes INTEGER NOT NULL DEFAULT 0, objects INTEGER NOT NULL DEFAULT 0,
    seconds REAL, detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, source_key TEXT NOT NULL,
    target_key TEXT NOT NULL, source_etag TEXT NOT NULL, source_size INTEGER NOT NULL,
    target_size INTEGER NOT NULL, encrypt INTEGER NOT NULL, part_size INTEGER NOT NULL,
    parts INTEGER NOT NULL, state TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 1,
    header BLOB, nonce BLOB, wrapped_key BLOB, resume_token TEXT,
    plain_sha256 TEXT, cipher_sha256 TEXT, target_etag TEXT, run_id INTEGER,
    updated REAL NOT NULL, UNIQUE (dataset, target_key)
);
CREATE TABLE IF NOT EXISTS parts (
    object_id INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
    number INTEGER NOT NULL, size INTEGER NOT NULL, cipher_size INTEGER NOT NULL,
    plain_sha256 TEXT NOT NULL, cipher_sha256 TEXT NOT NULL, etag TEXT NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (object_id, number)
);
CREATE TABLE IF NOT EXISTS attempts (
    object_id INTEGER NOT NULL, generation INTEGER NOT NULL, number INTEGER NOT NULL,
    count INTEGER NOT NULL, last_error TEXT, PRIMARY KEY (object_id, generation, number)
);
CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, ts REAL NOT NULL, dataset TEXT NOT NULL,
    source_key TEXT, target_key TEXT, level TEXT NOT NULL, verdict TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, runbook TEXT NOT NULL, mode TEXT NOT NULL,
    phase TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL, started REAL NOT NULL,
    ended REAL, outcome TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, run_id INTEGER, kind TEXT NOT NULL,
    dataset TEXT, key TEXT, detail TEXT NOT NULL DEFAULT '{}'
);
"""


@dataclass(frozen=True)
class ObjectRow:
    id: int
    dataset: str
    source_key: str
    target_key: str
    source_etag: str
    source_size: int
    target_size: int
    encrypt: bool
    part_size: int
    parts: int
    state: str  # in_progress | committed
    generation: int
    header: bytes | None
    nonce: bytes | None
    wrapped_key: bytes | None
    resume_token: str | None
    plain_sha256: str | None
    cipher_sha256: str | None
    target_etag: str | None = None


@dataclass(frozen=True)
class PartRow:
    number: int
    size: int
    cipher_size: int
    plain_sha256: str
    cipher_sha256: str
    etag: str


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class RunRow:
    """One invocation (`command`: migrate, verify, rehearse, execute, rollback).

    `status`: running | completed | failed | interrupted | rolled_back | rollback_failed
    (those of a runbook run) or the migrate/verify statuses. `ended` and `seconds` are None
    while it runs. `detail`: what the command recorded at its start."""

    id: int
    command: str
    started: float
    ended: float | None
    status: str
    bytes: int
    objects: int
    seconds: float | None
    detail: Mapping[str, Any]

    @property
    def runbook(self) -> str:
        """The runbook's name (runbook runs), else ""."""
        return _text(self.detail.get("runbook"))

    @property
    def runbook_sha256(self) -> str | None:
        """The digest of the runbook's content (runbook runs), else None."""
        value = self.detail.get("runbook_sha256")
        return None if value is None else str(value)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The datasets the run covered (runbook and verify runs), else ()."""
        return tuple(str(d) for d in self.detail.get("datasets") or ())


@dataclass(frozen=True, slots=True)
class VerifyTally:
    """What one verify step found for one dataset."""

    objects: int
    verified: int
    findings: int
    bytes: int
    level: str  # quick | full
    rows: bool  # row counts compared


@dataclass(frozen=True, slots=True)
class StepRow:
    """One runbook step of a run. `outcome`: running | passed | failed | warned | skipped |
    interrupted. `ended` is None while it runs; `detail` is what the step reported."""

    id: int
    run_id: int
    runbook: str
    mode: str
    phase: str
    step: str
    kind: str
    started: float
    ended: float | None
    outcome: str
    detail: Mapping[str, Any]

    @property
    def seconds(self) -> float:
        """The step's measured duration (0.0 while it runs)."""
        return float(self.detail.get("seconds", 0.0))

    @property
    def message(self) -> str:
        return _text(self.detail.get("message"))

    @property
    def copied_bytes(self) -> int:
        """Bytes a copy step sent (0 for other kinds)."""
        return int(self.detail.get("bytes", 0)) if self.kind == "copy" else 0

    @property
    def copied_objects(self) -> int:
        """Objects a copy step committed (0 for other kinds)."""
        return int(self.detail.get("objects", 0)) if self.kind == "copy" else 0

    @property
    def findings(self) -> int:
        """Verification findings of a verify step (0 for other kinds)."""
        return int(self.detail.get("findings") or 0) if self.kind == "verify" else 0

    @property
    def datasets_failed(self) -> tuple[str, ...]:
        """The datasets a failure is about (() when it is about none in particular)."""
        return tuple(str(d) for d in self.detail.get("datasets_failed") or ())

    @property
    def verified(self) -> dict[str, VerifyTally]:
        """Per dataset, what a verify step found ({} for other kinds)."""
        if self.kind != "verify":
            return {}
        return {name: _tally(d) for name, d in (self.detail.get("datasets") or {}).items()}

    @property
    def snapshot(self) -> dict[str, dict[str, tuple[str, int]]]:
        """Per dataset, the source inventory (key -> (etag, size)) a freeze step took."""
        raw = self.detail.get("snapshot") or {}
        return {
            name: {key: (str(etag), int(size)) for key, (etag, size) in keys.items()}
            for name, keys in raw.items()
        }


def _tally(d: Mapping[str, Any]) -> VerifyTally:
    return VerifyTally(
        int(d.get("objects", 0)), int(d.get("verified", 0)), int(d.get("findings", 0)),
        int(d.get("bytes", 0)), _text(d.get("level")), bool(d.get("rows")),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class VerificationRow:
    """The verdict of one object (or dataset-level check) in a verify run. `detail`: the
    checksums and counts behind it."""

    run_id: int
    ts: float
    dataset: str
    source_key: str | None
    target_key: str | None
    level: str
    verdict: str
    detail: Mapping[str, Any]


def _detail(text: str) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(text))


def fingerprint(identity: Mapping[str, Any]) -> str:
    """A stable digest of the configuration facts a journal is bound to."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


class KeyWrapper:
    """Wraps per-object file keys under a 32-byte local key (file mode 0600)."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def load(cls, path: Path) -> KeyWrapper:
        """The existing key at `path`; JournalError if missing, shared or damaged."""
        if not path.exists():
            raise JournalError(
                f"{path}: journal key file not found; copy it from the coordinator "
                "(or set BASCULE_JOURNAL_KEY_FILE)"
            )
        if path.stat().st_mode & 0o077:
            raise JournalError(
                f"{path}: journal key file is readable by others; run `chmod 600 {path}`"
            )
        key = path.read_bytes()
        if len(key) != 32:
            raise JournalError(f"{path}: journal key file is damaged (not 32 bytes)")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> KeyWrapper:
        if path.exists():
            return cls.load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = os.urandom(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return cls(key)

    def wrap(self, file_key: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, file_key, context.encode())

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], context.encode())
        except InvalidTag:
            raise JournalError(
                f"cannot unwrap the file key of {context}: the journal key file does not match "
                "this journal; restore the right key file or start a new journal"
            ) from None


def _command_line() -> str:
    """What this process was started as (no secret ever travels on bascule's command line)."""
    return shlex.join(["bascule", *sys.argv[1:]])[:200]


def key_path_for(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name + ".key")


class Journal:
    """One SQLite connection, used from the coordinator thread only."""

    def __init__(
        self, path: Path, config_fingerprint: str, *, create: bool = True, command: str = ""
    ) -> None:
        """Open (`create`: create if missing, as the one writer) the journal at `path`.

        A writer (`create=True`) first takes the journal's writer lock (`lock.WriterLock`)
        and holds it until `close`; JournalLocked (exit 2) names the current holder. A
        reader takes no lock. `command` names the writer in the lock (default: argv)."""
        self.path = path
        self._lock = WriterLock(path, command or _command_line()).acquire() if create else None
        try:
            self._db = self._open(path, create)
            self._check_identity(config_fingerprint, create)
            if self._lock is not None and self._lock.took_over is not None:
                dead = self._lock.took_over
                self.event(None, "lock-taken-over", host=dead.host, pid=dead.pid,
                           command=dead.command, since=dead.since)  # fmt: skip
                log.warning("journal.lock.taken_over", previous=dead.describe())
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _open(self, path: Path, create: bool) -> sqlite3.Connection:
        if not path.exists() and not create:
            raise JournalError(f"{path}: no journal yet; run `bascule migrate` first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only: SQLite gives the -wal and -shm files the mode of the database file.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"{path}: not a usable bascule journal ({exc}); move it aside or point "
                "`journal:` in the config at a new file"
            ) from None
        except OSError as exc:
            raise JournalError(
                f"{path}: cannot create the journal ({exc.strerror}); choose a writable "
                "directory for `journal:` in the config"
            ) from None
        return db

    def _check_identity(self, config_fingerprint: str, create: bool) -> None:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            with self.transaction():
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema', ?), ('config', ?)",
                    (str(SCHEMA_VERSION), config_fingerprint),
                )
            return
        if rows.get("schema") != str(SCHEMA_VERSION):
            raise JournalError(f"{self.path}: journal schema {rows.get('schema')} is not supported")
        if rows.get("config") != config_fingerprint:
            raise JournalError(
                f"{self.path}: this journal was made by another configuration (other project or "
                "datasets); point `journal:` at a new file, or use the config that made it"
            )

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement (for modules keeping their own tables here)."""
        return list(self._db.execute(sql, args))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- runs and events -------------------------------------------------------------

    def start_run(self, command: str, detail: Mapping[str, Any] | None = None) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (command, started, status, detail) VALUES (?, ?, 'running', ?)",
                (command, time.time(), json.dumps(dict(detail or {}))),
            )
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, status: str, nbytes: int, objects: int, seconds: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET ended=?, status=?, bytes=?, objects=?, seconds=? WHERE id=?",
                (time.time(), status, nbytes, objects, seconds, run_id),
            )

    def event(
        self, run_id: int | None, kind: str, dataset: str = "", key: str = "", **detail: Any
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO events (ts, run_id, kind, dataset, key, detail) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), run_id, kind, dataset, key, json.dumps(detail, default=str)),
            )

    def last_throughput(self, command: str = "migrate") -> float | None:
        """Bytes per second of the last finished run of `command` that moved bytes."""
        row = self._db.execute(
            "SELECT bytes, seconds FROM runs WHERE command=? AND status='completed' "
            "AND bytes > 0 AND seconds > 0 ORDER BY id DESC LIMIT 1",
            (command,),
        ).fetchone()
        return float(row[0]) / float(row[1]) if row else None

    def runs(self, command: str | None = None) -> list[RunRow]:
        """Every run (of `command`, when given), oldest first."""
        sql = f"SELECT {_RUN_COLS} FROM runs"
        args: tuple[Any, ...] = ()
        if command:
            sql += " WHERE command=?"
            args = (command,)
        return [
            RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], _detail(r[8]))
            for r in self._db.execute(sql + " ORDER BY id", args)
        ]

    # -- objects ---------------------------------------------------------------------

    def plan_view(self, dataset: str) -> dict[str, JournalObject]:
        rows = self._db.execute(
            "SELECT target_key, source_etag, source_size, target_size, state FROM objects "
            "WHERE dataset=?",
            (dataset,),
        )
        return {
            r[0]: JournalObject(r[0], r[1], r[2], r[3], r[4] in ("committed", "verified"))
            for r in rows
        }

    def get_object(self, dataset: str, target_key: str) -> ObjectRow | None:
        row = self._db.execute(
            f"SELECT {_OBJECT_COLS} FROM objects WHERE dataset=? AND target_key=?",
            (dataset, target_key),
        ).fetchone()
        return _object_row(row) if row else None

    def objects(self, dataset: str | None = None, state: str | None = None) -> list[ObjectRow]:
        sql = f"SELECT {_OBJECT_COLS} FROM objects WHERE 1=1"
        args: list[Any] = []
        if dataset is not None:
            sql += " AND dataset=?"
            args.append(dataset)
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        return [_object_row(r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def begin_object(self, values: Mapping[str, Any]) -> ObjectRow:
        """Record an object about to be written (replacing any earlier generation's row and
        its parts). `values` holds the objects columns."""
        with self.transaction() as db:
            old = db.execute(
                "SELECT id, generation FROM objects WHERE dataset=? AND target_key=?",
                (values["dataset"], values["target_key"]),
            ).fetchone()
            generation = old[1] + 1 if old else 1
            if old:
                db.execute("DELETE FROM parts WHERE object_id=?", (old[0],))
                db.execute("DELETE FROM objects WHERE id=?", (old[0],))
            cols = dict(values, generation=generation, state="in_progress", updated=time.time())
            names = ", ".join(cols)
            marks = ", ".join("?" for _ in cols)
            db.execute(f"INSERT INTO objects ({names}) VALUES ({marks})", tuple(cols.values()))
        found = self.get_object(values["dataset"], values["target_key"])
        assert found is not None
        return found

    def record_part(self, object_id: int, part: PartRow) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    object_id,
                    part.number,
                    part.size,
                    part.cipher_size,
                    part.plain_sha256,
                    part.cipher_sha256,
                    part.etag,
                    time.time(),
                ),
            )

    def parts(self, object_id: int) -> list[PartRow]:
        rows = self._db.execute(
            "SELECT number, size, cipher_size, plain_sha256, cipher_sha256, etag FROM parts "
            "WHERE object_id=? ORDER BY number",
            (object_id,),
        )
        return [PartRow(*r) for r in rows]

    def forget_parts(self, object_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM parts WHERE object_id=?", (object_id,))

    def commit_object(self, object_id: int, plain: str, cipher: str, etag: str, run: int) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE objects SET state='committed', plain_sha256=?, cipher_sha256=?, "
                "target_etag=?, run_id=?, header=NULL, nonce=NULL, wrapped_key=NULL, "
                "resume_token=NULL, updated=? WHERE id=?",
                (plain, cipher, etag, run, time.time(), object_id),
            )

    def record_committed(
        self, values: Mapping[str, Any], plain: str, cipher: str, etag: str, run: int
    ) -> None:
        """Record an object written in one request, already committed: one transaction
        replacing any earlier generation's row."""
        with self.transaction() as db:
            old = db.execute(
                "SELECT id FROM objects WHERE dataset=? AND target_key=?",
                (values["dataset"], values["target_key"]),
            ).fetchone()
            if old:
                db.execute("DELETE FROM parts WHERE object_id=?", (old[0],))
                db.execute("DELETE FROM objects WHERE id=?", (old[0],))
            cols = dict(
                values, state="committed", plain_sha256=plain, cipher_sha256=cipher,
                target_etag=etag, run_id=run, updated=time.time(),
            )  # fmt: skip
            names = ", ".join(cols)
            marks = ", ".join("?" for _ in cols)
            db.execute(f"INSERT INTO objects ({names}) VALUES ({marks})", tuple(cols.values()))

    def drop_object(self, object_id: int) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM objects WHERE id=?", (object_id,))

    def add_attempt(
        self, object_id: int, generation: int, number: int, error: str, count: int = 1
    ) -> int:
        """Count `count` failed attempts of a part; returns the total so far (survives
        restarts)."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?) ON CONFLICT (object_id, generation, "
                "number) DO UPDATE SET count = count + excluded.count, "
                "last_error = excluded.last_error",
                (object_id, generation, number, count, error[:500]),
            )
            row = db.execute(
                "SELECT count FROM attempts WHERE object_id=? AND generation=? AND number=?",
                (object_id, generation, number),
            ).fetchone()
        return int(row[0])

    def attempts(self, object_id: int, generation: int, number: int) -> int:
        row = self._db.execute(
            "SELECT count FROM attempts WHERE object_id=? AND generation=? AND number=?",
            (object_id, generation, number),
        ).fetchone()
        return int(row[0]) if row else 0

    def reset_attempts(self) -> None:
        """A new run gets a fresh budget for parts whose budget a previous run spent."""
        with self.transaction() as db:
            db.execute("DELETE FROM attempts")


class Facts:
    """Verification results and runbook steps: appended by the coordinator, read by readiness."""

    def __init__(self, journal: Journal) -> None:
        self._j = journal

    def record_verification(
        self,
        run_id: int,
        dataset: str,
        source_key: str | None,
        target_key: str | None,
        level: str,
        verdict: str,
        detail: Mapping[str, Any],
    ) -> None:
        with self._j.transaction() as db:
            db.execute(
                "INSERT INTO verifications (run_id, ts, dataset, source_key, target_key, level, "
                "verdict, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    time.time(),
                    dataset,
                    source_key,
                    target_key,
                    level,
                    verdict,
                    json.dumps(dict(detail), default=str),
                ),
            )

    def verifications(self, run_id: int | None = None) -> list[VerificationRow]:
        """Rows of one verify run, or of the latest one when `run_id` is None."""
        if run_id is None:
            row = self._j._db.execute("SELECT MAX(run_id) FROM verifications").fetchone()
            run_id = row[0] if row and row[0] is not None else -1
        return [
            VerificationRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _detail(r[7]))
            for r in self._j._db.execute(
                f"SELECT {_VERIFICATION_COLS} FROM verifications WHERE run_id=? ORDER BY id",
                (run_id,),
            )
        ]

    def start_step(
        self, run_id: int, runbook: str, mode: str, phase: str, step: str, kind: str
    ) -> int:
        with self._j.transaction() as db:
            cur = db.execute(
                "INSERT INTO steps (run_id, runbook, mode, phase, step, kind, started, outcome) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (run_id, runbook, mode, phase, step, kind, time.time()),
            )
        return int(cur.lastrowid or 0)

    def end_step(self, step_id: int, outcome: str, detail: Mapping[str, Any]) -> None:
        with self._j.transaction() as db:
            db.execute(
                "UPDATE steps SET ended=?, outcome=?, detail=? WHERE id=?",
                (time.time(), outcome, json.dumps(dict(detail), default=str), step_id),
            )

    def steps(self, run_id: int | None = None) -> list[StepRow]:
        """The step rows of one run (of every run when `run_id` is None), in order."""
        sql = f"SELECT {_STEP_COLS} FROM steps"
        args: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id=?"
            args = (run_id,)
        return [
            StepRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], _detail(r[10]))
            for r in self._j._db.execute(sql + " ORDER BY id", args)
        ]


# SELECT lists in the field order of RunRow, StepRow and VerificationRow (detail last)
_RUN_COLS = "id, command, started, ended, status, bytes, objects, seconds, detail"
_STEP_COLS = "id, run_id, runbook, mode, phase, step, kind, started, ended, outcome, detail"
_VERIFICATION_COLS = "run_id, ts, dataset, source_key, target_key, level, verdict, detail"
_OBJECT_COLS = (
    "id, dataset, source_key, target_key, source_etag, source_size, target_size, encrypt, "
    "part_size, parts, state, generation, header, nonce, wrapped_key, resume_token, "
    "plain_sha256, cipher_sha256, target_etag"
)


def _object_row(row: tuple[Any, ...]) -> ObjectRow:
    values = list(row)
    values[7] = bool(values[7])
    return ObjectRow(*values)
