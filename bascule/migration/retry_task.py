"""Run one part task under the retry policy, within the attempt budget the journal allows."""

from __future__ import annotations

from bascule.migration.endpoints import connector
from bascule.migration.retry import call_with_retries
from bascule.migration.transfer import PartResult, PartTask, run_part


def run_part_with_retries(task: PartTask, attempts_left: int) -> tuple[PartResult, int]:
    """`run_part` retried on transient errors (the connectors decide which), at most
    `attempts_left` attempts. Returns the result and the attempts it took; the last error
    propagates once the budget is spent."""
    target = connector(task.target)
    source = connector(task.source)

    def should_retry(exc: BaseException) -> bool:
        return source.should_retry(exc) or target.should_retry(exc)

    return call_with_retries(lambda: run_part(task), should_retry, attempts_left)
