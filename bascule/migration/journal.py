"""The journal: SQLite (WAL), written by the coordinator only.

It keeps facts: runs, objects, parts, attempts, checksums, and for each object in flight its
age header, nonce and file key, the file key wrapped (ChaCha20-Poly1305) under a local key
file of mode 0600, never in plaintext.

Group commit. Most state changes are one committed transaction each. The commit rows of
objects (`record_committed`, `commit_object`) and verdicts (`Facts.record_verification`) are
the exception: they are written into one open transaction that is committed when it holds
`GROUP_ROWS` rows, when it is `GROUP_SECONDS` old (the coordinator calls `flush_if_due` between
settlements), before any other write (`transaction`), and at `flush`/`close`. Per-object
transactions cost more than the copy of a small object; a batch costs one. Verdicts lost to a
kill leave their verify run `running`, never `completed`: the verify is run again.

Why a SIGKILL still loses at most the parts in flight:
- an object is committed on the target *before* its commit row is written, and a commit row
  not yet flushed is lost with the process. On resume the plan sees no committed row (no row
  at all, or an `in_progress` row) and re-plans the object: a target object the journal does
  not hold as committed, with its checksums, is never taken as done. A multipart object whose
  commit row was lost keeps its `in_progress` row and upload id: the upload is gone, so the
  coordinator stats the target and finishes the bookkeeping from the journaled parts
  (nothing is sent again); a single-request object is sent again;
- the coordinator counts the bytes of a single-request object whose commit row is not yet
  durable as still in flight (`in_batch` tells it), and flushes when the byte bound would
  otherwise stop it: bytes in flight plus bytes settled but not durable never exceed
  `max_bytes_in_flight`, the bound the contract already names;
- rows that make a resume possible (`begin_object`: the upload id and wrapped key;
  `record_part`; attempts) are committed at once, after flushing the batch, as before.

Rows leave the journal as immutable records (`ObjectRow`, `PartRow`, `RunRow`, `StepRow`,
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
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

import structlog

from bascule.errors import JournalError
from bascule.migration.journal_rows import (  # the rows, re-exported for callers
    CommittedRow as CommittedRow,
)
from bascule.migration.journal_rows import (
    ObjectRow as ObjectRow,
)
from bascule.migration.journal_rows import (
    PartRow as PartRow,
)
from bascule.migration.journal_rows import (
    RunRow as RunRow,
)
from bascule.migration.journal_rows import (
    StepRow as StepRow,
)
from bascule.migration.journal_rows import (
    UploadRow as UploadRow,
)
from bascule.migration.journal_rows import (
    VerdictRow as VerdictRow,
)
from bascule.migration.journal_rows import (
    VerificationRow as VerificationRow,
)
from bascule.migration.journal_rows import (
    VerifyTally as VerifyTally,
)
from bascule.migration.journal_rows import (
    _detail as _detail,
)
from bascule.migration.journal_rows import (
    _tally as _tally,
)
from bascule.migration.journal_rows import (
    _text as _text,
)
from bascule.migration.keywrap import KeyWrapper as KeyWrapper  # re-exported for callers
from bascule.migration.lock import WriterLock
from bascule.migration.plan import JournalObject

log = structlog.get_logger("bascule.journal")

SCHEMA_VERSION = 1
GROUP_ROWS = 256  # commit rows per group commit, at most
GROUP_SECONDS = 0.2  # age of the oldest row of an open group commit, at most
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
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, target_key TEXT NOT NULL,
    resume_token TEXT, run_id INTEGER, opening REAL NOT NULL, opened REAL, closed REAL,
    present TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id INTEGER NOT NULL, step TEXT NOT NULL, dataset TEXT NOT NULL, key TEXT NOT NULL,
    etag TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (run_id, step, dataset, key)
) WITHOUT ROWID;
"""
# What status, report, verify and resume ask, as covering indexes where the rows are many:
# committed objects per dataset (readiness), verdicts per run and dataset (readiness, verify),
# a run's steps, runs by command. A writer creates them (on an older journal: at its first
# writing open); readers get the same answers without them, only slower.
_INDEXES = """
CREATE INDEX IF NOT EXISTS objects_state ON objects (state, dataset, source_size);
CREATE INDEX IF NOT EXISTS verifications_run ON verifications (run_id, dataset, verdict);
CREATE INDEX IF NOT EXISTS steps_run ON steps (run_id);
CREATE INDEX IF NOT EXISTS runs_command ON runs (command, id);
CREATE INDEX IF NOT EXISTS uploads_open ON uploads (dataset, closed);
CREATE INDEX IF NOT EXISTS uploads_token ON uploads (resume_token);
"""


def fingerprint(identity: Mapping[str, Any]) -> str:
    """A stable digest of the configuration facts a journal is bound to."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


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
        self._batch_rows = 0  # rows in the open group commit (0: none open)
        self._batch_since = 0.0  # time.monotonic() of its first row
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
            if create:
                db.executescript(_INDEXES)
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
        self.flush()
        self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement (for modules keeping their own tables here)."""
        return list(self._db.execute(sql, args))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write committed at its end (after the open group commit, if any)."""
        self.flush()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _grouped(self, rows: int = 1) -> Iterator[sqlite3.Connection]:
        """`rows` rows of the open group commit (opened here if none is); committed with the
        batch, when the batch reaches its row or age bound. A failed statement rolls the
        whole batch back: the same loss as a crash, which the resume handles."""
        if not self._batch_rows:
            self._db.execute("BEGIN IMMEDIATE")
            self._batch_since = time.monotonic()
        try:
            yield self._db
        except BaseException:
            self._batch_rows = 0
            self._db.execute("ROLLBACK")
            raise
        self._batch_rows += rows
        if self._batch_rows >= GROUP_ROWS:
            self.flush()

    @property
    def in_batch(self) -> bool:
        """Whether commit rows written since the last flush are not yet durable."""
        return self._batch_rows > 0

    def flush(self) -> None:
        """Commit the open group commit, if any: every row written so far is durable."""
        if self._batch_rows:
            self._batch_rows = 0
            self._db.execute("COMMIT")

    def flush_if_due(self) -> None:
        """Commit the open group commit if its oldest row is GROUP_SECONDS old."""
        if self._batch_rows and time.monotonic() - self._batch_since >= GROUP_SECONDS:
            self.flush()

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

    def change_mark(self) -> int:
        """Changes whenever a run writes this journal (each starts with a runs row): a plan
        made against one mark holds while the mark is the same."""
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM runs").fetchone()
        return int(row[0])

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

    def plan_rows(self, dataset: str, page: int = 5_000) -> Iterator[JournalObject]:
        """What the plan needs of each of the dataset's objects, ascending by target key
        (SQLite's binary collation: UTF-8 byte order, the listings' order).

        Read in pages of `page` rows, each its own short read on the (dataset, target_key)
        index: no read transaction stays open while the caller works (a writer may write
        between pages; a row is read before the plan hands its object to the coordinator, so
        the coordinator's own writes never change a row still to be read)."""
        after = ""  # every key sorts after the empty string
        while True:
            rows = self._db.execute(
                "SELECT target_key, source_etag, source_size, target_size, state FROM objects "
                "WHERE dataset=? AND target_key > ? ORDER BY target_key LIMIT ?",
                (dataset, after, page),
            ).fetchall()
            for r in rows:
                yield JournalObject(r[0], r[1], r[2], r[3], r[4] in ("committed", "verified"))
            if len(rows) < page:
                return
            after = rows[-1][0]

    def committed_totals(self) -> dict[str, tuple[int, int]]:
        """Per dataset, (objects, source bytes) in state committed: one aggregate query over
        an index, not a row scan."""
        rows = self._db.execute(
            "SELECT dataset, COUNT(*), COALESCE(SUM(source_size), 0) FROM objects "
            "WHERE state='committed' GROUP BY dataset"
        )
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def copy_rows(self, dataset: str, page: int = 5_000) -> Iterator[tuple[Any, ...]]:
        """What verify compares, per object of `dataset`, as plain tuples (no ObjectRow: a
        million of them cost seconds): (target_key, source_etag, source_size, target_size,
        part_size, parts, state, plain_sha256, cipher_sha256, target_etag, part etags joined
        by ',' for objects of more than one part, else None).

        Ascending by target key and read in pages of `page` rows, as `plan_rows` (its
        contract on order and on writes between pages holds here too)."""
        after = ""  # every key sorts after the empty string
        while True:
            rows = self._db.execute(
                "SELECT o.target_key, o.source_etag, o.source_size, o.target_size, "
                "o.part_size, o.parts, o.state, o.plain_sha256, o.cipher_sha256, o.target_etag, "
                "CASE WHEN o.parts > 1 THEN (SELECT group_concat(etag, ',') FROM "
                "(SELECT etag FROM parts WHERE object_id = o.id ORDER BY number)) END "
                "FROM objects o WHERE o.dataset=? AND o.target_key > ? ORDER BY o.target_key "
                "LIMIT ?",
                (dataset, after, page),
            ).fetchall()
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1][0]

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
        """Mark an object committed (group commit: durable at the next flush)."""
        with self._grouped() as db:
            db.execute(
                "UPDATE objects SET state='committed', plain_sha256=?, cipher_sha256=?, "
                "target_etag=?, run_id=?, header=NULL, nonce=NULL, wrapped_key=NULL, "
                "resume_token=NULL, updated=? WHERE id=?",
                (plain, cipher, etag, run, time.time(), object_id),
            )

    def record_committed(self, rows: Sequence[CommittedRow]) -> None:
        """Record objects written in one request each, already committed, replacing any
        earlier generation's rows (group commit: durable at the next flush). One statement
        for the lot: 20,000 rows in batches of 160 cost 8 us each, against 12 one by one."""
        if not rows:
            return
        now = time.time()
        with self._grouped(len(rows)) as db:
            older = [(r.dataset, r.target_key) for r in rows if r.generation > 1]
            if older:  # an earlier generation's row exists: its parts go
                db.executemany(
                    "DELETE FROM parts WHERE object_id IN "
                    "(SELECT id FROM objects WHERE dataset=? AND target_key=?)",
                    older,
                )
            db.executemany(_COMMITTED_SQL, [(*r, now) for r in rows])

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
        """One object's verdict (group commit, like commit rows: durable at the next flush;
        a verify run ends with `end_run`, which flushes)."""
        with self._j._grouped() as db:
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

    def record_verifications(
        self, run_id: int, level: str, rows: Iterable[VerdictRow], batch: int = 10_000
    ) -> None:
        """Append many verdicts of one run, `batch` rows per transaction."""
        items = iter(rows)
        while chunk := list(islice(items, batch)):
            now = time.time()
            with self._j.transaction() as db:
                db.executemany(
                    "INSERT INTO verifications (run_id, ts, dataset, source_key, target_key, "
                    "level, verdict, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    ((run_id, now, r.dataset, r.source_key, r.target_key, level, r.verdict,
                      json.dumps(r.detail, default=str)) for r in chunk),
                )  # fmt: skip

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

    def verdict_totals(self, run_id: int) -> dict[str, tuple[int, int]]:
        """Per dataset, (verified, with findings) among the records of one verify run: one
        aggregate query over an index."""
        rows = self._j._db.execute(
            "SELECT dataset, SUM(verdict = 'verified'), COUNT(*) FROM verifications "
            "WHERE run_id=? GROUP BY dataset",
            (run_id,),
        )
        return {str(r[0]): (int(r[1]), int(r[2]) - int(r[1])) for r in rows}

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


# A committed row written in one request: CommittedRow's fields and `updated`, bound; the
# key material columns emptied (a committed object keeps none).
_COMMITTED_COLUMNS = (*CommittedRow._fields, "updated")
_COMMITTED_SQL = (
    f"INSERT INTO objects ({', '.join(_COMMITTED_COLUMNS)}, state, header, nonce, wrapped_key, "
    f"resume_token) VALUES ({', '.join('?' * len(_COMMITTED_COLUMNS))}, 'committed', NULL, "
    "NULL, NULL, NULL) ON CONFLICT (dataset, target_key) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in _COMMITTED_COLUMNS)
    + ", state='committed', header=NULL, nonce=NULL, wrapped_key=NULL, resume_token=NULL"
)


def _object_row(row: tuple[Any, ...]) -> ObjectRow:
    values = list(row)
    values[7] = bool(values[7])
    return ObjectRow(*values)


class Uploads:
    """The uploads this journal opened: the only ones bascule may abort.

    `opening` is recorded before the request that opens an upload is sent, `opened` with
    its resume token as soon as it answers (before any part is written), `closed` once it
    is committed or aborted. Rows of journals made before this table existed are absent:
    their uploads are aborted only through the objects still holding their token."""

    def __init__(self, journal: Journal) -> None:
        self._j = journal

    def opening(self, dataset: str, target_key: str, run_id: int, present: list[str]) -> int:
        """Record an upload about to be opened; `present`: the tokens of the unfinished
        uploads the target lists under exactly this key right before (not ours to abort)."""
        with self._j.transaction() as db:
            cur = db.execute(
                "INSERT INTO uploads (dataset, target_key, run_id, opening, present) "
                "VALUES (?, ?, ?, ?, ?)",
                (dataset, target_key, run_id, time.time(), json.dumps(sorted(present))),
            )
        return int(cur.lastrowid or 0)

    def opened(self, upload_id: int, resume_token: str) -> None:
        with self._j.transaction() as db:
            db.execute(
                "UPDATE uploads SET resume_token=?, opened=? WHERE id=?",
                (resume_token, time.time(), upload_id),
            )

    def closed(self, resume_token: str) -> None:
        """The upload with this token was committed or aborted (unknown tokens: no-op)."""
        with self._j.transaction() as db:
            db.execute(
                "UPDATE uploads SET closed=? WHERE resume_token=? AND closed IS NULL",
                (time.time(), resume_token),
            )

    def close_row(self, upload_id: int) -> None:
        with self._j.transaction() as db:
            db.execute("UPDATE uploads SET closed=? WHERE id=?", (time.time(), upload_id))

    def still_open(self, dataset: str) -> list[UploadRow]:
        """Uploads of `dataset` neither committed nor aborted, oldest first."""
        rows = self._j._db.execute(
            "SELECT id, dataset, target_key, resume_token, run_id, opening, opened, present "
            "FROM uploads WHERE dataset=? AND closed IS NULL ORDER BY id",
            (dataset,),
        )
        return [
            UploadRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])))
            for r in rows
        ]

    def tokens(self, dataset: str) -> set[str]:
        """Every resume token this journal ever recorded for `dataset`."""
        rows = self._j._db.execute(
            "SELECT resume_token FROM uploads WHERE dataset=? AND resume_token IS NOT NULL",
            (dataset,),
        )
        return {str(r[0]) for r in rows}
