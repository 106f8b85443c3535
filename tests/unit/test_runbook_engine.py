"""The runbook engine called directly, on local folders: where a rehearsal writes (never
the production routing record or target prefix), when `execute` is allowed, the rollback
section after a failure past the switch, and resuming an interrupted execute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bascule.config import Config, load_config
from bascule.endpoints import clear_cache, connector
from bascule.errors import UsageError
from bascule.migration.service import open_journal, target_ref
from bascule.runbook import engine
from bascule.runbook.context import FAILED, PASSED, SKIPPED, RunOptions, StepResult
from bascule.runbook.schema import Runbook, Step, load_runbook

SOURCE = {"in/a.csv": b"id,n\n1,2\n", "in/b.jsonl": b'{"id": 1}\n', "in/sub/c.bin": b"\x00" * 999}
COPY_AND_VERIFY: list[dict[str, Any]] = [
    {"name": "copy", "kind": "copy"},
    {"name": "verify", "kind": "verify", "level": "full", "rows": True},
]
SWITCH: list[dict[str, Any]] = [
    {"name": "freeze", "kind": "freeze"},
    {"name": "gate", "kind": "gate", "conditions": ["no_verification_findings",
                                                    "no_source_drift"]},
    {"name": "switch", "kind": "switch", "to": "target"},
    {"name": "smoke", "kind": "smoke", "sample": 2},
]  # fmt: skip
BACK: list[dict[str, Any]] = [
    {"name": "back", "kind": "switch", "to": "source"},
    {"name": "smoke back", "kind": "smoke", "sample": 1},
]
OPTIONS = RunOptions(who="tester")


class Site:
    """A local source and target folder, a config on them, and a production routing record."""

    def __init__(self, tmp: Path) -> None:
        clear_cache()
        self.tmp = tmp
        self.source = tmp / "src" / "c"
        for key, body in SOURCE.items():
            (self.source / key).parent.mkdir(parents=True, exist_ok=True)
            (self.source / key).write_bytes(body)
        (tmp / "dst" / "b").mkdir(parents=True)
        data = {
            "project": "engine",
            "journal": "state/journal.db",
            "endpoints": {"azure-fc": {"kind": "local", "path": str(tmp / "src")},
                          "ovh-gra": {"kind": "local", "path": str(tmp / "dst")}},
            "switchover": {"routing": {"path": "routing.json"}},
            "datasets": [{"name": "ds", "encrypt": False,
                          "source": {"endpoint": "azure-fc", "container": "c", "prefix": "in/"},
                          "target": {"endpoint": "ovh-gra", "bucket": "b", "prefix": "out/"}}],
        }  # fmt: skip
        (tmp / "bascule.yaml").write_text(yaml.safe_dump(data))
        self.cfg: Config = load_config(tmp / "bascule.yaml")
        self.routing = tmp / "routing.json"
        self.routing.write_text('{"active": "source", "site": "azure-fc"}\n')

    def runbook(
        self, steps: list[dict[str, Any]], rollback: Any = None, name: str = "rb"
    ) -> Runbook:
        doc: dict[str, Any] = {"runbook": name, "phases": [{"name": "cutover", "steps": steps}]}
        if rollback is not None:
            doc["rollback"] = rollback
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return load_runbook(path, [d.name for d in self.cfg.datasets])

    def active(self) -> str:
        return str(json.loads(self.routing.read_text())["active"])

    def target_files(self) -> list[str]:
        """Every key in the target bucket, through the connector."""
        ds = self.cfg.datasets[0]
        return sorted(o.key for o in connector(target_ref(self.cfg, ds)).list(""))

    def fail(self, name: str, modes: list[str]) -> dict[str, Any]:
        return {"name": name, "kind": "shell", "command": "exit 3", "modes": modes}


@pytest.fixture()
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def _steps(out: engine.RunbookOutcome) -> list[tuple[str, str, str]]:
    return [(r.phase, r.step.name, r.outcome) for r in out.results]


def test_a_rehearsal_never_touches_the_production_pointer_or_target(site: Site) -> None:
    book = site.runbook([*COPY_AND_VERIFY, *SWITCH], BACK)
    before = site.routing.read_bytes()
    out = engine.rehearse(site.cfg, book, RunOptions(who="tester", keep=True))
    assert out.ok, _steps(out)
    assert _steps(out) == [("cutover", s["name"], PASSED) for s in [*COPY_AND_VERIFY, *SWITCH]] + [
        ("rollback", "back", PASSED), ("rollback", "smoke back", PASSED),
    ]  # fmt: skip
    assert site.routing.read_bytes() == before
    assert out.rehearsal_id is not None and out.rehearsal_id.startswith("r20")  # time + random
    copy = json.loads(Path(out.routing_where).read_text())
    assert Path(out.routing_where) != site.routing
    assert (copy["active"], copy["mode"]) == ("source", "rehearse")  # rolled back, in its copy
    prefix = f"rehearsal/{out.rehearsal_id}/out/"
    assert site.target_files() == sorted(prefix + k[len("in/") :] for k in SOURCE)


def test_a_rehearsal_leaves_no_data_behind_unless_kept(site: Site) -> None:
    out = engine.rehearse(site.cfg, site.runbook(COPY_AND_VERIFY), OPTIONS)
    assert out.ok, _steps(out)
    assert site.target_files() == []
    assert not Path(out.routing_where).parent.exists()  # the rehearsal's journal folder


def test_execute_needs_a_passing_rehearsal_of_this_exact_runbook(site: Site) -> None:
    steps = [*COPY_AND_VERIFY, *SWITCH]
    book = site.runbook(steps, BACK)
    with pytest.raises(UsageError, match="no passing rehearsal of this runbook"):
        engine.execute(site.cfg, book, OPTIONS)
    assert engine.rehearse(site.cfg, book, OPTIONS).ok
    edited = site.runbook([*steps, {"name": "note", "kind": "shell", "command": "true"}], BACK)
    with pytest.raises(UsageError, match="no passing rehearsal"):
        engine.precheck_execute(site.cfg, edited, None)
    engine.precheck_execute(site.cfg, book, None)  # the rehearsed content is allowed
    out = engine.execute(site.cfg, book, OPTIONS)
    assert out.ok and site.active() == "target"
    assert site.target_files() == sorted("out/" + k[len("in/") :] for k in SOURCE)


def test_a_failed_rehearsal_does_not_allow_execute(site: Site) -> None:
    book = site.runbook([*COPY_AND_VERIFY, site.fail("broken", ["rehearse"])], BACK)
    out = engine.rehearse(site.cfg, book, OPTIONS)
    assert out.status == "failed" and out.failed_step is not None
    assert out.failed_step.step.name == "broken"
    assert [p for p, _, _ in _steps(out)] == ["cutover"] * 3  # rollback not rehearsed
    with pytest.raises(UsageError, match="no passing rehearsal"):
        engine.execute(site.cfg, book, OPTIONS)


def test_force_needs_a_reason_and_is_recorded(site: Site) -> None:
    book = site.runbook(COPY_AND_VERIFY)
    with pytest.raises(UsageError, match="--force needs --reason"):
        engine.execute(site.cfg, book, RunOptions(who="tester", force_reason="  "))
    out = engine.execute(site.cfg, book, RunOptions(who="tester", force_reason="hotfix"))
    assert out.ok
    journal = open_journal(site.cfg, create=False)
    assert journal is not None
    try:
        (run,) = journal.runs("execute")
    finally:
        journal.close()
    assert (run.id, run.status, run.detail["forced"], run.runbook_sha256) == (
        out.run_id, "completed", "hotfix", book.sha256,
    )  # fmt: skip


def test_a_failure_after_the_switch_runs_the_rollback_section(site: Site) -> None:
    book = site.runbook([*COPY_AND_VERIFY, *SWITCH, site.fail("post-check", ["execute"])], BACK)
    out = engine.execute(site.cfg, book, RunOptions(who="tester", force_reason="test"))
    assert out.status == "rolled_back"
    assert out.failed_step is not None and out.failed_step.step.name == "post-check"
    assert _steps(out)[-2:] == [("rollback", "back", PASSED), ("rollback", "smoke back", PASSED)]
    assert site.active() == "source"


def test_a_failure_before_the_switch_leaves_production_as_it_was(site: Site) -> None:
    book = site.runbook([site.fail("pre-check", ["execute"]), *SWITCH], BACK)
    before = site.routing.read_bytes()
    out = engine.execute(site.cfg, book, RunOptions(who="tester", force_reason="test"))
    assert out.status == "failed" and _steps(out) == [("cutover", "pre-check", FAILED)]
    assert site.routing.read_bytes() == before


def test_the_gate_stops_a_run_when_the_source_changed_after_the_freeze(site: Site) -> None:
    touch = {"name": "touch", "kind": "shell",
             "command": f"printf changed > {site.source / 'in' / 'a.csv'}"}  # fmt: skip
    book = site.runbook([*COPY_AND_VERIFY, SWITCH[0], touch, *SWITCH[1:]], BACK)
    out = engine.rehearse(site.cfg, book, OPTIONS)
    assert out.status == "failed"
    assert out.failed_step is not None and out.failed_step.step.name == "gate"
    assert out.failed_step.message == (
        "source changed since the freeze: ds: changed in/a.csv (ds: 0 new, 1 changed, 0 deleted)"
    )


def test_an_interrupted_execute_resumes_without_rerunning_passed_steps(site: Site) -> None:
    book = site.runbook([*COPY_AND_VERIFY, *SWITCH], BACK)

    def stop_at_switch(phase: str, step: Step) -> None:
        if step.name == "switch":
            raise KeyboardInterrupt

    first = RunOptions(who="tester", force_reason="test", on_start=stop_at_switch)
    with pytest.raises(KeyboardInterrupt):
        engine.execute(site.cfg, book, first)
    assert site.active() == "source"
    seen: list[StepResult] = []
    again = engine.execute(site.cfg, book, RunOptions(who="tester", on_step=seen.append))
    assert again.ok and again.resumed and site.active() == "target"
    before_switch = [s["name"] for s in [*COPY_AND_VERIFY, *SWITCH[:2]]]
    assert [(r.step.name, r.outcome, r.resumed) for r in seen] == [
        *((name, SKIPPED, True) for name in before_switch),
        ("switch", PASSED, False), ("smoke", PASSED, False),
    ]  # fmt: skip
    journal = open_journal(site.cfg, create=False)
    assert journal is not None
    try:
        runs = journal.runs("execute")
    finally:
        journal.close()
    assert [(r.id, r.status) for r in runs] == [(again.run_id, "completed")]


def test_rollback_needs_a_rollback_section(site: Site) -> None:
    with pytest.raises(UsageError, match="has no rollback section"):
        engine.rollback(site.cfg, site.runbook(COPY_AND_VERIFY), OPTIONS)


def test_rollback_alone_moves_production_back_to_the_source(site: Site) -> None:
    site.routing.write_text('{"active": "target", "site": "ovh-gra"}\n')
    out = engine.rollback(site.cfg, site.runbook(COPY_AND_VERIFY, [BACK[0]]), OPTIONS)
    assert out.ok and _steps(out) == [("rollback", "back", PASSED)]
    assert site.active() == "source"
