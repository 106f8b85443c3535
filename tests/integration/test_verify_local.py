"""`verify` end to end on local folders: a real encrypted migration, then tampering."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from bascule.age.stream import X25519Identity, write_identity_file
from bascule.config import Config, load_config
from bascule.endpoints import clear_cache
from bascule.errors import ConfigError
from bascule.migration import service
from bascule.migration.journal import Facts
from bascule.runners import ThreadRunner
from bascule.verification import verify as verify_module
from bascule.verification.evidence import ObjectRecord, render_report
from bascule.verification.verify import verify

MiB = 1024 * 1024
ENV = "BASCULE_AGE_IDENTITY"
Ts = TypeVarTuple("Ts")
R = TypeVar("R")


def _csv_bytes() -> bytes:
    # quoted newlines and no final newline
    return b'id,note\n1,"two\nlines"\n2,plain\n3,"a ""quote"""'


def _parquet_bytes(rows: int) -> bytes:
    table = pa.table({"id": list(range(rows)), "label": [f"r{i}" for i in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _seed(root: Path) -> dict[str, bytes]:
    objects = {
        "in/empty.bin": b"",
        "in/one.bin": b"x",
        "in/multi.bin": os.urandom(5 * MiB + 70_000),
        "in/table.csv": _csv_bytes(),
        "in/events.jsonl": b'{"a": 1}\n{"a": 2}\n',
        "in/claims.parquet": _parquet_bytes(1234),
    }
    for key, data in objects.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return objects


@pytest.fixture(autouse=True)
def _fresh_connectors() -> None:
    clear_cache()


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Config, Path]:
    identity = X25519Identity.generate()
    key_file = tmp_path / "keys" / "identity.txt"
    key_file.parent.mkdir()
    write_identity_file(key_file, identity, "2026-01-01T00:00:00Z")
    monkeypatch.setenv(ENV, str(key_file))
    src, dst = tmp_path / "src", tmp_path / "dst"
    for name in ("enc", "plain"):
        _seed(src / name)
        (dst / name).mkdir(parents=True)
    data = {
        "project": "verify-test",
        "journal": "state/journal.db",
        "endpoints": {"az": {"kind": "local", "path": str(src)},
                      "ovh": {"kind": "local", "path": str(dst)}},
        "encryption": {"recipients": [str(identity.recipient())], "identity_file_env": ENV},
        "transfer": {"part_size": "5MiB", "concurrency": 2},
        "datasets": [
            {"name": "enc", "source": {"endpoint": "az", "container": "enc", "prefix": "in/"},
             "target": {"endpoint": "ovh", "bucket": "enc", "prefix": "out/"}},
            {"name": "plain", "source": {"endpoint": "az", "container": "plain", "prefix": "in/"},
             "target": {"endpoint": "ovh", "bucket": "plain", "prefix": "out/"},
             "encrypt": False},
        ],
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    service.migrate(cfg)
    return cfg, dst


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_clean_copy_verifies_full_with_rows_and_records_facts(setup: tuple[Config, Path]) -> None:
    cfg, _ = setup
    quick = verify(cfg)
    assert quick.ok, quick.first_findings
    records: list[ObjectRecord] = []
    report = verify(cfg, level="full", rows=True, on_record=records.append)
    assert report.ok, report.first_findings
    assert len(records) == report.objects == report.verified == 12
    rows = {(r.dataset, r.source_key): (r.source_rows, r.target_rows) for r in records}
    expected_csv = sum(1 for _ in csv.reader(io.StringIO(_csv_bytes().decode(), newline=""))) - 1
    for ds in ("enc", "plain"):
        assert rows[(ds, "in/claims.parquet")] == (1234, 1234)
        assert rows[(ds, "in/table.csv")] == (expected_csv, expected_csv)
        assert rows[(ds, "in/events.jsonl")] == (2, 2)
        assert rows[(ds, "in/multi.bin")] == (None, None)
    for record in records:
        assert record.checksums["source_plain_sha256"] == record.checksums["target_plain_sha256"]
        assert record.checksums["journal_plain_sha256"] == record.checksums["target_plain_sha256"]
    document = json.loads(render_report(report.summary, records))
    assert {r["verdict"] for r in document["records"]} == {"verified"}
    assert document["summary"]["ok"] is True
    journal = service.open_journal(cfg, create=False)
    assert journal is not None
    try:
        facts = Facts(journal).verifications(report.run_id)
        runs = journal.runs("verify")
    finally:
        journal.close()
    assert len(facts) == 12 and {f.verdict for f in facts} == {"verified"}
    assert [r.status for r in runs] == ["completed", "completed"]


def test_flipped_byte_in_encrypted_target_is_reported_with_both_checksums(
    setup: tuple[Config, Path],
) -> None:
    cfg, dst = setup
    _flip(dst / "enc" / "out" / "multi.bin", 3 * MiB)
    report = verify(cfg, level="full")
    assert not report.ok
    assert {(f.dataset, f.target_key) for f in report.first_findings} == {("enc", "out/multi.bin")}
    kinds = {f.kind for f in report.first_findings}
    assert "undecryptable" in kinds and "checksum-mismatch" in kinds
    cipher = next(f for f in report.first_findings if f.what.startswith("ciphertext"))
    assert cipher.source_value and cipher.target_value
    assert cipher.source_value != cipher.target_value


def test_flipped_byte_in_plain_target_gives_both_plaintext_composites(
    setup: tuple[Config, Path],
) -> None:
    cfg, dst = setup
    _flip(dst / "plain" / "out" / "table.csv", 5)
    records: list[ObjectRecord] = []
    report = verify(cfg, "plain", level="full", on_record=records.append)
    found = [f for f in report.first_findings if f.what == "plaintext sha256 composite"]
    assert len(found) == 1 and found[0].target_key == "out/table.csv"
    record = next(r for r in records if r.target_key == "out/table.csv")
    assert found[0].source_value == record.checksums["source_plain_sha256"]
    assert found[0].target_value == record.checksums["target_plain_sha256"]
    assert found[0].source_value != found[0].target_value


def test_quick_flags_truncated_deleted_extra_and_changed_source(
    setup: tuple[Config, Path], tmp_path: Path
) -> None:
    cfg, dst = setup
    out = dst / "enc" / "out"
    (out / "one.bin").write_bytes((out / "one.bin").read_bytes()[:-1])
    (out / "events.jsonl").unlink()
    (out / "unrelated.txt").write_bytes(b"hello")
    (tmp_path / "src" / "enc" / "in" / "table.csv").write_bytes(b"a\n1\n")
    report = verify(cfg, "enc")
    got = {(f.kind, f.source_key or f.target_key) for f in report.first_findings}
    assert ("size-mismatch", "in/one.bin") in got
    assert ("missing", "in/events.jsonl") in got
    assert ("extra", "out/unrelated.txt") in got
    assert ("stale", "in/table.csv") in got
    truncated = next(f for f in report.first_findings if f.kind == "size-mismatch")
    assert truncated.target_value == cast_int(truncated.source_value) - 1


def cast_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def test_identity_needed_for_full_and_rows_but_not_quick(
    setup: tuple[Config, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, _ = setup
    monkeypatch.delenv(ENV)
    assert verify(cfg).ok
    for kwargs in ({"level": "full"}, {"rows": True}):
        with pytest.raises(ConfigError, match="needs the age identity"):
            verify(cfg, "enc", **kwargs)
    assert verify(cfg, "plain", level="full", rows=True).ok


def test_sample_is_deterministic_and_said(setup: tuple[Config, Path]) -> None:
    cfg, _ = setup
    kept: list[ObjectRecord] = []
    kept_again: list[ObjectRecord] = []
    first = verify(cfg, sample=50, on_record=kept.append)
    verify(cfg, sample=50, on_record=kept_again.append)
    keys = [(r.dataset, r.source_key) for r in kept]
    assert keys == [(r.dataset, r.source_key) for r in kept_again]
    assert first.sample is not None and first.sample.objects_total == 12
    assert first.sample.objects_in_sample == len(keys) < 12
    # the same relative keys are kept in both datasets: the hash is of the key below the prefix
    assert sorted(str(k) for d, k in keys if d == "enc") == sorted(
        str(k) for d, k in keys if d == "plain"
    )
    assert first.summary["sample"]["percent"] == 50


class NamingRunner(ThreadRunner):
    """A thread runner that records the name of every task function submitted to it."""

    def __init__(self) -> None:
        super().__init__(2)
        self.names: set[str] = set()

    def submit(self, fn: Callable[[*Ts], R], /, *args: *Ts) -> Future[R]:
        self.names.add(getattr(fn, "__name__", repr(fn)))
        return super().submit(fn, *args)


def _records(cfg: Config, **kwargs: Any) -> tuple[list[dict[str, Any]], set[str]]:
    records: list[ObjectRecord] = []
    runner = NamingRunner()
    try:
        verify(cfg, runner=runner, on_record=records.append, **kwargs)
    finally:
        runner.shutdown()
    return [{k: v for k, v in r.to_dict().items() if k != "time"} for r in records], runner.names


@pytest.mark.parametrize(
    "kwargs", [{"level": "full", "rows": True}, {"level": "full"}, {"rows": True}]
)
def test_small_objects_checked_in_batches_give_the_findings_of_one_task_per_check(
    setup: tuple[Config, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kwargs: dict[str, Any],
) -> None:
    """Small objects are read once per side, many per task; the records (findings, values,
    order) are those of one task per part and one per row count, damage included."""
    cfg, dst = setup
    src = tmp_path / "src"
    _flip(dst / "enc" / "out" / "table.csv", 200)  # in the payload: undecryptable
    for side, key in (("enc", "events.jsonl"), ("plain", "claims.parquet")):
        path = dst / side / "out" / key
        path.write_bytes(path.read_bytes()[:-7])  # truncated target
    _flip(dst / "plain" / "out" / "table.csv", 3)
    with (dst / "enc" / "out" / "claims.parquet").open("ab") as grown:
        grown.write(b"appended")  # a longer target: the re-read alone does not see it
    (src / "enc" / "in" / "one.bin").write_bytes(b"yz")  # the source changed since
    (src / "plain" / "in" / "events.jsonl").write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    (src / "enc" / "in" / "broken.csv").write_bytes(b'a,b\n1,"open\n')  # never copied
    (dst / "enc" / "out" / "broken.csv").write_bytes(b"stray")
    batched, names = _records(cfg, **kwargs)
    assert "check_small_objects" in names
    monkeypatch.setattr(verify_module, "SMALL_OBJECT_BYTES", -1)
    alone, names_alone = _records(cfg, **kwargs)
    assert "check_small_objects" not in names_alone
    assert batched == alone
    kinds = {f["kind"] for r in batched for f in r["findings"]}
    assert {"stale", "size-mismatch"} <= kinds
    assert kinds & {"undecryptable", "unreadable", "checksum-mismatch", "rows-mismatch"}


DICTIONARY = Path(__file__).resolve().parents[1] / "data" / "csv" / "snds_dictionary_latin1.csv"


def _with_long_field(size: int) -> bytes:
    """The SNDS dictionary (Latin-1, ';') and one more row whose quoted last field is every
    rule text of the dictionary over and over, `size` bytes or more: line ends, ';' and
    doubled quotes inside."""
    text = DICTIONARY.read_bytes().decode("latin-1")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    rules = "\r\n".join(r[5] for r in rows[1:] if r[5]) + '\r\n"fin" ; ok\r\n'
    sink = io.StringIO(newline="")
    csv.writer(sink, delimiter=";", lineterminator="\r\n").writerow(
        ["IR_BEN_R", "BEN_NOTES", "string", "", "notes", rules * (1 + size // len(rules))]
    )
    return DICTIONARY.read_bytes() + sink.getvalue().encode("latin-1")


@pytest.fixture()
def snds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An encrypted dataset of SNDS-style CSV files (';', Latin-1) declared so, migrated."""
    identity = X25519Identity.generate()
    key_file = tmp_path / "identity.txt"
    write_identity_file(key_file, identity, "2026-01-01T00:00:00Z")
    monkeypatch.setenv(ENV, str(key_file))
    files = {
        "dictionary.csv": DICTIONARY.read_bytes(),
        "notes-200k.csv": _with_long_field(200 * 1024),  # one read per side
        "notes-3m.csv": _with_long_field(3 * MiB),  # ranged reads, in 4 MiB blocks and parts
    }
    for name, content in files.items():
        (tmp_path / "src" / "snds" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "snds" / name).write_bytes(content)
    (tmp_path / "dst" / "hdh").mkdir(parents=True)
    data = {
        "project": "verify-csv",
        "journal": "state/journal.db",
        "endpoints": {"az": {"kind": "local", "path": str(tmp_path / "src")},
                      "ovh": {"kind": "local", "path": str(tmp_path / "dst")}},
        "encryption": {"recipients": [str(identity.recipient())], "identity_file_env": ENV},
        "transfer": {"part_size": "5MiB", "concurrency": 2},
        "datasets": [{"name": "snds", "source": {"endpoint": "az", "container": "snds"},
                      "target": {"endpoint": "ovh", "bucket": "hdh"},
                      "csv": {"delimiter": ";", "encoding": "latin-1"}}],
    }  # fmt: skip
    path = tmp_path / "bascule.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    service.migrate(load_config(path))
    return path


def _expected_rows(data: bytes) -> int:
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        text = io.StringIO(data.decode("latin-1"), newline="")
        return sum(1 for _ in csv.reader(text, delimiter=";", strict=True)) - 1
    finally:
        csv.field_size_limit(limit)


def test_declared_csv_dialect_counts_long_quoted_fields_on_both_sides(snds: Path) -> None:
    records: list[ObjectRecord] = []
    report = verify(load_config(snds), level="full", rows=True, on_record=records.append)
    assert report.ok, report.first_findings
    rows = {r.source_key: (r.source_rows, r.target_rows) for r in records}
    src = snds.parent / "src" / "snds"
    for key in ("dictionary.csv", "notes-200k.csv", "notes-3m.csv"):
        expected = _expected_rows((src / key).read_bytes())
        assert rows[key] == (expected, expected), key
    assert rows["dictionary.csv"] == (67, 67) and rows["notes-3m.csv"] == (68, 68)


def test_a_csv_file_not_in_the_declared_encoding_is_unreadable_on_both_sides(
    snds: Path,
) -> None:
    text = yaml.safe_load(snds.read_text())
    text["datasets"][0]["csv"]["encoding"] = "utf-8"
    snds.write_text(yaml.safe_dump(text, allow_unicode=True))
    report = verify(load_config(snds), rows=True)
    found = {(f.source_key, f.kind, f.what) for f in report.first_findings}
    assert ("dictionary.csv", "unreadable", "rows (csv) on the source") in found
    assert ("dictionary.csv", "unreadable", "rows (csv) on the target") in found
    message = next(f.message for f in report.first_findings if f.source_key == "dictionary.csv")
    assert "is not utf-8 text" in message and "csv.encoding" in message


def test_verify_rows_with_a_csv_dialect_through_the_cli(snds: Path) -> None:
    report_path = snds.parent / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "bascule.cli.app", "verify", "-c", str(snds), "--rows",
         "--report", str(report_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(report_path.read_text(encoding="utf-8"))
    assert {r["source_key"]: r["source_rows"] for r in document["records"]} == {
        "dictionary.csv": 67, "notes-200k.csv": 68, "notes-3m.csv": 68,
    }  # fmt: skip
