"""The coordinator: turns a plan into part tasks, bounds bytes in flight, journals results.

Only the coordinator (the thread that calls `Coordinator.run`) touches the journal. Tasks run
elsewhere (a `bascule.runners.TaskRunner`: a thread pool, or Dask workers) and return
`PartResult`s; a multipart upload's commit (complete, then stat) runs on a commit thread,
which touches the target only, and the coordinator journals the object when it returns.
Who retries what: the connectors retry nothing (S3 requests and Azure's data path go through
bascule's own HTTP client, which never retries; the Azure SDK's retries are turned down),
each task retries a transient failure with the one tenacity policy of `retry.py` within the
attempt budget the journal still allows, and the journal counts attempts across restarts.

Memory: at most `max_bytes_in_flight` bytes of ciphertext are held by running tasks (one part
is always allowed, however large), so RSS is about 100 MiB + 1.1 x max_bytes_in_flight.

Crash bound: the same budget also counts single-request objects already written whose commit
row is not yet durable (the journal's group commit, see `journal`): a SIGKILL sends again at
most `max_bytes_in_flight` bytes. Per object, the coordinator does bookkeeping only: an object
written in one request is one task that reads, makes its key material, encrypts and writes;
each object is logged at debug, and a summary at info every `SUMMARY_SECONDS`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from bascule.config import Transfer
from bascule.connectors.base import Connector, PartReceipt, PartWriterOpener
from bascule.endpoints import EndpointRef, connector
from bascule.errors import (
    Interrupted,
    ObjectNotFound,
    PreconditionFailed,
    VerificationError,
)
from bascule.migration.journal import (
    GROUP_SECONDS,
    CommittedRow,
    Journal,
    KeyWrapper,
    ObjectRow,
    PartRow,
    Uploads,
)
from bascule.migration.part_checksums import ResumeGuard
from bascule.migration.plan import ObjectPlan, PartSpec, plan_parts
from bascule.migration.progress import NullProgress, ProgressSink
from bascule.migration.retry import call_with_retries
from bascule.migration.tasks import (
    ObjectKey,
    ObjectOutcome,
    PartFailed,
    PartResult,
    PartTask,
    composite,
    run_objects,
    run_part_with_retries,
)
from bascule.runners import TaskRunner

log = structlog.get_logger("bascule.executor")
T = TypeVar("T")
UNJOURNALED = -1  # ObjectRow.id of a single-request object not yet in the journal
TaskFn = Callable[[PartTask], PartResult]
SUMMARY_SECONDS = 10.0  # an info line with the counts so far, at most this often
# A batch of small objects (`run_objects`) holds at most this many objects and, once it holds
# this many bytes, is sent: one task per object costs more than the copy of a small one.
# Each batch costs its own message, result, folder descriptors and flush: 20,000 tiny files
# on 2 worker processes take 0.956 of the CPU with 160 a batch than with 64, and 0.942 with
# 320, whose last batches then leave a core idle longer (wall 0.964 and 0.971).
BATCH_OBJECTS = 160
BATCH_BYTES = 8 * 1024 * 1024
# Multipart commits (complete, then stat) run on threads of their own, at most this many at
# once: on the coordinator thread, each one (0.7 s for a 256 MiB object on `rclone serve
# s3`, which assembles the parts and hashes the object for a HEAD) stopped the feeding and
# settling of every part in flight.
COMMIT_THREADS = 4


@dataclass
class RunStats:
    objects_committed: int = 0
    bytes_sent: int = 0  # plaintext bytes of parts that completed in this run
    parts_sent: int = 0
    restarted: list[str] = field(default_factory=list)  # sources that changed mid-copy
    orphans_aborted: int = 0


@dataclass
class ObjectJob:
    """One object being written: its journal row, and the parts still to send."""

    plan: ObjectPlan
    row: ObjectRow
    source: EndpointRef
    target: EndpointRef
    key: ObjectKey | None
    pending: deque[PartSpec]
    done: dict[int, PartRow] = field(default_factory=dict)
    in_flight: int = 0

    @property
    def complete(self) -> bool:
        return not self.pending and self.in_flight == 0 and len(self.done) == self.row.parts


@dataclass(frozen=True)
class ExecutorOptions:
    """The coordinator's bounds; their defaults live in `config.Transfer` alone."""

    concurrency: int
    max_bytes_in_flight: int
    max_attempts: int

    @classmethod
    def from_transfer(cls, transfer: Transfer) -> ExecutorOptions:
        return cls(transfer.concurrency, transfer.max_bytes_in_flight, transfer.max_attempts)


def object_metadata(plan: ObjectPlan) -> dict[str, str]:
    """User metadata on every target object: what it is, never anything secret."""
    return {
        "bascule-encryption": "age-v1" if plan.encrypt else "none",
        "bascule-plain-size": str(plan.size),
        "bascule-source-etag": plan.etag,
    }


class Coordinator:
    """Runs one migration: prepares objects, feeds the runner, records every fact."""

    def __init__(
        self,
        journal: Journal,
        run_id: int,
        runner: TaskRunner,
        options: ExecutorOptions,
        recipients: list[str],
        progress: ProgressSink | None = None,
        stop: threading.Event | None = None,
        objects_hint: int = 0,
        resume_guard: ResumeGuard | None = None,
    ) -> None:
        """`objects_hint`: how many objects the run expects (the plan's count), which sizes
        the batches of small objects so that every worker gets some (0: unknown).
        `resume_guard`: which unfinished uploads were opened under another part checksum than
        this run's (those are started over, not resumed); None: every one is resumed."""
        self.journal = journal
        self.run_id = run_id
        self.runner = runner
        self.options = options
        self.recipients = recipients
        self.progress = progress or NullProgress()
        self.stop = stop or threading.Event()
        self.stats = RunStats()
        self.uploads = Uploads(journal)
        self.resume_guard = resume_guard
        self.key_file = str(journal.path.with_name(journal.path.name + ".key"))
        self._wrapper = KeyWrapper.load_or_create(Path(self.key_file))
        self._futures: dict[Future[Any], _Flight] = {}
        self._commits: dict[Future[str], ObjectJob] = {}  # multipart commits under way
        self._committer: ThreadPoolExecutor | None = None
        self._batch: list[tuple[ObjectJob, PartSpec]] = []  # small objects not yet submitted
        self._batch_bytes = 0
        self._batch_max = batch_size(objects_hint, options.concurrency)
        self._bytes_in_flight = 0
        self._failure: BaseException | None = None
        self._ready: deque[ObjectJob] = deque()
        self._parsed_recipients: list[Any] | None = None
        self._recipients = tuple(recipients)
        self._unflushed_bytes = 0  # of single-request objects whose commit row is not durable
        self._settled_rows: list[CommittedRow] = []  # commit rows not yet written
        self._summary_at = time.monotonic()
        self._debug = logging.getLogger("bascule.executor").isEnabledFor(logging.DEBUG)

    def _retry(self, conn: Connector, call: Callable[[], T]) -> T:
        """A coordinator-side storage call (open, commit, stat, abort) under the same retry
        policy and budget as the part tasks."""
        return call_with_retries(call, conn.should_retry, self.options.max_attempts)[0]

    # -- object preparation --------------------------------------------------------

    def _new_key_material(self, plan: ObjectPlan) -> tuple[bytes, bytes, bytes | None]:
        if not plan.encrypt:
            return b"", b"", None
        from bascule.age import stream as age

        if self._parsed_recipients is None:
            self._parsed_recipients = list(age.parse_recipients(self.recipients))
        material = age.new_file(self._parsed_recipients)
        wrapped = self._wrapper.wrap(material.file_key, f"{plan.dataset}/{plan.target_key}")
        return material.header, material.nonce, wrapped

    def _multipart(self, plan: ObjectPlan, target: Connector) -> bool:
        return len(plan.parts) > 1 and isinstance(target, PartWriterOpener)

    def _start_object(
        self, plan: ObjectPlan, source: EndpointRef, target: EndpointRef
    ) -> ObjectJob:
        tgt = connector(target)
        # A "new" object has no journal row: the plan merged the journal and found none.
        old = None
        if plan.action != "new":
            old = self.journal.get_object(plan.dataset, plan.target_key)
        if old is not None and old.state == "in_progress" and old.source_etag == plan.etag:
            resumed = self._resume(plan, old, source, target, tgt)
            if resumed is not None:
                return resumed
        if old is not None and old.resume_token and isinstance(tgt, PartWriterOpener):
            token_ = old.resume_token
            self._retry(tgt, lambda: tgt.abort_upload(plan.target_key, token_))
            self.uploads.closed(token_)
        parts = plan.parts
        if len(parts) > 1 and not isinstance(tgt, PartWriterOpener):
            whole = plan_parts(plan.size, max(plan.size, 1) + 65536, plan.encrypt, 0)[0]
            parts = (replace(whole, cipher_offset=0, cipher_length=plan.target_size),)
        if len(parts) == 1:
            # One request writes the whole object: the task makes its key material; nothing
            # to resume after a crash, so the journal learns of it once, at commit (and never
            # holds its file key).
            row = self._unjournaled_row(plan, old)
            return self._job(plan, row, source, target, deque(parts), {})
        header, nonce, wrapped = self._new_key_material(plan)
        token = None
        if len(parts) > 1:
            token = self._open_upload(plan, tgt)
        values = {
            "dataset": plan.dataset,
            "source_key": plan.source_key,
            "target_key": plan.target_key,
            "source_etag": plan.etag,
            "source_size": plan.size,
            "target_size": plan.target_size,
            "encrypt": int(plan.encrypt),
            "part_size": plan.part_size,
            "parts": len(parts),
            "header": header or None,
            "nonce": nonce or None,
            "wrapped_key": wrapped,
            "resume_token": token,
            "run_id": self.run_id,
        }
        row = self.journal.begin_object(values)
        return self._job(plan, row, source, target, deque(parts), {})

    def _open_upload(self, plan: ObjectPlan, tgt: Connector) -> str:
        """Open an upload, journaled before the request and again once it answers (before any
        part is written): `abort_orphans` only ever aborts uploads recorded this way."""
        meta = object_metadata(plan)
        assert isinstance(tgt, PartWriterOpener)
        key = plan.target_key
        listed = self._retry(tgt, lambda: list(tgt.list_uploads(key)))
        present = [u.resume_token for u in listed if u.key == key]
        upload_id = self.uploads.opening(plan.dataset, key, self.run_id, present)
        writer, attempts = call_with_retries(
            lambda: tgt.open_writer(key, meta), tgt.should_retry, self.options.max_attempts
        )
        self.uploads.opened(upload_id, writer.resume_token)
        if attempts > 1:
            self._abort_lost_opens(plan.dataset, key, tgt, [*present, writer.resume_token])
        return writer.resume_token

    def _abort_lost_opens(self, dataset: str, key: str, tgt: Connector, present: list[str]) -> None:
        """Abort the uploads that open requests answered by an error may have created before
        their retry succeeded (the request reached the target, its answer was lost): the
        unfinished uploads of exactly `key` that the target did not list before the first
        request and that no row of this journal names, the rule `_unanswered` applies after
        a crash. Each is journaled before its abort, so `abort_orphans` finishes the job if
        the abort fails."""
        assert isinstance(tgt, PartWriterOpener)
        known = self.uploads.tokens(dataset) | set(present)
        listed = self._retry(tgt, lambda: list(tgt.list_uploads(key)))
        for upload in listed:
            if upload.key != key or upload.resume_token in known or upload.initiated is None:
                continue
            token = upload.resume_token
            row = self.uploads.opening(dataset, key, self.run_id, present)
            self.uploads.opened(row, token)
            self._retry(tgt, functools.partial(tgt.abort_upload, key, token))
            self.uploads.close_row(row)
            log.info("upload.lost_open_aborted", key=key)

    def _unjournaled_row(self, plan: ObjectPlan, old: ObjectRow | None) -> ObjectRow:
        return ObjectRow(
            id=UNJOURNALED, dataset=plan.dataset, source_key=plan.source_key,
            target_key=plan.target_key, source_etag=plan.etag, source_size=plan.size,
            target_size=plan.target_size, encrypt=plan.encrypt, part_size=plan.part_size,
            parts=1, state="in_progress", generation=old.generation + 1 if old else 1,
            header=None, nonce=None, wrapped_key=None, resume_token=None, plain_sha256=None,
            cipher_sha256=None,
        )  # fmt: skip

    def _job(
        self,
        plan: ObjectPlan,
        row: ObjectRow,
        source: EndpointRef,
        target: EndpointRef,
        pending: deque[PartSpec],
        done: dict[int, PartRow],
    ) -> ObjectJob:
        key = None
        if row.wrapped_key is not None:
            key = ObjectKey(row.wrapped_key, f"{plan.dataset}/{plan.target_key}", self.key_file)
        return ObjectJob(plan, row, source, target, key, pending, done)

    def _resume(
        self,
        plan: ObjectPlan,
        row: ObjectRow,
        source: EndpointRef,
        target: EndpointRef,
        tgt: Connector,
    ) -> ObjectJob | None:
        """Reattach to an object a crashed run left half-written; None to start it over."""
        if row.resume_token is None or not isinstance(tgt, PartWriterOpener):
            return None  # a single-put object: nothing on the target to resume
        if row.parts != len(plan.parts) or row.part_size != plan.part_size:
            return None
        token = row.resume_token
        if self._opened_under_another_checksum(plan, target, token):
            return None
        try:
            on_target = {
                p.number: p
                for p in self._retry(
                    tgt, lambda: tgt.open_writer(plan.target_key, None, token).list_parts()
                )
            }
        except ObjectNotFound:
            return self._committed_behind_our_back(plan, row, source, target, tgt)
        done = {
            p.number: p
            for p in self.journal.parts(row.id)
            if p.number in on_target and on_target[p.number].size == p.cipher_size
        }
        pending = deque(p for p in plan.parts if p.number not in done)
        log.info("object.resume", key=plan.target_key, parts_done=len(done), parts=row.parts)
        return self._job(plan, row, source, target, pending, done)

    def _opened_under_another_checksum(
        self, plan: ObjectPlan, target: EndpointRef, token: str
    ) -> bool:
        """True (and said) where the upload was opened under another part checksum than this
        run's: its parts could not be added to, nor the upload completed (`part_checksums`)."""
        guard = self.resume_guard
        then = guard.stale(target.name, token) if guard is not None else None
        if guard is None or then is None:
            return False
        log.warning(
            "object.upload_restarted", key=plan.target_key, endpoint=target.name,
            opened_with=then, part_checksum=guard.checksum_now(target.name),
            why="the upload was opened under another part checksum; its parts are sent again",
        )  # fmt: skip
        return True

    def _committed_behind_our_back(
        self,
        plan: ObjectPlan,
        row: ObjectRow,
        source: EndpointRef,
        target: EndpointRef,
        tgt: Connector,
    ) -> ObjectJob | None:
        """The upload is gone: a crash during commit may have let the commit land. If the
        target holds this very version (source etag in its metadata, exact size) and the
        journal has every part, finish the bookkeeping instead of sending it all again."""
        parts = {p.number: p for p in self.journal.parts(row.id)}
        if len(parts) != row.parts:
            return None
        try:
            info = self._retry(tgt, lambda: tgt.stat(plan.target_key))
        except ObjectNotFound:
            return None
        if info.size != plan.target_size or info.metadata.get("bascule-source-etag") != plan.etag:
            return None
        log.info("object.found_committed", key=plan.target_key)
        return self._job(plan, row, source, target, deque(), parts)

    # -- the loop ------------------------------------------------------------------

    def run(self, work: Iterator[tuple[ObjectPlan, EndpointRef, EndpointRef]]) -> RunStats:
        """Copy every object of `work`. Raises Interrupted when stopped (resumable), or the
        first permanent ConnectorError once in-flight parts have settled."""
        ready = self._ready
        work_iter = iter(work)
        exhausted = False
        try:
            while True:
                if self._failure is None and not self.stop.is_set():
                    exhausted = self._fill(ready, work_iter, exhausted)
                    self._write_committed()  # objects found complete while filling
                if not self._futures and not self._commits:
                    if exhausted or self._failure is not None or self.stop.is_set():
                        break
                    continue
                self._settle_some()
        finally:
            self._drain()
            if self._committer is not None:
                self._committer.shutdown()
            self._write_committed()
            self.journal.flush()
            self._release_durable()
            self._summary(force=True)
        if self._failure is not None:
            raise self._failure
        if self.stop.is_set():
            raise Interrupted("migration interrupted; run `bascule migrate` again to resume")
        return self.stats

    def _fill(
        self,
        ready: deque[ObjectJob],
        work: Iterator[tuple[ObjectPlan, EndpointRef, EndpointRef]],
        exhausted: bool,
    ) -> bool:
        """Submit parts while the byte and task bounds allow; returns whether work ran out.

        Objects written in one request gather into a batch (`run_objects`), submitted when
        full, when the work runs out, or when the next object is not one."""
        while len(self._futures) < self.options.concurrency * 2:
            while ready and not ready[0].pending:
                ready.popleft()
            if not ready:
                if exhausted:
                    self._submit_batch()
                    return True
                item = next(work, None)
                if item is None:
                    self._submit_batch()
                    return True
                job = self._start_object(*item)
                if job.complete or not job.pending:
                    self._finish_object(job)
                elif not self._batched(job):
                    ready.append(job)
                continue
            job = ready[0]
            part = job.pending[0]
            self._submit_batch()
            if not self._room_for(part.cipher_length):
                return exhausted
            job.pending.popleft()
            self._submit(job, part)
        return exhausted

    def _room_for(self, nbytes: int) -> bool:
        """Whether `nbytes` more fit the byte bound (flushing the group commit first if the
        bytes it holds are what stands in the way)."""
        if self._over_budget(nbytes) and self._unflushed_bytes:
            self.journal.flush()
            self._release_durable()
        return not self._over_budget(nbytes)

    def _batched(self, job: ObjectJob) -> bool:
        """Add a single-request object to the open batch; False (the caller sends it alone)
        for an object of parts, or when the batch and it would not fit the byte bound."""
        part = job.pending[0]
        if job.row.id != UNJOURNALED or len(job.pending) != 1:
            self._submit_batch()
            return False
        if not self._room_for(self._batch_bytes + part.cipher_length):
            self._submit_batch()
            return False
        job.pending.popleft()
        self._batch.append((job, part))
        self._batch_bytes += part.cipher_length
        if len(self._batch) >= self._batch_max or self._batch_bytes >= BATCH_BYTES:
            self._submit_batch()
        return True

    def _over_budget(self, nbytes: int) -> bool:
        busy = self._bytes_in_flight > 0  # one part is always allowed, however large
        return busy and self._bytes_in_flight + nbytes > self.options.max_bytes_in_flight

    def _release_durable(self) -> None:
        """Once the journal's group commit is flushed, its objects leave the byte budget."""
        if self._unflushed_bytes and not self.journal.in_batch:
            self._bytes_in_flight -= self._unflushed_bytes
            self._unflushed_bytes = 0

    def _task(self, job: ObjectJob, part: PartSpec) -> PartTask:
        row = job.row
        return PartTask(
            source=job.source,
            target=job.target,
            source_key=job.plan.source_key,
            target_key=job.plan.target_key,
            etag=job.plan.etag,
            part=part,
            encrypt=job.plan.encrypt,
            key=job.key,
            header=(row.header or b"") + (row.nonce or b""),
            nonce=row.nonce or b"",
            resume_token=row.resume_token,
            metadata=object_metadata(job.plan),
            recipients=self._recipients if job.key is None else (),
        )

    def _submit(self, job: ObjectJob, part: PartSpec) -> None:
        row = job.row
        used = 0
        if row.id != UNJOURNALED:
            used = self.journal.attempts(row.id, row.generation, part.number)
        left = max(1, self.options.max_attempts - used)
        future = self.runner.submit(run_part_with_retries, self._task(job, part), left)
        self._track(future, _Flight([(job, part)], batch=False))

    def _submit_batch(self) -> None:
        """Send the open batch of small objects as one task (a batch of one goes alone)."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if len(batch) == 1:
            self._submit(*batch[0])
            return
        if batch:
            tasks = tuple(self._task(job, part) for job, part in batch)
            future = self.runner.submit(run_objects, tasks, self.options.max_attempts)
            self._track(future, _Flight(batch, batch=True))

    def _track(self, future: Future[Any], flight: _Flight) -> None:
        self._futures[future] = flight
        for job, part in flight.entries:
            self._bytes_in_flight += part.cipher_length
            job.in_flight += 1

    def _settle_some(self) -> None:
        waiting = [*self._futures, *self._commits]
        done, _ = wait(waiting, timeout=GROUP_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            job = self._commits.pop(future, None)
            if job is not None:
                self._committed(job, future)
                continue
            flight = self._futures.pop(future)
            for job, part in flight.entries:
                self._bytes_in_flight -= part.cipher_length
                job.in_flight -= 1
            self._settle(flight, future)
        self.journal.flush_if_due()
        self._release_durable()
        self._summary()

    def _summary(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._summary_at >= SUMMARY_SECONDS:
            self._summary_at = now
            s = self.stats
            log.info("copy.progress", objects=s.objects_committed, parts=s.parts_sent,
                     bytes=s.bytes_sent, bytes_in_flight=self._bytes_in_flight)  # fmt: skip

    def _settle(self, flight: _Flight, future: Future[Any]) -> None:
        """Record what a task returned: one part's result, or one per object of a batch
        (a runner's own failure fails every object the task carried)."""
        exc = future.exception()
        if exc is not None:
            outcomes: list[ObjectOutcome] = [exc] * len(flight.entries)  # type: ignore[list-item]
        elif flight.batch:
            outcomes = future.result()
        else:
            outcomes = [future.result()]
        for (job, part), outcome in zip(flight.entries, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if job.row.generation >= 0:  # else: object already restarted, stale result
                    self._on_failure(job, part, outcome)
                continue
            self._record(job, *outcome)
        self._write_committed()

    def _write_committed(self) -> None:
        """Write the commit rows of the single-request objects settled since the last call,
        in one statement; until the group commit is flushed, their bytes still count as in
        flight (a crash before the flush sends them again)."""
        rows, self._settled_rows = self._settled_rows, []
        if not rows:
            return
        self.journal.record_committed(rows)
        if self.journal.in_batch:
            nbytes = sum(r.target_size for r in rows)
            self._unflushed_bytes += nbytes
            self._bytes_in_flight += nbytes

    def _record(self, job: ObjectJob, result: PartResult, attempts: int) -> None:
        row = job.row
        if attempts > 1 and row.id != UNJOURNALED:
            self.journal.add_attempt(row.id, row.generation, result.number, "retried", attempts - 1)
        part = PartRow(
            result.number,
            result.size,
            result.cipher_size,
            result.plain_sha256,
            result.cipher_sha256,
            result.etag,
        )
        if row.resume_token is not None:
            self.journal.record_part(row.id, part)
        job.done[result.number] = part
        self.stats.parts_sent += 1
        self.stats.bytes_sent += result.size
        self.progress.advance(result.size)
        if job.complete:
            self._finish_object(job)

    def _on_failure(self, job: ObjectJob, part: PartSpec, failure: BaseException) -> None:
        row = job.row
        # A runner's own failure (a worker lost for good) has spent one attempt.
        exc, spent = (
            (failure.error, failure.attempts) if isinstance(failure, PartFailed) else (failure, 1)
        )
        if isinstance(exc, PreconditionFailed):
            self._restart_object(job)
            return
        if row.id != UNJOURNALED:
            self.journal.add_attempt(row.id, row.generation, part.number, str(exc), spent)
        log.error(
            "part.failed", key=job.plan.target_key, part=part.number, error=str(exc), attempts=spent
        )
        if self._failure is None:
            self._failure = exc

    def _restart_object(self, job: ObjectJob) -> None:
        """The source changed under us: drop this generation and copy the new version with a
        fresh file key and nonce (a nonce is never reused)."""
        plan = job.plan
        log.warning("object.source_changed", key=plan.source_key, dataset=plan.dataset)
        self.stats.restarted.append(plan.source_key)
        self._abort_job(job)
        src = connector(job.source)
        fresh = self._retry(src, lambda: src.stat(plan.source_key))
        from bascule.age.sizes import ciphertext_size as csize
        from bascule.age.sizes import header_length

        hlen = header_length(len(self.recipients)) if plan.encrypt else 0
        size_on_target = csize(fresh.size, hlen) if plan.encrypt else fresh.size
        new_plan = replace(
            plan,
            size=fresh.size,
            etag=fresh.etag,
            action="changed",
            target_size=size_on_target,
            parts=plan_parts(fresh.size, plan.part_size, plan.encrypt, hlen),
        )
        self.progress.add_total(0, fresh.size - plan.size)
        new_job = self._start_object(new_plan, job.source, job.target)
        self._adopt(new_job)

    def _adopt(self, job: ObjectJob) -> None:
        if job.complete or not job.pending:
            self._finish_object(job)
            return
        self._ready.appendleft(job)

    def _abort_job(self, job: ObjectJob) -> None:
        job.pending.clear()
        tgt = connector(job.target)
        if job.row.resume_token and isinstance(tgt, PartWriterOpener):
            token = job.row.resume_token
            self._retry(tgt, lambda: tgt.abort_upload(job.plan.target_key, token))
            self.uploads.closed(token)
        if job.row.id != UNJOURNALED:
            self.journal.drop_object(job.row.id)
        job.row = job.row._replace(generation=-1)

    def _finish_object(self, job: ObjectJob) -> None:
        """Every part is written: commit (a multipart upload, on a commit thread, recorded
        when it returns; see `_committed`), then record the object."""
        if job.row.resume_token is None:
            parts = [job.done[n] for n in sorted(job.done)]
            self._record_object(job, parts[-1].etag if parts else "")
            return
        if self._committer is None:
            threads = max(1, min(COMMIT_THREADS, self.options.concurrency))
            self._committer = ThreadPoolExecutor(threads, thread_name_prefix="commit")
        self._commits[self._committer.submit(self._commit_upload, job)] = job

    def _commit_upload(self, job: ObjectJob) -> str:
        """Commit `job`'s upload and stat the result (no journal: this runs on a commit
        thread); the target's ETag. VerificationError when the size is not the plan's."""
        tgt = connector(job.target)
        assert isinstance(tgt, PartWriterOpener) and job.row.resume_token is not None
        token = job.row.resume_token
        parts = [job.done[n] for n in sorted(job.done)]
        receipts = [PartReceipt(p.number, p.cipher_size, p.etag, p.cipher_sha256) for p in parts]
        # An upload already gone was committed (see _committed_behind_our_back): the stat
        # below decides.
        with contextlib.suppress(ObjectNotFound):
            # Azure applies metadata at commit: give it again.
            writer = tgt.open_writer(
                job.plan.target_key, object_metadata(job.plan), token, check=False
            )
            self._retry(tgt, lambda: writer.commit(receipts))
        # Layer 2 of integrity: what the target now reports, not what commit answered.
        info = self._retry(tgt, lambda: tgt.stat(job.plan.target_key))
        self._check_size(job, info.size)
        return info.etag

    def _committed(self, job: ObjectJob, future: Future[str]) -> None:
        exc = future.exception()
        if exc is None:
            self._record_object(job, future.result())
            return
        log.error("object.commit_failed", key=job.plan.target_key, error=str(exc))
        if self._failure is None:
            self._failure = exc

    def _record_object(self, job: ObjectJob, etag: str) -> None:
        row = job.row
        parts = [job.done[n] for n in sorted(job.done)]
        plain = composite([p.plain_sha256 for p in parts])
        cipher = composite([p.cipher_sha256 for p in parts])
        if row.id == UNJOURNALED:  # written by `_write_committed`, with the others settled
            committed = CommittedRow(
                row.dataset, row.source_key, row.target_key, row.source_etag, row.source_size,
                row.target_size, int(row.encrypt), row.part_size, row.parts, row.generation,
                plain, cipher, etag, self.run_id,
            )  # fmt: skip
            self._settled_rows.append(committed)
        else:
            self.journal.commit_object(row.id, plain, cipher, etag, self.run_id)
            if row.resume_token is not None:
                self.uploads.closed(row.resume_token)
        self.stats.objects_committed += 1
        self.progress.object_done(job.plan.target_key)
        if self._debug:  # asked once per run: a filtered structlog call still costs ~30 us
            log.debug(
                "object.committed", key=job.plan.target_key, bytes=job.plan.size, parts=len(parts)
            )

    def _check_size(self, job: ObjectJob, size: int) -> None:
        if size != job.plan.target_size:
            raise VerificationError(
                f"size mismatch after commit of {job.target.name}/{job.plan.target_key}: target "
                f"reports {size} bytes, {job.plan.target_size} expected; run `bascule migrate` "
                "again to copy it anew"
            )

    def _drain(self) -> None:
        """Wait for in-flight parts and commits, and record what finished (a stop loses
        nothing done)."""
        while self._futures or self._commits:
            self._settle_some()


@dataclass(frozen=True)
class _Flight:
    """What one submitted task carries: one part, or (`batch`) one part per small object."""

    entries: list[tuple[ObjectJob, PartSpec]]
    batch: bool


def batch_size(objects_hint: int, concurrency: int) -> int:
    """Small objects per `run_objects` task: up to BATCH_OBJECTS, fewer when the run holds
    few objects, so that each of the `concurrency` workers still gets several batches."""
    if objects_hint <= 0:
        return BATCH_OBJECTS
    return max(1, min(BATCH_OBJECTS, objects_hint // (concurrency * 4)))
