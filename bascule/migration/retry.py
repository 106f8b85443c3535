"""When to retry: one tenacity policy for every storage call bascule retries.

Layers (STYLE.md section 7): a connector decides *whether* an error is worth retrying
(`Connector.should_retry`: throttling, 5xx, resets; never other 4xx); this module decides
*when* (capped exponential backoff with full jitter, at least a service's Retry-After via
`Throttled.retry_after_s`) and reports "attempt i/n" to an `on_retry` callback; the
coordinator owns the attempt budget and the journal keeps it across restarts (pass
`attempts_used`). The SDKs' own retries are off in the connectors (boto3 ``max_attempts=1``,
azure ``retry_total=0``, rclone ``--retries 1 --low-level-retries 1``), so no retry loop is
stacked on another.

The clock is injected (`Clock`), so tests run without sleeping. tenacity is imported on the
first retry only: a call that succeeds at once, as most do, never needs it, and a worker
process starts without it (and without the asyncio and tornado modules it loads).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from bascule.errors import Throttled

if TYPE_CHECKING:
    from tenacity import RetryCallState, Retrying

T = TypeVar("T")
BASE_S = 0.5
CAP_S = 30.0


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class RetryEvent:
    """Given to `on_retry` before each wait: attempt `attempt` of `max_attempts` failed."""

    attempt: int
    max_attempts: int
    delay_s: float
    error: BaseException

    def describe(self) -> str:
        return (
            f"attempt {self.attempt}/{self.max_attempts} failed "
            f"({type(self.error).__name__}: {self.error}); retrying in {self.delay_s:.1f}s"
        )


_RNG = random.Random()  # one per process: seeding a new one per task costs ~0.5 ms


class backoff_wait:
    """Full-jitter exponential backoff (AWS architecture blog), at least Retry-After: a
    tenacity wait (any callable of the retry state)."""

    def __init__(
        self, base_s: float = BASE_S, cap_s: float = CAP_S, rng: random.Random | None = None
    ):
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng = rng or _RNG

    def __call__(self, retry_state: RetryCallState) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry_state.attempt_number - 1))
        delay = self.rng.uniform(0, ceiling)
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, Throttled) and exc.retry_after_s is not None:
            delay = max(delay, min(exc.retry_after_s, self.cap_s * 4))
        return delay


def retrying(
    should_retry: Callable[[BaseException], bool],
    max_attempts: int,
    *,
    attempts_used: int = 0,
    clock: Clock | None = None,
    sleep: Callable[[float], None] | None = None,
    wait: Callable[[RetryCallState], float] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    before: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """The tenacity policy for one storage call.

    `max_attempts` is the whole budget and `attempts_used` what earlier runs already spent
    (from the journal); one attempt is always made. Errors `should_retry` rejects, and the
    last error once the budget is spent, propagate unchanged (never tenacity.RetryError).
    `sleep` (or `clock.sleep`) replaces time.sleep; `on_retry` hears each failed attempt."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    remaining = max(1, max_attempts - attempts_used)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and error is not None:
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            attempt = attempts_used + state.attempt_number
            on_retry(RetryEvent(attempt, max(max_attempts, attempt), delay, error))

    return Retrying(
        retry=retry_if_exception(should_retry),
        stop=stop_after_attempt(remaining),
        wait=wait or backoff_wait(),
        before=before or (lambda _: None),
        before_sleep=before_sleep,
        reraise=True,
        sleep=sleep or (clock or SystemClock()).sleep,
    )


def call_with_retries(
    fn: Callable[[], T],
    should_retry: Callable[[BaseException], bool],
    max_attempts: int,
    *,
    sleep: Callable[[float], None] | None = None,
    wait: Callable[[RetryCallState], float] | None = None,
    clock: Clock | None = None,
    attempts_used: int = 0,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> tuple[T, int]:
    """Call `fn` until it succeeds, a non-retryable error occurs, or the budget is spent
    (then the last error propagates, unchanged). Returns the result and the attempts taken
    here; a caller that needs the count of a failed call counts the calls of `fn`."""
    try:  # the first attempt outside tenacity: most calls succeed, and it costs ~30 us a call
        return fn(), 1
    except Exception as exc:
        if max_attempts - attempts_used <= 1 or not should_retry(exc):
            raise
        first: list[BaseException] = [exc]

    def replayed() -> T:
        """The failed first attempt as tenacity's attempt 1, then `fn` again."""
        if first:
            raise first.pop()
        return fn()

    attempts = 0

    def count(_: RetryCallState) -> None:
        nonlocal attempts
        attempts += 1

    policy = retrying(
        should_retry,
        max_attempts,
        attempts_used=attempts_used,
        clock=clock,
        sleep=sleep,
        wait=wait,
        on_retry=on_retry,
        before=count,
    )
    return policy(replayed), attempts
