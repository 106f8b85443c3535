"""Deterministic synthetic SNDS tables, from the definitions in `bascule/sandbox/tables/`.

Every value is drawn from generators seeded by (seed, table, file, column): the same seed
gives the same Arrow table, and the same Parquet and CSV bytes with the same pyarrow. The
file formats (CSV dialect, dates, decimals, nulls) are described in `tables/SOURCE.md`.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from bascule.errors import ConfigError

ARROW_TYPES: Mapping[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "string": pa.string(),
    "date": pa.date32(),
    "yearmonth": pa.string(),
    "year": pa.int32(),
    "boolean": pa.bool_(),
}
CSV_DELIMITER = ";"
_EPOCH = date(1970, 1, 1)
_ALNUM = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    gen: Mapping[str, Any]
    description: str = ""
    length: str = ""
    nulls: float = 0.0
    fill: str | None = None  # the SNDS sentinel written where a value is missing
    note: str = ""


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    product: str
    columns: tuple[ColumnSpec, ...]
    rows: int = 0  # rows per file at scale 1; 0 for tables of fixed rows
    encoding: str = "utf-8"
    fixed_rows: tuple[tuple[str, ...], ...] = ()

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])


@dataclass(frozen=True)
class Pools:
    """Shared code lists, so that tables join (ER_PRS_F patients are IR_BEN_R rows)."""

    beneficiary: tuple[str, ...]
    finess: tuple[str, ...]
    health_professional: tuple[str, ...]
    departement3: tuple[str, ...]
    departement2: tuple[str, ...]


@dataclass(frozen=True)
class FileContext:
    """What one generated file depends on: the seed, its label and, for monthly files, the
    month its dates fall in."""

    seed: int
    label: str
    pools: Pools
    month: tuple[int, int] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


def _column(raw: Mapping[str, Any], table: str) -> ColumnSpec:
    kind = str(raw.get("type", ""))
    if kind not in ARROW_TYPES:
        raise ConfigError(f"table {table}: column {raw.get('name')} has unknown type {kind!r}")
    fill = raw.get("fill")
    return ColumnSpec(
        name=str(raw["name"]),
        type=kind,
        gen=dict(raw.get("gen") or {}),
        description=str(raw.get("description", "")),
        length=str(raw.get("length", "")),
        nulls=float(raw.get("nulls", 0.0)),
        fill=None if fill is None else str(fill),
        note=str(raw.get("note", "")),
    )


def load_table(name: str) -> TableSpec:
    """The definition `tables/<name>.yaml`. Raises ConfigError if missing or malformed."""
    source = resources.files("bascule.sandbox") / "tables" / f"{name}.yaml"
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        rows = raw.get("rows", 0)
        return TableSpec(
            name=str(raw["name"]),
            title=str(raw.get("title", "")),
            product=str(raw.get("product", "")),
            columns=tuple(_column(c, name) for c in raw["columns"]),
            rows=rows if isinstance(rows, int) else 0,
            encoding=str(raw.get("encoding", "utf-8")),
            fixed_rows=tuple(tuple(str(v) for v in row) for row in raw.get("fixed_rows", [])),
        )
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"table definition {name}.yaml in bascule/sandbox/tables is unreadable ({exc}); "
            "reinstall bascule"
        ) from exc


def _derived_seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # Arrow takes a non-negative int64


def _rng(*parts: object) -> random.Random:
    return random.Random(_derived_seed(*parts))


def _departements(width: int) -> tuple[str, ...]:
    metro = [f"{n:0{width}d}" for n in range(1, 96) if n != 20]
    corsica = ["02A", "02B"] if width == 3 else ["2A", "2B"]
    overseas = ["971", "972", "973", "974", "976"] if width == 3 else ["97"]
    return (*metro[:19], *corsica, *metro[19:], *overseas)


def build_pools(seed: int, beneficiaries: int) -> Pools:
    """The shared code lists for `seed`, with `beneficiaries` patient pseudonyms."""
    dep2 = _departements(2)
    rng = _rng(seed, "pools")
    finess = tuple(f"{rng.choice(dep2)}{rng.randrange(10**7):07d}" for _ in range(400))
    numeric = [d for d in dep2 if d.isdigit()]
    professionals = tuple(
        f"{rng.choice(numeric)}1{rng.randrange(10**5):05d}{rng.randrange(10)}" for _ in range(3000)
    )
    patients = tuple("".join(rng.choices(_ALNUM, k=17)) for _ in range(max(1, beneficiaries)))
    return Pools(patients, finess, professionals, _departements(3), dep2)


def _uniform(ctx: FileContext, column: str, purpose: str, rows: int) -> pa.DoubleArray:
    seed = _derived_seed(ctx.seed, ctx.label, column, purpose)
    return pc.random(rows, initializer=seed)


def _indices(u: pa.DoubleArray, count: int) -> pa.Array:
    raw = pc.cast(pc.floor(pc.multiply(u, float(count))), pa.int64())
    return pc.min_element_wise(raw, pa.scalar(count - 1, pa.int64()))


def _take(values: Sequence[object], kind: pa.DataType, u: pa.DoubleArray) -> pa.Array:
    return pc.take(pa.array(list(values), type=kind), _indices(u, len(values)))


def _int_range(low: int, high: int, u: pa.DoubleArray) -> pa.Array:
    return pc.add(_indices(u, high - low + 1), pa.scalar(low, pa.int64()))


def _date_bounds(spec: object, ctx: FileContext, column: str) -> tuple[date, date]:
    if spec == "file_month":
        if ctx.month is None:
            raise ConfigError(f"column {column}: file_month dates need a monthly file")
        year, month = ctx.month
        return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
    if not isinstance(spec, list | tuple) or len(spec) != 2:
        raise ConfigError(f"column {column}: dates need [first, last] or file_month")
    return date.fromisoformat(str(spec[0])), date.fromisoformat(str(spec[1]))


def _dates(spec: object, ctx: FileContext, column: str, u: pa.DoubleArray) -> pa.Array:
    low, high = _date_bounds(spec, ctx, column)
    days = _int_range((low - _EPOCH).days, (high - _EPOCH).days, u)
    return pc.cast(pc.cast(days, pa.int32()), pa.date32())


def _padded(numbers: pa.Array, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")


def _alnum(ctx: FileContext, column: str, length: int, rows: int) -> pa.Array:
    rng = _rng(ctx.seed, ctx.label, column, "alnum")
    return pa.array(["".join(rng.choices(_ALNUM, k=length)) for _ in range(rows)], pa.string())


def _values(col: ColumnSpec, ctx: FileContext, rows: int) -> pa.Array:
    """The column's values before nulls, as drawn by its `gen` entry."""
    gen, u = col.gen, _uniform(ctx, col.name, "value", rows)
    kind = ARROW_TYPES[col.type]
    if "choice" in gen:
        weights = gen.get("weights") or [1] * len(gen["choice"])
        expanded = [v for v, w in zip(gen["choice"], weights, strict=True) for _ in range(int(w))]
        return _take(expanded, kind, u)
    if "int" in gen:
        return pc.cast(_int_range(int(gen["int"][0]), int(gen["int"][1]), u), kind)
    if "amount" in gen:
        low, high = float(gen["amount"][0]), float(gen["amount"][1])
        return pc.round(pc.add(pc.multiply(u, high - low), low), 2)
    if "date" in gen:
        return _dates(gen["date"], ctx, col.name, u)
    if "yearmonth" in gen:
        return pc.strftime(_dates(gen["yearmonth"], ctx, col.name, u), format="%Y%m")
    if "code" in gen:
        width = int(gen["code"])
        return _padded(_int_range(0, 10**width - 1, u), width)
    if "code_range" in gen:
        first, last = gen["code_range"]
        return _padded(_int_range(int(first), int(last), u), int(gen.get("width", 2)))
    if "alnum" in gen:
        return _alnum(ctx, col.name, int(gen["alnum"]), rows)
    if "bool" in gen:
        return pc.less(u, float(gen["bool"]))
    if "pool" in gen:
        pool: Sequence[str] = getattr(ctx.pools, str(gen["pool"]))
        if gen.get("sequential"):
            return pa.array([pool[i % len(pool)] for i in range(rows)], pa.string())
        return _take(pool, kind, u)
    raise ConfigError(f"column {col.name}: unknown generator {dict(gen)!r}")


def _fill_scalar(col: ColumnSpec) -> pa.Scalar:
    assert col.fill is not None
    if col.type == "date":
        return pa.scalar(date.fromisoformat(col.fill), pa.date32())
    return pa.scalar(col.fill, ARROW_TYPES[col.type])


def _with_nulls(col: ColumnSpec, ctx: FileContext, values: pa.Array) -> pa.Array:
    if col.nulls <= 0:
        return values
    missing = pc.less(_uniform(ctx, col.name, "nulls", len(values)), col.nulls)
    if col.fill is not None:
        return pc.if_else(missing, _fill_scalar(col), values)
    return pc.if_else(missing, pa.scalar(None, values.type), values)


def generate_table(spec: TableSpec, rows: int, ctx: FileContext) -> pa.Table:
    """`rows` rows of `spec` (tables of fixed rows ignore `rows`), typed by the schema."""
    if spec.fixed_rows:
        columns = list(zip(*spec.fixed_rows, strict=True))
        arrays = [pa.array(list(c), pa.string()) for c in columns]
        return pa.Table.from_arrays(arrays, schema=spec.arrow_schema())
    arrays = [
        pc.cast(_with_nulls(c, ctx, _values(c, ctx, rows)), ARROW_TYPES[c.type])
        for c in spec.columns
    ]
    return pa.Table.from_arrays(arrays, schema=spec.arrow_schema())


def to_parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def _csv_column(array: pa.ChunkedArray, kind: str) -> pa.ChunkedArray:
    if kind == "date":
        return pc.utf8_upper(pc.strftime(array, format="%d%b%Y:00:00:00"))
    if kind == "number":
        cents = pc.cast(pc.round(pc.multiply(array, 100.0)), pa.int64())
        units = pc.cast(pc.divide(cents, 100), pa.string())
        decimals = _padded(pc.subtract(cents, pc.multiply(pc.divide(cents, 100), 100)), 2)
        return pc.binary_join_element_wise(units, decimals, ",")
    if kind == "boolean":
        return pc.if_else(array, "1", "0")
    return pc.cast(array, pa.string())


def to_csv_bytes(table: pa.Table, spec: TableSpec) -> bytes:
    """The table as an SNDS-style CSV (see tables/SOURCE.md), in the table's encoding."""
    kinds = {c.name: c.type for c in spec.columns}
    texts = pa.table({name: _csv_column(table[name], kinds[name]) for name in table.column_names})
    sink = io.BytesIO()
    sink.write((CSV_DELIMITER.join(table.column_names) + "\n").encode())
    options = pa_csv.WriteOptions(
        include_header=False, delimiter=CSV_DELIMITER, quoting_style="none"
    )
    pa_csv.write_csv(texts, sink, options)
    data = sink.getvalue()
    if spec.encoding.lower().replace("-", "") != "utf8":
        data = data.decode("utf-8").encode(spec.encoding)
    return data
