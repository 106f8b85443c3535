"""What a runbook step sees while it runs, and what it returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bascule.config import Config, Dataset
from bascule.migration.journal import Facts, Journal, StepRow
from bascule.migration.progress import ProgressSink
from bascule.runbook.schema import Runbook, Step
from bascule.runners import TaskRunner

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
WARNED = "warned"  # an optional step that failed: recorded, the run goes on


@dataclass(frozen=True)
class RunOptions:
    """How a runbook is run.

    `approvals` names approve steps approved up front (``--approve NAME``); `confirm` asks
    the operator interactively (None: not interactive, an unapproved step fails).
    `force_reason`: execute without a recent passing rehearsal, recorded in the journal.
    `runner`: where copy and verify steps run their tasks (None: a thread pool per step);
    the caller owns it and shuts it down."""

    keep: bool = False
    approvals: frozenset[str] = frozenset()
    force_reason: str | None = None
    confirm: Callable[[str], bool] | None = None
    who: str = ""
    progress: ProgressSink | None = None
    stop: threading.Event | None = None
    on_step: Callable[[StepResult], None] | None = None
    on_start: Callable[[str, Step], None] | None = None
    runner: TaskRunner | None = None


@dataclass(frozen=True)
class StepReport:
    """What a step concluded. `datasets_failed` names the datasets a failure is about."""

    outcome: str
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    datasets_failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepResult:
    phase: str
    step: Step
    outcome: str
    message: str
    seconds: float
    resumed: bool = False


@dataclass
class Context:
    """`cfg` is the configuration steps act on: in a rehearsal, the datasets' targets sit
    under the rehearsal prefix and the journal is the rehearsal's own. Facts go to the main
    journal (`journal`, run `run_id`)."""

    cfg: Config
    main_cfg: Config
    runbook: Runbook
    mode: str  # rehearse | execute | rollback
    journal: Journal
    run_id: int
    rehearsal_id: str | None
    options: RunOptions
    started: float = field(default_factory=time.time)

    @property
    def facts(self) -> Facts:
        return Facts(self.journal)

    def datasets(self, step: Step) -> list[Dataset]:
        names = step.datasets if step.datasets is not None else self.runbook.datasets
        return [self.cfg.dataset(n) for n in names]

    def step_rows(self) -> list[StepRow]:
        """This run's step facts so far (from the journal, so they survive a restart)."""
        return self.facts.steps(self.run_id)
