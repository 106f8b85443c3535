"""The retry policy: backoff grows and is capped, Retry-After is honoured, budget is final."""

from __future__ import annotations

import random

import pytest

from bascule.errors import AccessDenied, Throttled, TransientStorageError
from bascule.migration.retry import backoff_wait, call_with_retries


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientStorageError)


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_retry_after_is_honoured_with_an_injected_sleep() -> None:
    sleeps: list[float] = []
    fn = Flaky([Throttled("slow down", retry_after_s=7.0), TransientStorageError("reset")])
    result, attempts = call_with_retries(fn, _retryable, 5, sleep=sleeps.append)
    assert (result, attempts) == ("ok", 3)
    assert sleeps[0] >= 7.0  # the service's hint wins over a shorter jittered backoff
    assert sleeps[1] <= 1.0  # second attempt: jitter within base * 2


def test_budget_spent_reraises_the_last_error() -> None:
    sleeps: list[float] = []
    fn = Flaky([TransientStorageError(f"boom {i}") for i in range(5)])
    with pytest.raises(TransientStorageError, match="boom 2"):
        call_with_retries(fn, _retryable, 3, sleep=sleeps.append)
    assert fn.calls == 3 and len(sleeps) == 2


def test_permanent_errors_are_not_retried() -> None:
    fn = Flaky([AccessDenied("no")])
    with pytest.raises(AccessDenied):
        call_with_retries(fn, _retryable, 5, sleep=lambda s: None)
    assert fn.calls == 1


def test_backoff_ceiling_grows_exponentially_and_is_capped() -> None:
    wait = backoff_wait(base_s=1.0, cap_s=8.0, rng=random.Random(3))
    sleeps: list[float] = []
    fn = Flaky([TransientStorageError("x") for _ in range(7)])
    call_with_retries(fn, _retryable, 8, sleep=sleeps.append, wait=wait)
    ceilings = [min(8.0, 2.0**i) for i in range(7)]
    assert all(0 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))
    assert max(sleeps) > 2.0  # later attempts do wait longer than the first ceilings
