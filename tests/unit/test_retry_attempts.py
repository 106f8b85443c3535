"""A part that fails for good tells the coordinator how many attempts it spent, as data.

The count goes in the journal (the budget survives restarts), so it must reach the
coordinator from a thread or a Dask worker: it travels in `PartFailed` beside the error,
which comes out unchanged (class, message), never patched with an extra attribute."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import cast

import pytest

from bascule.connectors.memory import MemoryConnector
from bascule.errors import AccessDenied, TransientStorageError
from bascule.migration import retry, tasks
from bascule.migration.tasks import PartFailed, PartResult, PartTask, run_part_with_retries

# Only its endpoints are read, by `connector`, which is replaced below (as is `run_part`).
TASK = cast(PartTask, SimpleNamespace(source=None, target=None))


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Errors `run_part` raises, in order; once they run out it succeeds."""
    errors: list[BaseException] = []

    def run_part(_: PartTask, *, deferred: bool = False) -> PartResult:
        if errors:
            raise errors.pop(0)
        return PartResult(1, 1, 1, "p", "c", "e")

    monkeypatch.setattr(tasks, "run_part", run_part)
    monkeypatch.setattr(tasks, "connector", lambda _: MemoryConnector())
    monkeypatch.setattr(retry.SystemClock, "sleep", lambda self, seconds: None)
    return errors


def test_a_success_counts_its_attempts(failing: list[BaseException]) -> None:
    failing += [TransientStorageError("reset")]
    result, attempts = run_part_with_retries(TASK, 3)
    assert (result.number, attempts) == (1, 2)


def test_a_permanent_error_after_retries_carries_the_attempts_spent(
    failing: list[BaseException],
) -> None:
    denied = AccessDenied("no", connector="memory://x", key="k")
    failing += [TransientStorageError("reset"), TransientStorageError("reset"), denied]
    with pytest.raises(PartFailed) as caught:
        run_part_with_retries(TASK, 5)
    assert caught.value.error is denied
    assert caught.value.attempts == 3
    assert vars(denied) == {"connector": "memory://x", "key": "k"}  # nothing patched on


def test_a_spent_budget_carries_every_attempt(failing: list[BaseException]) -> None:
    failing += [TransientStorageError(f"reset {i}") for i in range(4)]
    with pytest.raises(PartFailed) as caught:
        run_part_with_retries(TASK, 2)
    assert str(caught.value.error) == "reset 1"
    assert caught.value.attempts == 2


def test_part_failed_survives_pickling_to_the_coordinator() -> None:
    sent = PartFailed(AccessDenied("no", connector="s3://b", key="k"), 4)
    received = pickle.loads(pickle.dumps(sent))
    assert type(received.error) is AccessDenied
    assert (str(received.error), received.error.key, received.attempts) == ("no", "k", 4)
