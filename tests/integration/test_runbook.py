"""Runbooks on the real servers: Azurite as the Azure source, `rclone serve s3` as the target.

Each test drives the `bascule runbook` CLI in a subprocess, on a small encrypted dataset.
Faults are injected by `shell` steps of the test's own runbook (a Python script that flips a
byte in a target object through the S3 API, or changes the source through the Azure API),
so they happen exactly between two steps of one run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import pytest
import yaml

from bascule.runners import ThreadRunner
from tests.conftest import AzuriteServer, S3Server
from tests.integration.cloud import ENV, CloudSetup

OBJECTS = {
    "snds/dcir/ER_PRS_F_202301.csv": b"id,montant\n" + b"".join(b"%d,7\n" % i for i in range(400)),
    "snds/dcir/ER_PRS_F_202302.jsonl": b'{"id": 1}\n{"id": 2}\n',
    "snds/binaries/scan-0001.dcm": os.urandom(200_000),
    "snds/edge/empty.bin": b"",
}  # fmt: skip
R = TypeVar("R")
Ts = TypeVarTuple("Ts")

# A script the runbooks' shell steps call: `flip KEY` flips the first payload byte of a target
# object through S3, `put KEY` writes one as another tool would; `touch KEY` / `drop KEY` add,
# change or delete a source blob on Azurite.
FAULTS = """
import os, sys
import boto3
from azure.storage.blob import BlobServiceClient
action, key = sys.argv[1], sys.argv[2]
if action in ("flip", "put"):
    s3 = boto3.client("s3", endpoint_url=os.environ["RB_S3_URL"], region_name="us-east-1",
                      aws_access_key_id=os.environ["{id}"],
                      aws_secret_access_key=os.environ["{secret}"])
    bucket = os.environ["RB_BUCKET"]
    if action == "put":
        s3.put_object(Bucket=bucket, Key=key, Body=b"another writer's object")
        sys.exit(0)
    body = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[-20] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body))
else:
    blobs = BlobServiceClient.from_connection_string(os.environ["{azure}"])
    blob = blobs.get_blob_client(os.environ["RB_CONTAINER"], key)
    if action == "drop":
        blob.delete_blob()
    else:
        blob.upload_blob(b"changed after the freeze", overwrite=True)
"""


class Box:
    """One fresh container and bucket, a config on them, and the CLI."""

    def __init__(self, setup: CloudSetup, monkeypatch: pytest.MonkeyPatch) -> None:
        self.setup = setup
        self.tmp = setup.tmp_path
        for key, body in OBJECTS.items():
            setup.upload(key, body)
        data = setup.config_dict()
        data["switchover"] = {"routing": {"path": "routing.json"}, "rehearsal_valid_days": 2}
        self.config = setup.write_config(data)
        self.routing = self.tmp / "routing.json"
        self.journal = self.tmp / "state" / "journal.db"
        script = FAULTS.format(id=ENV["s3_id"], secret=ENV["s3_secret"], azure=ENV["azure"])
        self.faults = self.tmp / "faults.py"
        self.faults.write_text(script)
        monkeypatch.setenv("RB_S3_URL", setup.s3.endpoint_url)
        monkeypatch.setenv("RB_BUCKET", setup.bucket)
        monkeypatch.setenv("RB_CONTAINER", setup.container)

    def fault(self, action: str, key: str) -> str:
        return f"{sys.executable} {self.faults} {action} {key}"

    def runbook(self, name: str, phases: list[dict[str, Any]], rollback: Any = None) -> Path:
        doc: dict[str, Any] = {"runbook": name, "phases": phases}
        if rollback is not None:
            doc["rollback"] = rollback
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bascule.cli.app", "runbook", *args,
             "-c", str(self.config)],
            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def steps(self, command: str) -> list[tuple[str, str]]:
        with sqlite3.connect(self.journal) as db:
            rows = db.execute(
                "SELECT s.step, s.outcome FROM steps s JOIN runs r ON r.id = s.run_id "
                "WHERE r.command = ? AND r.id = (SELECT MAX(id) FROM runs WHERE command = ?) "
                "ORDER BY s.id", (command, command),
            ).fetchall()  # fmt: skip
        return [(str(a), str(b)) for a, b in rows]


@pytest.fixture()
def box(
    tmp_path: Path, azurite: AzuriteServer, rclone_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Box]:
    setup = CloudSetup(tmp_path, azurite, rclone_s3, monkeypatch)
    yield Box(setup, monkeypatch)
    setup.close()


SWITCHOVER = [
    {"name": "cutover", "steps": [
        {"name": "preflight", "kind": "check"},
        {"name": "copy", "kind": "copy", "mode": "full"},
        {"name": "verify", "kind": "verify", "level": "full", "rows": True},
        {"name": "freeze", "kind": "freeze"},
        {"name": "gate", "kind": "gate",
         "conditions": ["no_verification_findings", "no_source_drift", {"within_window": "1h"}]},
        {"name": "approve", "kind": "approve"},
        {"name": "switch", "kind": "switch", "to": "target"},
        {"name": "smoke", "kind": "smoke", "sample": 3},
    ]},
]  # fmt: skip
ROLLBACK = [{"name": "back", "kind": "switch", "to": "source"},
            {"name": "smoke back", "kind": "smoke", "sample": 2}]  # fmt: skip


def _routing(box: Box) -> dict[str, Any]:
    return dict(json.loads(box.routing.read_text()))


def test_rehearse_then_execute_then_rollback(box: Box) -> None:
    book = box.runbook("switchover", SWITCHOVER, ROLLBACK)
    box.routing.write_text('{"active": "source", "site": "azure-fc"}\n')
    production_before = box.routing.read_bytes()

    refused = box.cli("execute", str(book), "--yes", "--approve", "approve")
    assert refused.returncode == 2, refused.stderr
    assert "no passing rehearsal" in refused.stderr

    done = box.cli("rehearse", str(book))
    assert done.returncode == 0, done.stdout + done.stderr
    assert box.routing.read_bytes() == production_before  # production record untouched
    assert box.setup.target_keys("rehearsal/") == []  # rehearsal data removed
    assert box.setup.target_keys("hdh/") == []  # nothing copied to production
    assert [o for _, o in box.steps("rehearse")] == ["passed"] * 10  # 8 steps + 2 rollback

    done = box.cli("execute", str(book), "--yes", "--approve", "approve")
    assert done.returncode == 0, done.stdout + done.stderr
    record = _routing(box)
    assert record["active"] == "target" and record["site"] == "ovh-gra"
    assert record["mode"] == "execute" and record["runbook"] == "switchover"
    assert sorted(box.setup.target_keys("hdh/")) == sorted("hdh/" + k[5:] for k in OBJECTS)
    key = "snds/binaries/scan-0001.dcm"
    assert box.setup.decrypt_target("hdh/binaries/scan-0001.dcm") == OBJECTS[key]

    done = box.cli("rollback", str(book), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    record = _routing(box)
    assert record["active"] == "source" and record["site"] == "azure-fc"
    assert record["mode"] == "rollback"


def test_corruption_after_copy_fails_verify_and_execute_stops_before_switch(box: Box) -> None:
    phases = [{"name": "p", "steps": [
        {"name": "copy", "kind": "copy"},
        {"name": "corrupt", "kind": "shell",
         "command": box.fault("flip", "hdh/binaries/scan-0001.dcm")},
        {"name": "verify", "kind": "verify", "level": "full", "require": "report_only"},
        {"name": "gate", "kind": "gate", "conditions": ["no_verification_findings"]},
        {"name": "switch", "kind": "switch", "to": "target"},
    ]}]  # fmt: skip
    book = box.runbook("corrupt", phases, ROLLBACK)
    done = box.cli("execute", str(book), "--yes", "--force", "--reason", "test of the gate")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "gate" in done.stderr and "finding" in done.stderr
    assert box.steps("execute") == [
        ("copy", "passed"),
        ("corrupt", "passed"),
        ("verify", "passed"),
        ("gate", "failed"),
    ]
    assert not box.routing.exists()  # switch never ran: no routing record written
    with sqlite3.connect(box.journal) as db:
        (reason,) = db.execute("SELECT detail FROM runs WHERE command='execute'").fetchone()
    assert json.loads(reason)["forced"] == "test of the gate"


def test_source_change_after_freeze_fails_the_drift_gate_naming_objects(box: Box) -> None:
    phases = [{"name": "p", "steps": [
        {"name": "copy", "kind": "copy"},
        {"name": "freeze", "kind": "freeze"},
        {"name": "add", "kind": "shell", "command": box.fault("touch", "snds/dcir/new.csv")},
        {"name": "change", "kind": "shell",
         "command": box.fault("touch", "snds/dcir/ER_PRS_F_202302.jsonl")},
        {"name": "delete", "kind": "shell", "command": box.fault("drop", "snds/edge/empty.bin")},
        {"name": "gate", "kind": "gate", "conditions": ["no_source_drift"]},
        {"name": "switch", "kind": "switch", "to": "target"},
    ]}]  # fmt: skip
    book = box.runbook("drift", phases)
    done = box.cli("rehearse", str(book))
    assert done.returncode == 1, done.stdout + done.stderr
    for line in ("new snds/dcir/new.csv", "changed snds/dcir/ER_PRS_F_202302.jsonl",
                 "deleted snds/edge/empty.bin"):  # fmt: skip
        assert line in done.stderr
    assert box.steps("rehearse")[-1] == ("gate", "failed")
    assert box.setup.target_keys("rehearsal/") == []  # cleaned up after a failure too


def test_failure_after_switch_runs_the_rollback_section(box: Box) -> None:
    phases = [{"name": "p", "steps": [
        {"name": "copy", "kind": "copy"},
        {"name": "switch", "kind": "switch", "to": "target"},
        {"name": "broken smoke", "kind": "shell", "command": "exit 3"},
    ]}]  # fmt: skip
    book = box.runbook("after-switch", phases, ROLLBACK)
    done = box.cli("execute", str(book), "--yes", "--force", "--reason", "rollback test")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rolled_back" in done.stderr
    assert _routing(box)["active"] == "source"
    assert [s for s, _ in box.steps("execute")][-2:] == ["back", "smoke back"]


def test_execute_resumes_at_the_step_it_stopped_in(box: Box) -> None:
    marker = box.tmp / "second-attempt"
    script = box.tmp / "crash.py"
    # First attempt: the process dies (SIGKILL of the CLI) in the middle of the step.
    # First attempt: the bascule process is SIGKILLed in the middle of the step.
    script.write_text(
        textwrap.dedent(f"""
        import os, pathlib, signal
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.write_text("x")
            pid = os.getppid()
            cli = b"bascule.cli.app"
            while cli not in pathlib.Path(f"/proc/{{pid}}/cmdline").read_bytes():
                stat = pathlib.Path(f"/proc/{{pid}}/stat").read_text()
                pid = int(stat.rsplit(")", 1)[1].split()[1])
            os.kill(pid, signal.SIGKILL)
    """)
    )
    phases = [{"name": "p", "steps": [
        {"name": "copy", "kind": "copy"},
        {"name": "crashy", "kind": "shell", "command": f"{sys.executable} {script}"},
        {"name": "switch", "kind": "switch", "to": "target"},
    ]}]  # fmt: skip
    book = box.runbook("resume", phases)
    first = box.cli("execute", str(book), "--yes", "--force", "--reason", "resume test")
    assert first.returncode != 0
    second = box.cli("execute", str(book), "--yes")  # no --force: it resumes the same run
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resumed execute run" in second.stdout
    steps = box.steps("execute")
    assert steps.count(("copy", "passed")) == 1  # the copy ran once
    assert _routing(box)["active"] == "target"


class CountingRunner(ThreadRunner):
    """A thread runner that records the name of every function submitted to it."""

    def __init__(self) -> None:
        super().__init__(2)
        self.names: list[str] = []

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        self.names.append(getattr(fn, "__name__", repr(fn)))
        return super().submit(fn, *args)


def test_copy_and_verify_steps_submit_their_tasks_to_the_runner_given(box: Box) -> None:
    from bascule.config import load_config
    from bascule.runbook import engine
    from bascule.runbook.context import RunOptions
    from bascule.runbook.schema import load_runbook

    phases = [{"name": "p", "steps": [
        {"name": "copy", "kind": "copy"},
        {"name": "verify", "kind": "verify", "level": "full"},
    ]}]  # fmt: skip
    cfg = load_config(box.config)
    book = load_runbook(box.runbook("runner", phases), [d.name for d in cfg.datasets])
    runner = CountingRunner()
    try:
        out = engine.rehearse(cfg, book, RunOptions(runner=runner))
    finally:
        runner.shutdown()
    assert out.ok
    assert "run_part_with_retries" in runner.names
    assert {"read_parts", "check_small_objects"} & set(runner.names)  # the verify step's


def test_rehearsal_cleanup_deletes_only_what_the_rehearsal_wrote(box: Box) -> None:
    """Another config's kept rehearsal `r1` (ids used to restart at r1 with a new journal)
    and an object another tool writes inside this rehearsal's own prefix both survive."""
    earlier = "rehearsal/r1/hdh/dcir/ER_PRS_F_202301.csv"
    box.setup.s3_client.put_object(Bucket=box.setup.bucket, Key=earlier, Body=b"kept")
    theirs = "rehearsal/$BASCULE_REHEARSAL_ID/hdh/theirs.txt"
    phases = [{"name": "p", "steps": [
        {"name": "copy", "kind": "copy"},
        {"name": "other tool", "kind": "shell", "command": box.fault("put", theirs)},
    ]}]  # fmt: skip
    done = box.cli("rehearse", str(box.runbook("cleanup", phases)))
    assert done.returncode == 0, done.stdout + done.stderr
    rid = done.stdout.split("rehearsal ", 1)[1].split()[0]
    assert rid != "r1"
    assert f"removed {len(OBJECTS)} rehearsal objects" in done.stdout
    assert box.setup.target_keys("rehearsal/") == [earlier, f"rehearsal/{rid}/hdh/theirs.txt"]
    assert box.setup.target_bytes(earlier) == b"kept"
