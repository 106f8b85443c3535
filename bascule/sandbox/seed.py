"""The sandbox's synthetic source data: what `bascule sandbox seed` writes into Azurite.

`build_objects` is pure and deterministic: the same `SeedOptions` give byte-identical objects.
`upload_objects` writes them into one Azurite container. Layout (container `snds`):

```
dcir/2023/ER_PRS_F_2023MM.parquet      12 monthly files (+ December again as CSV)
beneficiaires/IR_BEN_R.{parquet,csv}
pmsi/mco/2023/T_MCO23B.{parquet,csv}   T_MCOaaB for 2023
nomenclatures/IR_DPT_V.csv             Latin-1, accented labels, 02A/02B
binaries/...                           incompressible objects (imaging, documents)
edge/...                               0 bytes, exactly one part, one part + 1 byte,
                                       non-ASCII and space-containing keys, a deep prefix
```
The edge objects are sized for `part_size` (8 MiB by default, small enough for a sandbox;
the migration's own default part size is 64 MiB, so a rehearsal on the sandbox must use the
same part size as the seed for those objects to sit exactly on a part boundary).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bascule.connectors.base import KiB, MiB
from bascule.sandbox import synth

SOURCE_CONTAINER = "snds"
TARGET_BUCKET = "hdh-snds"
DEFAULT_PART_SIZE = 8 * MiB
YEAR = 2023


@dataclass(frozen=True)
class SeedGroup:
    """A prefix of the source container seeded as one dataset."""

    name: str
    prefix: str


SEED_GROUPS: tuple[SeedGroup, ...] = (
    SeedGroup("dcir-2023", "dcir/2023/"),
    SeedGroup("beneficiaires", "beneficiaires/"),
    SeedGroup("pmsi-mco-2023", "pmsi/mco/2023/"),
    SeedGroup("nomenclatures", "nomenclatures/"),
    SeedGroup("binaries", "binaries/"),
    SeedGroup("edge", "edge/"),
)

# (key, size at scale 1): random bytes, which neither compress nor deduplicate.
_BINARIES: tuple[tuple[str, int], ...] = (
    ("binaries/imagerie/scan-0001.dcm", 2 * MiB),
    ("binaries/imagerie/scan-0002.dcm", 3 * MiB + 123),
    ("binaries/documents/dictionnaire-variables.pdf", 700 * KiB),
    ("binaries/archives/extraction-2022.zip", 4 * MiB + 1),
)


@dataclass(frozen=True)
class SeedOptions:
    seed: int = 1
    scale: float = 1.0  # multiplies rows and binary sizes (edge objects follow part_size)
    part_size: int = DEFAULT_PART_SIZE

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.part_size < 1:
            raise ValueError(f"part size must be at least 1 byte, got {self.part_size}")

    def rows(self, base: int) -> int:
        return max(1, round(base * self.scale))


@dataclass(frozen=True)
class SeedObject:
    key: str
    data: bytes

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class SeededObject:
    """What was written: enough to check a copy later (size and MD5 of the bytes)."""

    key: str
    size: int
    md5: str

    def to_dict(self) -> dict[str, object]:
        return {"key": self.key, "size": self.size, "md5": self.md5}


def _random_bytes(seed: int, key: str, size: int) -> bytes:
    return random.Random(f"{seed}:{key}").randbytes(size)


def _dcir(options: SeedOptions, pools: synth.Pools) -> Iterator[SeedObject]:
    spec = synth.load_table("ER_PRS_F")
    rows = options.rows(spec.rows)
    for month in range(1, 13):
        label = f"ER_PRS_F_{YEAR}{month:02d}"
        ctx = synth.FileContext(options.seed, label, pools, month=(YEAR, month))
        table = synth.generate_table(spec, rows, ctx)
        yield SeedObject(f"dcir/{YEAR}/{label}.parquet", synth.to_parquet_bytes(table))
        if month == 12:  # the same rows as CSV: row counts must agree across formats
            yield SeedObject(f"dcir/{YEAR}/{label}.csv", synth.to_csv_bytes(table, spec))


def _both_formats(
    name: str, key_stem: str, options: SeedOptions, pools: synth.Pools
) -> Iterator[SeedObject]:
    spec = synth.load_table(name)
    ctx = synth.FileContext(options.seed, key_stem, pools)
    table = synth.generate_table(spec, options.rows(spec.rows), ctx)
    yield SeedObject(f"{key_stem}.parquet", synth.to_parquet_bytes(table))
    yield SeedObject(f"{key_stem}.csv", synth.to_csv_bytes(table, spec))


def _nomenclatures(options: SeedOptions, pools: synth.Pools) -> Iterator[SeedObject]:
    spec = synth.load_table("IR_DPT_V")
    table = synth.generate_table(spec, 0, synth.FileContext(options.seed, "IR_DPT_V", pools))
    yield SeedObject("nomenclatures/IR_DPT_V.csv", synth.to_csv_bytes(table, spec))


def _binaries(options: SeedOptions) -> Iterator[SeedObject]:
    for key, size in _BINARIES:
        yield SeedObject(key, _random_bytes(options.seed, key, max(1, round(size * options.scale))))


def _edge(options: SeedOptions) -> Iterator[SeedObject]:
    part = options.part_size
    yield SeedObject("edge/empty.bin", b"")
    yield SeedObject("edge/one-part.bin", _random_bytes(options.seed, "one-part", part))
    yield SeedObject(
        "edge/one-part-plus-one.bin", _random_bytes(options.seed, "one-part+1", part + 1)
    )
    csv_text = "CODE;LIBELLE\n01;Résumé d'été\n2A;Île-de-Beauté\n02;\n"
    yield SeedObject("edge/résumé été.csv", csv_text.encode("utf-8"))
    yield SeedObject("edge/dir with space/x.bin", _random_bytes(options.seed, "space", 1 * KiB))
    yield SeedObject("edge/a/b/c/d/e/f/g/h/file", b"deep prefix\n")


def build_objects(options: SeedOptions) -> Iterator[SeedObject]:
    """Every seeded object, one at a time (in a fixed order), for `options`."""
    pools = synth.build_pools(options.seed, options.rows(synth.load_table("IR_BEN_R").rows))
    yield from _dcir(options, pools)
    yield from _both_formats("IR_BEN_R", "beneficiaires/IR_BEN_R", options, pools)
    yield from _both_formats("T_MCOaaB", f"pmsi/mco/{YEAR}/T_MCO{YEAR % 100:02d}B", options, pools)
    yield from _nomenclatures(options, pools)
    yield from _binaries(options)
    yield from _edge(options)


def group_of(key: str) -> str:
    """The seed group (dataset name) a key belongs to."""
    for group in SEED_GROUPS:
        if key.startswith(group.prefix):
            return group.name
    raise ValueError(f"key {key!r} is in no seed group")


def summarise(objects: Iterable[SeededObject]) -> dict[str, tuple[int, int]]:
    """Per seed group: (objects, bytes), in SEED_GROUPS order."""
    totals = {g.name: (0, 0) for g in SEED_GROUPS}
    for obj in objects:
        count, size = totals[group_of(obj.key)]
        totals[group_of(obj.key)] = (count + 1, size + obj.size)
    return totals
