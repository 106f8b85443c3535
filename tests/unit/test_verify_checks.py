"""The pure comparisons of `verify`: pairing, sampling, quick/full/rows findings, evidence."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from bascule.age.sizes import ciphertext_size, header_length
from bascule.connectors.base import ObjectInfo
from bascule.verification.checks import (
    Copy,
    Pair,
    PairCount,
    Reread,
    RowsRead,
    full_findings,
    in_sample,
    md5_hex,
    pair_objects,
    quick_findings,
    rows_findings,
    stream_pairs,
)
from bascule.verification.evidence import (
    FIRST_FINDINGS,
    Finding,
    ObjectRecord,
    ReportWriter,
    VerifyReport,
    render_report,
)

HLEN = header_length(1)


def _copy(size: int, encrypt: bool = True, **kw: object) -> Copy:
    target = ciphertext_size(size, HLEN) if encrypt else size
    base: dict[str, object] = dict(
        source_etag="e1", source_size=size, target_size=target, part_size=5 << 20, parts=1,
        committed=True, plain_sha256="p" * 64 + "-1", cipher_sha256="c" * 64 + "-1",
        target_etag="t1",
    )  # fmt: skip
    base.update(kw)
    return Copy(**base)  # type: ignore[arg-type]


def _pair(
    size: int = 100,
    *,
    encrypt: bool = True,
    source: ObjectInfo | None = None,
    target: ObjectInfo | None = None,
    copy: Copy | None = None,
    etag_is_md5: bool = False,
) -> Pair:
    copy = copy or _copy(size, encrypt)
    source = source or ObjectInfo("in/a.csv", size, "e1")
    target = target or ObjectInfo("out/a.csv", copy.target_size, "t1")
    return Pair("ds", "in/a.csv", "out/a.csv", source, target, copy, encrypt, HLEN, etag_is_md5)


def _kinds(findings: list[Finding]) -> list[str]:
    return [f.kind for f in findings]


def test_clean_pair_has_no_quick_finding() -> None:
    assert quick_findings(_pair()) == []


@pytest.mark.parametrize(
    ("change", "kind", "what"),
    [
        ({"target": ObjectInfo("out/a.csv", 5, "t1")}, "size-mismatch", "target size"),
        ({"target": ObjectInfo("out/a.csv", ciphertext_size(100, HLEN), "t2")},
         "checksum-mismatch", "target etag (recorded at commit vs listed now)"),
        ({"source": ObjectInfo("in/a.csv", 100, "e2")}, "stale", "source etag/size"),
        ({"copy": _copy(100, committed=False)}, "stale", "journal"),
    ],
)  # fmt: skip
def test_quick_finding_names_what_differs(change: dict[str, object], kind: str, what: str) -> None:
    found = quick_findings(_pair(**change))  # type: ignore[arg-type]
    assert [(f.kind, f.what) for f in found] == [(kind, what)]


def test_size_finding_carries_both_values() -> None:
    (finding,) = quick_findings(_pair(target=ObjectInfo("out/a.csv", 5, "t1")))
    assert (finding.source_value, finding.target_value) == (ciphertext_size(100, HLEN), 5)
    assert "5 bytes" in finding.message and "bascule migrate" in finding.message


def test_missing_and_extra() -> None:
    pairs, _ = pair_objects(
        "ds", "in/", "out/",
        [ObjectInfo("in/a", 1, "e"), ObjectInfo("in/b", 1, "e")],
        [ObjectInfo("out/a", 1, "x"), ObjectInfo("out/zz", 3, "y")],
        {}, encrypt=False, header_len=0,
    )  # fmt: skip
    found = [f for p in pairs for f in quick_findings(p)]
    assert ("missing", "in/b", None) in {(f.kind, f.source_key, f.target_value) for f in found}
    extra = [f for f in found if f.kind == "extra"]
    assert [(f.target_key, f.source_key, f.target_value) for f in extra] == [("out/zz", None, 3)]


def test_multipart_etag_recomputed_from_part_etags() -> None:
    parts = (hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest())
    good = hashlib.md5(bytes.fromhex(parts[0]) + bytes.fromhex(parts[1])).hexdigest() + "-2"
    copy = _copy(100, parts=2, part_etags=parts, target_etag=good)
    clean = _pair(copy=copy, target=ObjectInfo("out/a.csv", copy.target_size, good))
    assert quick_findings(clean) == []
    bad_parts = (parts[1], parts[0])
    copy = _copy(100, parts=2, part_etags=bad_parts, target_etag=good)
    found = quick_findings(_pair(copy=copy, target=ObjectInfo("out/a.csv", copy.target_size, good)))
    assert [f.what for f in found] == ["s3 multipart etag (from journal parts vs listed)"]


def test_content_md5_compared_only_for_plain_copies() -> None:
    md5 = hashlib.md5(b"hello").digest()
    other = hashlib.md5(b"hullo").hexdigest()
    src = ObjectInfo("in/a.csv", 5, "e1", checksums={"content-md5": base64.b64encode(md5).decode()})
    assert md5_hex(src.checksums["content-md5"]) == md5.hex()
    plain = _pair(5, encrypt=False, source=src,
                  target=ObjectInfo("out/a.csv", 5, other), etag_is_md5=True,
                  copy=_copy(5, False, target_etag=other))  # fmt: skip
    assert [f.what for f in quick_findings(plain)] == ["md5 (source Content-MD5 vs target)"]
    same = _pair(5, encrypt=False, source=src, target=ObjectInfo("out/a.csv", 5, md5.hex()),
                 etag_is_md5=True, copy=_copy(5, False, target_etag=md5.hex()))  # fmt: skip
    assert quick_findings(same) == []
    enc = _pair(5, source=src, etag_is_md5=True)
    assert quick_findings(enc) == []


def test_sample_is_deterministic_and_close_to_the_share() -> None:
    keys = [f"dir/{i:05d}.parquet" for i in range(10_000)]
    kept = [k for k in keys if in_sample(k, 10)]
    assert kept == [k for k in keys if in_sample(k, 10)]
    assert 850 < len(kept) < 1150
    assert all(in_sample(k, 100) for k in keys)
    assert set(kept) <= {k for k in keys if in_sample(k, 20)}


def test_full_findings_compare_three_composites() -> None:
    pair = _pair()
    ok = Reread("p" * 64 + "-1", "p" * 64 + "-1", "c" * 64 + "-1")
    assert full_findings(pair, ok) == []
    bad = Reread("p" * 64 + "-1", "q" * 64 + "-1", "c" * 64 + "-1")
    (finding,) = full_findings(pair, bad)
    assert (finding.kind, finding.source_value, finding.target_value) == (
        "checksum-mismatch", "p" * 64 + "-1", "q" * 64 + "-1",
    )  # fmt: skip
    broken = Reread("p" * 64 + "-1", None, "d" * 64 + "-1", target_error="age chunk 3 failed",
                    target_error_kind="undecryptable")  # fmt: skip
    assert sorted(_kinds(full_findings(pair, broken))) == ["checksum-mismatch", "undecryptable"]


def test_source_read_of_stale_source_is_not_compared() -> None:
    pair = _pair(source=ObjectInfo("in/a.csv", 100, "e2"))
    assert full_findings(pair, Reread("z" * 64 + "-1", "p" * 64 + "-1", "c" * 64 + "-1")) == []


def test_rows_findings() -> None:
    pair = _pair()
    assert rows_findings(pair, RowsRead("csv", 3, 3)) == []
    (mismatch,) = rows_findings(pair, RowsRead("csv", 3, 2))
    assert (mismatch.kind, mismatch.source_value, mismatch.target_value) == ("rows-mismatch", 3, 2)
    both = rows_findings(pair, RowsRead("csv", None, None, "bad quote", "bad quote"))
    assert _kinds(both) == ["unreadable", "unreadable"]


def test_report_json_and_summary() -> None:
    pair = _pair(target=ObjectInfo("out/a.csv", 5, "t1"))
    bad = ObjectRecord("ds", "in/a.csv", "out/a.csv", source_size=100,
                       findings=quick_findings(pair))  # fmt: skip
    good = ObjectRecord("ds", "in/b.csv", "out/b.csv", source_size=7)
    report = VerifyReport("quick", False)
    for record in (bad, good):
        report.add(record)
    assert not report.ok and report.finding_count == len(report.first_findings) == 1
    assert report.datasets["ds"].verified_bytes == 7
    doc = json.loads(render_report(report.summary, [bad, good]))
    assert [r["verdict"] for r in doc["records"]] == ["size-mismatch", "verified"]
    assert doc["summary"]["findings"] == {"size-mismatch": 1}
    assert doc["summary"]["datasets"]["ds"] == {
        "objects": 2, "verified": 1, "findings": {"size-mismatch": 1},
    }  # fmt: skip
    assert doc["records"][0]["bascule_version"] and doc["records"][0]["time"]


def test_the_report_keeps_the_first_findings_and_counts_them_all() -> None:
    pair = _pair(target=ObjectInfo("out/a.csv", 5, "t1"))
    report = VerifyReport("quick", False)
    for i in range(FIRST_FINDINGS + 7):
        report.add(ObjectRecord("ds", f"in/{i}", f"out/{i}", findings=quick_findings(pair)))
    assert report.finding_count == report.objects == FIRST_FINDINGS + 7
    assert len(report.first_findings) == FIRST_FINDINGS
    assert report.summary["datasets"]["ds"]["findings"] == {"size-mismatch": FIRST_FINDINGS + 7}


@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_streamed_report_is_the_document_json_dumps_writes(tmp_path: Path, count: int) -> None:
    """The --report file, written record by record, is byte for byte the document as one
    json.dumps of it (the format the file has always had), with a final newline."""
    pair = _pair(target=ObjectInfo("out/a.csv", 5, "t1"))
    checksums = {"journal_plain_sha256": "p" * 64}
    records = [
        ObjectRecord("ds", f"in/é{i}.csv", f"out/é{i}.csv", 1, 2, 3, "e", "t", checksums, "csv",
                     4, 4, quick_findings(pair) if i % 2 else [])
        for i in range(count)
    ]  # fmt: skip
    report = VerifyReport("full", True)
    path = tmp_path / "out" / "report.json"
    with ReportWriter(path) as writer:
        for record in records:
            report.add(record)
            writer.add(record)
        assert not path.exists()  # nothing at the final path before finish
        writer.finish(report.summary)
    document = {"summary": report.summary, "records": [r.to_dict() for r in records]}
    expected = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    assert path.read_text(encoding="utf-8") == expected
    assert render_report(report.summary, records) + "\n" == expected
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_a_report_left_unfinished_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("earlier report\n")
    with pytest.raises(RuntimeError), ReportWriter(path) as writer:
        writer.add(ObjectRecord("ds", "in/a", "out/a"))
        raise RuntimeError("the run stopped")
    assert path.read_text() == "earlier report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_stream_pairs_merges_in_target_key_order_with_the_journal() -> None:
    sources = [ObjectInfo(f"in/{k}", 1, "e") for k in "acd"]
    targets = [ObjectInfo("out/a", 1, "x"), ObjectInfo("out/b", 3, "y"),
               ObjectInfo("out/d", 1, "z")]  # fmt: skip
    copies = [("out/0", _copy(1, False)), ("out/a", _copy(1, False)),
              ("out/b", _copy(3, False))]  # fmt: skip
    count = PairCount()
    pairs = list(stream_pairs("ds", "in/", "out/", iter(sources), iter(targets), iter(copies),
                              encrypt=False, header_len=0, count=count))  # fmt: skip
    got = [(p.target_key, p.source_key, p.target is not None, p.copy is not None) for p in pairs]
    assert got == [
        ("out/a", "in/a", True, True),
        ("out/b", None, True, True),  # extra, with its journal row
        ("out/c", "in/c", False, False),  # missing
        ("out/d", "in/d", True, False),
    ]  # the journal row of out/0 (on neither side) is no pair
    assert (count.total, count.kept) == (4, 4)
