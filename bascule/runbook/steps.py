"""The step kinds: each takes the run's `Context` and its step, and returns a `StepReport`.

A step reports a failure as ``StepReport(FAILED, message)``; a `BasculeError` it lets
through is turned into one by the engine. Hooks (freeze, switch) run in execute and rollback
modes only: a rehearsal never revokes production writes or moves DNS.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bascule.config import Config, Dataset, identity_path
from bascule.endpoints import connector
from bascule.errors import BasculeError, ConfigError, ConnectorError
from bascule.migration.journal import Journal, StepRow
from bascule.migration.service import migrate, open_journal, source_ref, target_ref
from bascule.runbook.context import FAILED, PASSED, SKIPPED, Context, StepReport
from bascule.runbook.drift import KINDS, drift, take_snapshot
from bascule.runbook.routing import RoutingStore, site_name
from bascule.runbook.schema import (
    ApproveStep,
    CheckStep,
    CopyStep,
    FreezeStep,
    GateCondition,
    GateStep,
    Hook,
    ShellStep,
    SmokeStep,
    Step,
    SwitchStep,
    VerifyStep,
)
from bascule.runbook.smoke import check_target_object, source_digest

_TAIL_CHARS = 400
_KILL_GRACE_S = 5.0  # between SIGTERM and SIGKILL of a timed-out command's process group


def _tail(text: str) -> str:
    from bascule.logging import redact_text

    # Redact the whole output first: a cut through a secret would leave a part no pattern sees.
    return redact_text(text)[-_TAIL_CHARS:]


def run_command(ctx: Context, command: str, timeout_s: float) -> tuple[int, str]:
    """Run `command` in a shell; (exit status, redacted output tail). 124 on timeout, after
    the command and every process it started are gone (see `_kill_group`)."""
    env = dict(os.environ)
    env.update(
        BASCULE_MODE=ctx.mode,
        BASCULE_RUN_ID=str(ctx.run_id),
        BASCULE_REHEARSAL_ID=ctx.rehearsal_id or "",
        BASCULE_CONFIG=str(ctx.main_cfg.source_path),
    )
    # Its own session and process group: on timeout the whole group goes, not only /bin/sh,
    # so no child of the command outlives the step that was reported failed.
    proc = subprocess.Popen(
        command, shell=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=ctx.runbook.path.parent, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return 124, f"timed out after {timeout_s:.0f}s"
    except BaseException:  # Ctrl-C while it runs: the command goes too
        _kill_group(proc)
        raise
    return proc.returncode, _tail(output)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the command's process group, SIGKILL to what is left after a grace period.

    Returns once the output pipe is closed, i.e. once every process of the group that held
    it has exited."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.communicate(timeout=_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.communicate()
    _signal_group(proc.pid, signal.SIGKILL)  # members that closed the pipe but still run


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _hooks(ctx: Context, hooks: tuple[Hook, ...]) -> tuple[list[str], str | None]:
    """Run hooks in execute/rollback mode; (what ran, first failure message or None)."""
    if ctx.mode == "rehearse":
        return [f"not run in a rehearsal: {h.command}" for h in hooks], None
    ran = []
    for hook in hooks:
        status, tail = run_command(ctx, hook.command, hook.timeout_s)
        ran.append(f"{hook.command} -> {status}")
        if status:
            return ran, f"hook at {hook.where} exited {status}: {tail.strip()}"
    return ran, None


# -- check -------------------------------------------------------------------------------


def _probe(cfg: Config, ds: Dataset) -> list[str]:
    problems = []
    for side, ref, prefix in (
        ("source", source_ref(cfg, ds), ds.source.prefix),
        ("target", target_ref(cfg, ds), ds.target.prefix),
    ):
        try:
            next(iter(connector(ref).list(prefix)), None)
        except ConnectorError as exc:
            problems.append(f"{ds.name} {side}: {exc}")
    return problems


def _stacks(step: CheckStep) -> tuple[str, list[str]]:
    """('skipped'|'checked', problems)."""
    assert step.stacks is not None
    if not (step.stacks.project_dir / "Pulumi.yaml").is_file():
        return "skipped", [f"stacks not declared (no Pulumi.yaml in {step.stacks.project_dir})"]
    from bascule.stacks.parity import compare_runs
    from bascule.stacks.policy import check_run
    from bascule.stacks.project import load_stacks, pick_pairs, run_all

    stacks = load_stacks(step.stacks.project_dir)
    runs = run_all(stacks)
    problems = []
    if step.stacks.parity:
        src, dst = pick_pairs(stacks, None, [])
        for d in dst:
            report = compare_runs(runs[src.stack], runs[d.stack])
            if not report.ok:
                problems.append(f"parity gaps {src.stack} -> {d.stack}")
    if step.stacks.policy:
        violations = [v for s in stacks for v in check_run(runs[s.stack])]
        problems += [f"policy {v.stack}/{v.resource}: {v.message}" for v in violations[:5]]
    return "checked", problems


def _needs_identity(ctx: Context) -> bool:
    steps = [s for _, s in ctx.runbook.steps()]
    reads = any(isinstance(s, VerifyStep) and (s.level == "full" or s.rows) for s in steps)
    reads = reads or any(isinstance(s, SmokeStep) for s in steps)
    return reads and any(ds.encrypt for ds in ctx.cfg.datasets)


def check(ctx: Context, step: CheckStep) -> StepReport:
    problems: list[str] = []
    detail: dict[str, Any] = {}
    if step.endpoints:
        for ds in ctx.datasets(step):
            problems += _probe(ctx.cfg, ds)
        detail["endpoints"] = "reachable" if not problems else "unreachable"
    if step.recipients:
        from bascule.age.stream import X25519Recipient, load_identities

        for value in ctx.cfg.encryption.recipients:
            X25519Recipient.parse(value)  # the config loader checked them; cheap to repeat
        path = identity_path(ctx.cfg, required=_needs_identity(ctx), why="this runbook")
        if path is not None:
            load_identities(path)
        detail["recipients"] = len(ctx.cfg.encryption.recipients)
    if step.stacks is not None:
        state, stack_problems = _stacks(step)
        detail["stacks"] = state
        if state == "skipped" and step.optional:
            detail["stacks_note"] = stack_problems[0]
        else:
            problems += stack_problems
    if problems:
        return StepReport(FAILED, "; ".join(problems[:5]), detail)
    note = f"skipped: {detail['stacks_note']}" if "stacks_note" in detail else "all checks passed"
    return StepReport(PASSED, note, detail)


# -- copy, verify --------------------------------------------------------------------------


def copy(ctx: Context, step: CopyStep) -> StepReport:
    per: dict[str, dict[str, Any]] = {}
    total_bytes = total_objects = 0
    started = time.monotonic()
    for ds in ctx.datasets(step):
        try:
            out = migrate(
                ctx.cfg, ds.name, runner=ctx.options.runner, progress=ctx.options.progress,
                stop=ctx.options.stop, command="migrate",
            )  # fmt: skip
        except ConnectorError as exc:
            return StepReport(FAILED, f"{ds.name}: {exc}", {"datasets": per}, (ds.name,))
        unchanged = out.plan.unchanged
        per[ds.name] = {
            "objects": out.stats.objects_committed, "bytes": out.stats.bytes_sent,
            "seconds": round(out.seconds, 3), "unchanged": unchanged,
            "restarted": len(out.stats.restarted),
        }  # fmt: skip
        total_bytes += out.stats.bytes_sent
        total_objects += out.stats.objects_committed
    seconds = time.monotonic() - started
    rate = total_bytes / seconds if seconds > 0 else 0.0
    detail = {"mode": step.mode, "bytes": total_bytes, "objects": total_objects,
              "seconds": round(seconds, 3), "rate_bps": rate, "datasets": per}  # fmt: skip
    return StepReport(PASSED, f"{total_objects} objects, {total_bytes} bytes ({step.mode})", detail)


def verify_step(ctx: Context, step: VerifyStep) -> StepReport:
    from bascule.verification.verify import verify

    per: dict[str, dict[str, Any]] = {}
    first: list[str] = []
    for ds in ctx.datasets(step):
        report = verify(
            ctx.cfg, ds.name, level="full" if step.level == "full" else "quick", rows=step.rows,
            sample=step.sample, runner=ctx.options.runner,
        )  # fmt: skip
        counts = report.datasets.get(ds.name)
        per[ds.name] = {
            "objects": report.objects, "verified": report.verified,
            "findings": report.finding_count, "level": step.level, "rows": step.rows,
            "bytes": counts.verified_bytes if counts else 0, "run_id": report.run_id,
        }  # fmt: skip
        first += [f.message for f in report.first_findings[:3]]
    findings = sum(d["findings"] for d in per.values())
    detail = {"datasets": per, "findings": findings, "first_findings": first[:5]}
    verified = sum(d["verified"] for d in per.values())
    if findings and step.require == "no_findings":
        bad = tuple(n for n, d in per.items() if d["findings"])
        return StepReport(FAILED, f"{findings} finding(s); first: {first[0]}", detail, bad)
    return StepReport(PASSED, f"{verified} objects verified, {findings} finding(s)", detail)


# -- freeze and gate ------------------------------------------------------------------------


def freeze(ctx: Context, step: FreezeStep) -> StepReport:
    started = time.monotonic()
    counts = {
        ds.name: take_snapshot(ctx.journal, ctx.run_id, step.name, ctx.cfg, ds)
        for ds in ctx.datasets(step)
    }
    listed = time.monotonic() - started
    ran, failure = _hooks(ctx, step.hooks)
    count = sum(counts.values())
    detail = {"datasets": list(counts), "objects": count, "per_dataset": counts,
              "snapshot_seconds": round(listed, 3), "hooks": ran, "at": time.time()}  # fmt: skip
    if failure:
        return StepReport(FAILED, failure, detail)
    return StepReport(PASSED, f"source inventory of {count} objects recorded", detail)


def _last(rows: list[StepRow], kind: str) -> StepRow | None:
    found = [r for r in rows if r.kind == kind and r.outcome == PASSED]
    return found[-1] if found else None


def _drift_problems(ctx: Context, rows: list[StepRow]) -> tuple[list[str], dict[str, Any]]:
    """(problems, detail) of the no_source_drift condition."""
    frozen = _last(rows, "freeze")
    if frozen is None:
        return ["no freeze before this gate; add a freeze step"], {}
    found = drift(ctx.journal, ctx.cfg, frozen)
    detail = {d.dataset: {**d.counts, "objects": d.objects, "seconds": round(d.seconds, 3),
                          "named": d.named} for d in found}  # fmt: skip
    drifted = [d for d in found if d.total]
    if not drifted:
        return [], detail
    named = [f"{d.dataset}: {item}" for d in drifted for item in d.named][:10]
    counts = "; ".join(f"{d.dataset}: {d.summary()}" for d in drifted)
    return [f"source changed since the freeze: {', '.join(named)} ({counts})"], detail


def _condition(ctx: Context, cond: GateCondition, rows: list[StepRow]) -> list[str]:
    """Problems with one gate condition ([] when it holds); no_source_drift is apart."""
    if cond.kind == "no_verification_findings":
        verifies = [r for r in rows if r.kind == "verify" and r.outcome != "running"]
        if not verifies:
            return ["no verification ran before this gate; add a verify step"]
        return [
            f"verification '{r.step}' has {r.findings} finding(s)" for r in verifies if r.findings
        ]
    window = cond.window_s or ctx.main_cfg.switchover.freeze_window
    frozen = _last(rows, "freeze")
    since = frozen.started if frozen else ctx.started
    elapsed = time.time() - since
    if elapsed > window:
        return [f"{elapsed:.0f}s elapsed since the freeze, over the {window:.0f}s window"]
    return []


def gate(ctx: Context, step: GateStep) -> StepReport:
    rows = ctx.step_rows()
    problems: list[str] = []
    failed: set[str] = set()
    detail: dict[str, Any] = {"conditions": [c.kind for c in step.conditions]}
    for cond in step.conditions:
        if cond.kind != "no_source_drift":
            problems += _condition(ctx, cond, rows)
            continue
        found, detail["drift"] = _drift_problems(ctx, rows)
        problems += found
        failed |= {name for name, d in detail["drift"].items() if any(d[k] for k in KINDS)}
    detail["problems"] = problems
    if problems:
        return StepReport(FAILED, "; ".join(problems), detail, tuple(sorted(failed)))
    return StepReport(PASSED, "all conditions hold", detail)


# -- switch, smoke, approve, shell -----------------------------------------------------------


def routing_store(ctx: Context) -> RoutingStore:
    return RoutingStore(ctx.main_cfg, ctx.rehearsal_id)


def switch(ctx: Context, step: SwitchStep) -> StepReport:
    store = routing_store(ctx)
    before = store.read()
    record = {
        "active": step.to, "site": site_name(ctx.main_cfg, step.to),
        "switched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runbook": ctx.runbook.name, "runbook_sha256": ctx.runbook.sha256,
        "run_id": ctx.run_id, "mode": ctx.mode, "by": ctx.options.who or getpass.getuser(),
    }  # fmt: skip
    store.write(record)
    ran, failure = _hooks(ctx, step.hooks)
    detail = {"record": record, "previous": before, "where": store.where, "hooks": ran}
    if failure:
        return StepReport(FAILED, failure, detail)
    return StepReport(PASSED, f"routing record at {store.where}: active = {step.to}", detail)


def _sample(ctx: Context, step: SmokeStep) -> list[tuple[Dataset, str]]:
    """`step.sample` objects spread evenly over the sorted keys of the step's datasets."""
    keys = []
    for ds in ctx.datasets(step):
        src = connector(source_ref(ctx.cfg, ds))
        keys += [(ds, o.key) for o in src.list(ds.source.prefix)]
    keys.sort(key=lambda item: (item[0].name, item[1]))
    if len(keys) <= step.sample:
        return keys
    stride = len(keys) / step.sample
    return [keys[int(i * stride)] for i in range(step.sample)]


def _copies_journal(ctx: Context) -> tuple[Journal | None, bool]:
    """(the journal that recorded the copies the steps act on, whether to close it): the
    run's own in execute and rollback, the rehearsal's (read only) in a rehearsal."""
    if ctx.cfg.journal == ctx.main_cfg.journal:
        return ctx.journal, False
    return open_journal(ctx.cfg, create=False), True


def _smoke_objects(
    ctx: Context, step: SmokeStep, active: str
) -> tuple[list[str], set[str], list[str], int]:
    """(problems, datasets failed, objects checked, how many against the journal)."""
    problems: list[str] = []
    failed: set[str] = set()
    checked = []
    against_journal = 0
    journal, close = _copies_journal(ctx) if active == "target" else (None, False)
    try:
        for ds, key in _sample(ctx, step):
            try:
                if active == "target":
                    found, recorded = check_target_object(ctx.cfg, ds, key, journal)
                    against_journal += recorded
                else:
                    found = []
                    source_digest(ctx.cfg, ds, key)
            except (ConnectorError, BasculeError) as exc:
                found = [f"{ds.name}:{key}: {exc}"]
            if found:
                problems += found
                failed.add(ds.name)
            checked.append(f"{ds.name}:{key}")
    finally:
        if close and journal is not None:
            journal.close()
    return problems, failed, checked, against_journal


def smoke(ctx: Context, step: SmokeStep) -> StepReport:
    record = routing_store(ctx).read()
    active = record.get("active", "source") if record else "source"
    problems, failed, checked, against_journal = _smoke_objects(ctx, step, active)
    detail = {"active": active, "objects": checked, "problems": problems,
              "journal_checked": against_journal}  # fmt: skip
    if problems:
        return StepReport(FAILED, "; ".join(problems[:5]), detail, tuple(sorted(failed)))
    how = (
        f"matched the source and, {against_journal} of them, the journal's checksums"
        if active == "target"
        else "read from the source"
    )
    return StepReport(PASSED, f"{len(checked)} objects {how} (active: {active})", detail)


def approve(ctx: Context, step: ApproveStep) -> StepReport:
    who = ctx.options.who or getpass.getuser()
    if ctx.mode == "rehearse":
        return StepReport(PASSED, "rehearsal: approval recorded as rehearsed", {"by": who})
    if step.name in ctx.options.approvals:
        return StepReport(PASSED, f"approved by {who} (--approve)", {"by": who, "how": "flag"})
    confirm = ctx.options.confirm
    if confirm is not None and confirm(f"{step.prompt} [{step.name}]"):
        return StepReport(PASSED, f"approved by {who} (interactive)", {"by": who, "how": "prompt"})
    return StepReport(
        FAILED, f"not approved; pass --approve '{step.name}' or answer yes at the prompt"
    )


def shell(ctx: Context, step: ShellStep) -> StepReport:
    if ctx.mode not in step.modes:
        return StepReport(SKIPPED, f"not run in {ctx.mode} mode (modes: {', '.join(step.modes)})")
    status, tail = run_command(ctx, step.command, step.timeout_s)
    detail = {"exit": status, "output_tail": tail}
    if status:
        return StepReport(FAILED, f"command exited {status}: {tail.strip()[-200:]}", detail)
    return StepReport(PASSED, "command exited 0", detail)


def _dispatch() -> dict[type[Step], Callable[[Context, Any], StepReport]]:
    return {
        CheckStep: check, CopyStep: copy, VerifyStep: verify_step, FreezeStep: freeze,
        GateStep: gate, SwitchStep: switch, SmokeStep: smoke, ApproveStep: approve,
        ShellStep: shell,
    }  # fmt: skip


def run_step(ctx: Context, step: Step) -> StepReport:
    """Run one step. ConfigError and ConnectorError become a failed report; Interrupted and
    KeyboardInterrupt pass through (the run is resumable)."""
    func = _dispatch()[type(step)]
    try:
        return func(ctx, step)
    except (ConfigError, ConnectorError) as exc:
        return StepReport(FAILED, str(exc))
