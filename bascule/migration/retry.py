"""When to retry: one tenacity policy for every storage call bascule retries.

Layers (STYLE.md section 7): a connector decides *whether* an error is worth retrying
(`Connector.should_retry`); this module decides *when* (capped exponential backoff with
full jitter, honouring a service's Retry-After via `Throttled.retry_after_s`); the
coordinator owns the attempt budget and the journal keeps it across restarts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from bascule.errors import Throttled

T = TypeVar("T")
BASE_S = 0.5
CAP_S = 30.0


class Clock(Protocol):
    def sleep(self, seconds: float) -> None: ...


class backoff_wait(wait_base):
    """Full-jitter exponential backoff (AWS architecture blog), at least Retry-After."""

    def __init__(
        self, base_s: float = BASE_S, cap_s: float = CAP_S, rng: random.Random | None = None
    ):
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry_state.attempt_number - 1))
        delay = self.rng.uniform(0, ceiling)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, Throttled) and exc.retry_after_s is not None:
            delay = max(delay, min(exc.retry_after_s, self.cap_s * 4))
        return delay


def call_with_retries(
    fn: Callable[[], T],
    should_retry: Callable[[BaseException], bool],
    max_attempts: int,
    *,
    sleep: Callable[[float], None] | None = None,
    wait: wait_base | None = None,
) -> tuple[T, int]:
    """Call `fn` until it succeeds, a non-retryable error occurs, or `max_attempts` are
    spent (then the last error propagates). Returns the result and the attempts taken."""
    attempts = 0

    def count(_: RetryCallState) -> None:
        nonlocal attempts
        attempts += 1

    retrying = Retrying(
        retry=retry_if_exception(should_retry),
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=wait or backoff_wait(),
        before=count,
        reraise=True,
        sleep=sleep or time.sleep,
    )
    return retrying(fn), attempts
