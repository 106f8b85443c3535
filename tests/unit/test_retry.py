"""The retry policy's contract with its callers: attempt reporting, the journal's budget,
the injected clock, and the connectors' own `should_retry` deciding."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bascule.connectors.local import LocalConnector
from bascule.connectors.memory import MemoryConnector
from bascule.errors import AccessDenied, ObjectNotFound, Throttled, TransientStorageError
from bascule.migration.retry import (
    RetryEvent,
    backoff_wait,
    call_with_retries,
    retrying,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def retryable(exc: BaseException) -> bool:
    return MemoryConnector().should_retry(exc)


def test_on_retry_reports_attempt_i_of_n_with_the_delay() -> None:
    clock = FakeClock()
    events: list[RetryEvent] = []
    fn = Flaky([TransientStorageError("reset"), Throttled("slow", retry_after_s=2.5)])
    result, attempts = call_with_retries(fn, retryable, 4, clock=clock, on_retry=events.append)
    assert (result, attempts) == ("ok", 3)
    assert [(e.attempt, e.max_attempts) for e in events] == [(1, 4), (2, 4)]
    assert [e.delay_s for e in events] == clock.sleeps
    assert events[1].delay_s >= 2.5
    assert events[0].describe().startswith("attempt 1/4 failed (TransientStorageError: reset)")
    assert clock.now() == sum(clock.sleeps)


def test_attempts_used_by_an_earlier_run_count_against_the_budget() -> None:
    clock = FakeClock()
    events: list[RetryEvent] = []
    fn = Flaky([TransientStorageError(f"e{i}") for i in range(5)])
    with pytest.raises(TransientStorageError, match="e1"):
        call_with_retries(fn, retryable, 5, attempts_used=3, clock=clock, on_retry=events.append)
    assert fn.calls == 2
    assert [e.attempt for e in events] == [4]


def test_an_exhausted_budget_still_makes_one_attempt() -> None:
    fn = Flaky([])
    assert call_with_retries(fn, retryable, 3, attempts_used=7, clock=FakeClock()) == ("ok", 1)


def test_retry_after_longer_than_the_cap_is_bounded() -> None:
    clock = FakeClock()
    wait = backoff_wait(base_s=0.1, cap_s=1.0, rng=random.Random(1))
    fn = Flaky([Throttled("slow", retry_after_s=3600.0)])
    call_with_retries(fn, retryable, 2, clock=clock, wait=wait)
    assert clock.sleeps == [4.0]  # four times the cap, not an hour


def test_retrying_as_a_loop_with_the_connectors_decision(tmp_path: Path) -> None:
    connector = LocalConnector(tmp_path)
    clock = FakeClock()
    calls = 0
    with pytest.raises(ObjectNotFound):
        for attempt in retrying(connector.should_retry, 5, clock=clock):
            with attempt:
                calls += 1
                connector.stat("missing.bin")
    assert calls == 1  # a missing object is permanent: no retry, no sleep
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransientStorageError("reset"), True),
        (Throttled("slow"), True),
        (AccessDenied("no"), False),
        (ObjectNotFound("gone"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_what_the_connector_calls_retryable_is_retried(
    error: BaseException, retried: bool
) -> None:
    fn = Flaky([error])
    if retried:
        assert call_with_retries(fn, retryable, 3, clock=FakeClock())[1] == 2
    else:
        with pytest.raises(type(error)):
            call_with_retries(fn, retryable, 3, clock=FakeClock())
        assert fn.calls == 1
