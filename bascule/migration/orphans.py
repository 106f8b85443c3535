"""Orphaned uploads: the ones this journal opened and no object holds in progress any more
(a crash between opening an upload and journaling its object, or a restart), aborted at the
end of a run. Never anything else: see `abort_orphans`."""

from __future__ import annotations

from bascule.connectors.base import PartWriterOpener
from bascule.endpoints import EndpointRef, connector
from bascule.migration.journal import Journal, UploadRow, Uploads

# The target's clock may be this far off the local one (see `_unanswered`).
CLOCK_SKEW_S = 30.0


def abort_orphans(journal: Journal, dataset: str, target: EndpointRef, since: float) -> int:
    """Abort the uploads this journal opened for `dataset` and no object holds in progress
    any more (a crash between opening an upload and journaling its object, or a restart).

    Never anything else: an upload is aborted by the token the journal recorded, or, when
    a crash came before the open request answered, see `_unanswered`. `since`: when the
    current run started."""
    tgt = connector(target)
    if not isinstance(tgt, PartWriterOpener):
        return 0
    uploads = Uploads(journal)
    live = {r.resume_token for r in journal.objects(dataset, "in_progress") if r.resume_token}
    aborted = 0
    for row in uploads.still_open(dataset):
        if row.resume_token in live:
            continue
        tokens = [row.resume_token] if row.resume_token else _unanswered(tgt, uploads, row, since)
        for token in tokens:
            tgt.abort_upload(row.target_key, token)
            aborted += 1
        uploads.close_row(row.id)
    return aborted


def _unanswered(tgt: PartWriterOpener, uploads: Uploads, row: UploadRow, since: float) -> list[str]:
    """The upload an open request created before a crash lost its answer: an unfinished
    upload of exactly that key that the target did not list right before the request, that
    no row of this journal names, and that (by the target's clock) began before the current
    run. Targets that report no start time (Azure: its tokens are journaled before any
    block is staged) never get here with anything to abort."""
    known = uploads.tokens(row.dataset) | set(row.present)
    return [
        u.resume_token
        for u in tgt.list_uploads(row.target_key)
        if u.key == row.target_key and u.resume_token not in known and u.initiated is not None
        and u.initiated.timestamp() <= since + CLOCK_SKEW_S
    ]  # fmt: skip
