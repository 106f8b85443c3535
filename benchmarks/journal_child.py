"""One journal-scale step in its own process (so that its peak RSS is its own).

Usage: python -m benchmarks.journal_child build|verify|freeze-gate CONFIG OBJECTS

The objects are synthetic: object i of dataset ``d`` has a generated key, size and etag, and
no bytes anywhere. A `SyntheticConnector` lists them in key order (no storage); it is put in
the process's connector cache in place of the config's local endpoints, so `verify` and the
drift gate run their real code against it.

- ``build``: a journal of OBJECTS committed, encrypted objects, through the Journal's own
  connection in batched transactions (the copy itself is not what is measured here);
- ``verify``: ``bascule verify --level quick`` as the CLI runs it, in this process;
- ``freeze-gate``: a freeze snapshot of OBJECTS listed objects, then the drift gate against a
  listing where 3 objects are new, 3 changed and 3 deleted; prints the counts and names.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bascule.age.sizes import ciphertext_size, header_length
from bascule.config import Config, load_config
from bascule.connectors.base import Capabilities, ObjectInfo
from bascule.endpoints import _cache
from bascule.migration.journal import Facts
from bascule.migration.service import open_journal, source_ref, target_ref

BATCH = 50_000
PART_SIZE = 16 << 20


def key_of(i: int) -> str:
    """Increasing with `i`: a listing in index order is in key order."""
    return f"d/part-{i:08d}.csv"


def size_of(i: int) -> int:
    return 1_000 + (i * 7_919) % 50_000


class SyntheticConnector:
    """Lists `objects` generated objects under its prefix, in key order; nothing else."""

    def __init__(self, objects: int, side: str, hlen: int, drift: bool = False) -> None:
        self.objects = objects
        self.side = side
        self.hlen = hlen
        self.drift = drift
        # In the drift listing, 3 objects from each mark: changed (size + 1), deleted, and
        # followed by a new object.
        self.marks = (1, objects // 2, max(0, objects - 4))

    @property
    def url(self) -> str:
        return f"synthetic://{self.side}"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(sorted_listing=True)  # `list` is in key order (see above)

    def _info(self, i: int) -> ObjectInfo:
        if self.side == "source":
            return ObjectInfo(key_of(i), size_of(i), f"0x{i:016x}")
        key = "hdh/" + key_of(i)[2:]
        return ObjectInfo(key, ciphertext_size(size_of(i), self.hlen), f"t{i:x}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for i in range(self.objects):
            info = self._info(i)
            if not self.drift:
                yield info
            elif self.marks[0] <= i < self.marks[0] + 3:
                yield ObjectInfo(info.key, info.size + 1, info.etag)
            elif not self.marks[1] <= i < self.marks[1] + 3:
                yield info
                if self.marks[2] <= i < self.marks[2] + 3:
                    yield ObjectInfo(info.key + ".new", 1, "0xnew")


def install(cfg: Config, objects: int, drift: bool = False) -> None:
    """Put synthetic connectors in the cache for every dataset's source and target."""
    hlen = header_length(len(cfg.encryption.recipients))
    for ds in cfg.datasets:
        _cache[source_ref(cfg, ds).cache_key] = SyntheticConnector(  # type: ignore[assignment]
            objects, "source", hlen, drift
        )
        _cache[target_ref(cfg, ds).cache_key] = SyntheticConnector(  # type: ignore[assignment]
            objects, "target", hlen
        )


def build(cfg: Config, objects: int) -> dict[str, float]:
    hlen = header_length(len(cfg.encryption.recipients))
    journal = open_journal(cfg, create=True)
    assert journal is not None
    try:
        run = journal.start_run("migrate", {"datasets": ["d"]})
        now = time.time()
        for start in range(0, objects, BATCH):
            rows = [
                ("d", key_of(i), "hdh/" + key_of(i)[2:], f"0x{i:016x}", size_of(i),
                 ciphertext_size(size_of(i), hlen), 1, PART_SIZE, 1, "committed",
                 f"{i:064x}-1", f"{i + 1:064x}-1", f"t{i:x}", run, now)
                for i in range(start, min(objects, start + BATCH))
            ]  # fmt: skip
            with journal.transaction() as db:
                db.executemany(
                    "INSERT INTO objects (dataset, source_key, target_key, source_etag, "
                    "source_size, target_size, encrypt, part_size, parts, state, plain_sha256, "
                    "cipher_sha256, target_etag, run_id, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        journal.end_run(run, "completed", sum(size_of(i) for i in range(objects)), objects, 60.0)
    finally:
        journal.close()
    return {}


def verify(config: Path) -> int:
    from bascule.cli.app import app

    try:
        app(["verify", "-c", str(config), "--level", "quick"], standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def freeze_gate(cfg: Config, objects: int) -> dict[str, object]:
    from bascule.runbook.drift import drift, take_snapshot

    journal = open_journal(cfg, create=True)
    assert journal is not None
    try:
        facts = Facts(journal)
        run = journal.start_run("rehearse", {"datasets": ["d"]})
        step = facts.start_step(run, "bench", "rehearse", "p", "freeze", "freeze")
        started = time.monotonic()
        count = take_snapshot(journal, run, "freeze", cfg, cfg.dataset("d"))
        freeze_s = time.monotonic() - started
        facts.end_step(step, "passed", {"datasets": ["d"], "objects": count})
        row = next(r for r in facts.steps(run) if r.id == step)
        install(cfg, objects, drift=True)
        started = time.monotonic()
        (found,) = drift(journal, cfg, row)
        gate_s = time.monotonic() - started
    finally:
        journal.close()
    return {"freeze_seconds": round(freeze_s, 2), "gate_seconds": round(gate_s, 2),
            "snapshot": count, "drift": found.counts, "named": found.named}  # fmt: skip


def main(argv: list[str]) -> int:
    mode, config, objects = argv[0], Path(argv[1]), int(argv[2])
    cfg = load_config(config, check_env=False)
    install(cfg, objects)
    if mode == "build":
        out: dict[str, object] = dict(build(cfg, objects))
    elif mode == "verify":
        return verify(config)
    elif mode == "freeze-gate":
        out = freeze_gate(cfg, objects)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
