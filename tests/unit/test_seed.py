"""The sandbox seed: deterministic bytes, SNDS-shaped tables with their quirks, edge objects."""

from __future__ import annotations

import io
import re
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bascule.connectors.base import KiB, MiB
from bascule.sandbox import synth
from bascule.sandbox.seed import (
    SEED_GROUPS,
    SeededObject,
    SeedObject,
    SeedOptions,
    build_objects,
    group_of,
    summarise,
)

SMALL = SeedOptions(seed=7, scale=0.02, part_size=256 * KiB)


@pytest.fixture(scope="module")
def small() -> dict[str, SeedObject]:
    return {o.key: o for o in build_objects(SMALL)}


def test_same_seed_gives_byte_identical_objects(small: dict[str, SeedObject]) -> None:
    again = {o.key: o.md5 for o in build_objects(SMALL)}
    assert again == {k: o.md5 for k, o in small.items()}


def test_another_seed_changes_every_non_empty_object(small: dict[str, SeedObject]) -> None:
    other = {o.key: o for o in build_objects(SeedOptions(seed=8, scale=0.02, part_size=256 * KiB))}
    assert other.keys() == small.keys()
    changed = {k for k in small if small[k].md5 != other[k].md5}
    # Fixed content: the empty object, the nomenclature, the two hand-written edge files.
    fixed = {
        "edge/empty.bin",
        "nomenclatures/IR_DPT_V.csv",
        "edge/résumé été.csv",
        "edge/a/b/c/d/e/f/g/h/file",
    }
    assert changed == small.keys() - fixed


def test_edge_objects_sit_on_the_part_size(small: dict[str, SeedObject]) -> None:
    sizes = {k: len(o.data) for k, o in small.items()}
    assert sizes["edge/empty.bin"] == 0
    assert sizes["edge/one-part.bin"] == SMALL.part_size
    assert sizes["edge/one-part-plus-one.bin"] == SMALL.part_size + 1
    assert "edge/dir with space/x.bin" in sizes
    assert "edge/résumé été.csv" in sizes
    deep = [k for k in sizes if k.count("/") >= 9]
    assert deep == ["edge/a/b/c/d/e/f/g/h/file"]


def test_every_key_belongs_to_one_seed_group(small: dict[str, SeedObject]) -> None:
    written = [SeededObject(k, len(o.data), o.md5) for k, o in small.items()]
    totals = summarise(written)
    assert list(totals) == [g.name for g in SEED_GROUPS]
    assert sum(count for count, _ in totals.values()) == len(small)
    assert all(count > 0 for count, _ in totals.values())
    assert group_of("pmsi/mco/2023/T_MCO23B.csv") == "pmsi-mco-2023"


@pytest.mark.parametrize("name", ["ER_PRS_F", "IR_BEN_R", "T_MCOaaB"])
def test_table_definitions_have_15_to_25_typed_columns(name: str) -> None:
    spec = synth.load_table(name)
    assert 15 <= len(spec.columns) <= 25
    assert all(c.type in synth.ARROW_TYPES and c.description for c in spec.columns)
    assert len({c.name for c in spec.columns}) == len(spec.columns)


def test_parquet_is_typed_as_the_definition(small: dict[str, SeedObject]) -> None:
    spec = synth.load_table("ER_PRS_F")
    table = pq.read_table(io.BytesIO(small["dcir/2023/ER_PRS_F_202302.parquet"].data))
    assert table.schema == spec.arrow_schema()
    assert table.num_rows == SMALL.rows(spec.rows)
    dates = table["EXE_SOI_DTD"].to_pylist()
    assert all(date(2023, 2, 1) <= d <= date(2023, 2, 28) for d in dates)
    assert table["PFS_PRE_NUM"].null_count > 0  # real nulls in Parquet


def test_csv_quirks(small: dict[str, SeedObject]) -> None:
    parquet = pq.read_table(io.BytesIO(small["dcir/2023/ER_PRS_F_202312.parquet"].data))
    text = small["dcir/2023/ER_PRS_F_202312.csv"].data.decode("utf-8")
    lines = text.splitlines()
    header = lines[0].split(";")
    assert header == parquet.column_names
    assert len(lines) - 1 == parquet.num_rows  # same rows in both formats
    rows = [dict(zip(header, line.split(";"), strict=True)) for line in lines[1:]]
    assert any(r["PFS_PRE_NUM"] == "" for r in rows)  # empty string is null
    assert all(re.fullmatch(r"\d+,\d\d", r["PRS_PAI_MNT"]) for r in rows)  # decimal comma
    assert all(re.fullmatch(r"\d\d[A-Z]{3}2023:00:00:00", r["EXE_SOI_DTD"]) for r in rows)
    assert all(len(r["PFS_EXE_NUM"]) == 9 for r in rows)
    assert any(r["PFS_EXE_NUM"].startswith("0") for r in rows)  # leading zeros kept
    assert {r["BEN_ACS_TOP"] for r in rows} <= {"0", "1", ""}


def test_beneficiary_death_date_uses_the_snds_sentinel(small: dict[str, SeedObject]) -> None:
    table = pq.read_table(io.BytesIO(small["beneficiaires/IR_BEN_R.parquet"].data))
    deaths = table["BEN_DCD_DTE"].to_pylist()
    assert table["BEN_DCD_DTE"].null_count == 0
    assert deaths.count(date(1600, 1, 1)) > len(deaths) // 2
    patients = set(table["BEN_NIR_PSA"].to_pylist())
    claims = pq.read_table(io.BytesIO(small["dcir/2023/ER_PRS_F_202301.parquet"].data))
    assert set(claims["BEN_NIR_PSA"].to_pylist()) <= patients  # the tables join


def test_pmsi_keeps_finess_and_corsica_codes_as_text(small: dict[str, SeedObject]) -> None:
    table = pq.read_table(io.BytesIO(small["pmsi/mco/2023/T_MCO23B.parquet"].data))
    assert table.schema.field("ETA_NUM").type == pa.string()
    assert all(len(v) == 9 for v in table["ETA_NUM"].to_pylist())
    pools = synth.build_pools(SMALL.seed, 10)
    assert {"01", "2A", "2B"} <= set(pools.departement2)
    assert {"001", "02A", "02B", "971"} <= set(pools.departement3)
    assert set(table["BDI_DEP"].to_pylist()) <= set(pools.departement2)


def test_nomenclature_is_latin1(small: dict[str, SeedObject]) -> None:
    data = small["nomenclatures/IR_DPT_V.csv"].data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text = data.decode("latin-1")
    assert "02A;Corse-du-Sud\n" in text and "001;Ain\n" in text and "034;Hérault\n" in text


def test_default_scale_is_60_to_120_mb() -> None:
    total = sum(len(o.data) for o in build_objects(SeedOptions()))
    assert 60 * MiB <= total <= 120 * MiB


def test_options_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="scale"):
        SeedOptions(scale=0)
    with pytest.raises(ValueError, match="part size"):
        SeedOptions(part_size=0)
