"""Which part checksum each multipart upload was opened with, so that a run resumes only the
uploads opened under its own (an S3 endpoint's `part_checksum`, else its provider's preset).

Why: an S3 upload's checksum is fixed when the upload is created. AWS refuses a part that
carries x-amz-checksum-sha256 in an upload created without an algorithm ("Checksum Type
mismatch occurred, expected checksum Type: null", reported in apache/arrow-rs#6793), and a
completion that lists no part checksum for an upload created with one ("The upload was
created using a sha1 checksum. The complete request must include the checksum for each
part", aws/aws-sdk-php#2648). So an unfinished upload resumed under the other checksum (the
endpoint's `part_checksum` changed between runs, or a new version changed the preset) would
fail at its next part or at its completion, on every later run. Such an upload is aborted
and its object sent again, under the run's checksum: at most that object's parts again.

How it is known: the journal's meta row `part_checksums` holds, per S3 endpoint, the run
from which each checksum applied ([run id, checksum] pairs, oldest first, a pair added when
a run starts with another), and each upload row names the run that opened it. An upload
opened before its endpoint's first pair (by a version that kept no such record) is resumed
as before: which checksum it was opened with is not known.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from bascule.config import Config, S3Endpoint
from bascule.connectors.s3.presets import load_quirks
from bascule.migration.journal import Journal

HISTORY_KEY = "part_checksums"
History = dict[str, list[tuple[int, str]]]


def run_checksums(cfg: Config) -> dict[str, str]:
    """Each S3 endpoint's part checksum for a run of `cfg`: `part_checksum`, else the
    provider preset's (as the S3 connector itself chooses)."""
    return {
        name: ep.part_checksum or load_quirks(ep.provider).part_checksum
        for name, ep in cfg.endpoints.items()
        if isinstance(ep, S3Endpoint)
    }


def read_history(journal: Journal) -> History:
    rows = journal.query("SELECT value FROM meta WHERE key=?", (HISTORY_KEY,))
    if not rows:
        return {}
    raw = json.loads(str(rows[0][0]))
    return {
        str(name): [(int(run), str(mode)) for run, mode in pairs] for name, pairs in raw.items()
    }


def record_run(journal: Journal, run_id: int, modes: Mapping[str, str]) -> History:
    """The history with this run's checksums added where they differ from the last ones
    (written before the run opens any upload)."""
    history = read_history(journal)
    changed = False
    for name, mode in modes.items():
        pairs = history.setdefault(name, [])
        if not pairs or pairs[-1][1] != mode:
            pairs.append((run_id, mode))
            changed = True
    if changed:
        with journal.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (HISTORY_KEY, json.dumps(history, sort_keys=True)),
            )
    return history


def checksum_at(pairs: list[tuple[int, str]], run_id: int) -> str | None:
    """The checksum in force during run `run_id`; None before the first pair."""
    found = None
    for since, mode in pairs:
        if since > run_id:
            break
        found = mode
    return found


class ResumeGuard:
    """Answers, for an unfinished upload about to be resumed, whether it was opened under
    another part checksum than this run's."""

    def __init__(self, journal: Journal, history: History, modes: Mapping[str, str]) -> None:
        self._journal = journal
        self._history = history
        self._modes = dict(modes)

    def checksum_now(self, endpoint: str) -> str | None:
        return self._modes.get(endpoint)

    def opened_with(self, endpoint: str, token: str) -> str | None:
        """The checksum the upload with `token` was opened with; None where not known."""
        rows = self._journal.query(
            "SELECT run_id FROM uploads WHERE resume_token=? AND run_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (token,),
        )
        if not rows:
            return None
        return checksum_at(self._history.get(endpoint, []), int(rows[0][0]))

    def stale(self, endpoint: str, token: str) -> str | None:
        """The checksum the upload was opened with, where it is known and not this run's."""
        now = self._modes.get(endpoint)
        if now is None:
            return None
        then = self.opened_with(endpoint, token)
        return then if then is not None and then != now else None


@dataclass(frozen=True)
class StaleUploads:
    """Unfinished uploads on `endpoint` opened under another part checksum than `cfg` now
    gives: the next run aborts them and sends their objects again."""

    endpoint: str
    opened_with: str
    now: str
    count: int

    def notice(self) -> str:
        return (
            f"{self.count} unfinished upload(s) on endpoints.{self.endpoint} were opened with "
            f"part_checksum {self.opened_with}, which is now {self.now}: migrate aborts them "
            "and sends those objects again"
        )


def stale_uploads(cfg: Config, journal: Journal) -> list[StaleUploads]:
    """What the next run of `cfg` would restart for its part checksum (reads only)."""
    modes = run_checksums(cfg)
    guard = ResumeGuard(journal, read_history(journal), modes)
    counts: Counter[tuple[str, str]] = Counter()
    for ds in cfg.datasets:
        name = ds.target.endpoint
        if name not in modes:
            continue
        for row in journal.objects(ds.name, "in_progress"):
            then = guard.stale(name, row.resume_token) if row.resume_token else None
            if then is not None:
                counts[(name, then)] += 1
    return [StaleUploads(n, then, modes[n], c) for (n, then), c in sorted(counts.items())]
