"""The routing record: a small JSON object saying which site is active, that consumers read.

It lives at the place `switchover.routing` names in the config: a local file (default
``routing.json`` beside the journal) or an object on an endpoint. A rehearsal writes its own
copy (under the rehearsal folder or prefix), never the production record.

```json
{"active": "target", "site": "scaleway-fr-par", "switched_at": "2026-05-01T22:04:11+00:00",
 "runbook": "switchover", "runbook_sha256": "...", "run_id": 12, "mode": "execute",
 "by": "operator"}
```
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bascule.config import Config, RoutingPlace
from bascule.endpoints import EndpointRef, connector
from bascule.errors import ConfigError, ObjectNotFound


def rehearsal_dir(cfg: Config, rehearsal_id: str) -> Path:
    """Local folder of one rehearsal: its journal and its routing record copy."""
    return cfg.journal.parent / "rehearsals" / rehearsal_id


def site_name(cfg: Config, active: str) -> str:
    """The endpoint name(s) of the source or target side, e.g. ``scaleway-fr-par``."""
    side = [d.source.endpoint if active == "source" else d.target.endpoint for d in cfg.datasets]
    return ",".join(sorted(set(side)))


@dataclass(frozen=True)
class RoutingStore:
    """Read and write the record at one place. `where` names it for messages."""

    cfg: Config
    rehearsal_id: str | None

    @property
    def _place(self) -> RoutingPlace:
        return self.cfg.switchover.routing

    def _local_path(self) -> Path:
        if self.rehearsal_id is not None:
            return rehearsal_dir(self.cfg, self.rehearsal_id) / "routing.json"
        path: Path | None = self._place.path
        if path is None:
            return self.cfg.journal.parent / "routing.json"
        return path if path.is_absolute() else self.cfg.source_path.parent / path

    def _ref(self) -> EndpointRef:
        place = self._place
        if place.endpoint not in self.cfg.endpoints:
            raise ConfigError(
                f"{self.cfg.source_path}: switchover.routing.endpoint: unknown endpoint "
                f"{place.endpoint!r}; declare it under endpoints"
            )
        store = place.bucket or place.container or ""
        return EndpointRef.of(place.endpoint, self.cfg.endpoints[place.endpoint], store)

    def _key(self) -> str:
        key: str = self._place.key
        if self.rehearsal_id is not None:
            return self.cfg.switchover.rehearsal_prefix.format(id=self.rehearsal_id) + key
        return key

    @property
    def on_endpoint(self) -> bool:
        return self._place.endpoint is not None and self._place.path is None

    @property
    def where(self) -> str:
        if self.on_endpoint:
            return f"{connector(self._ref()).url}/{self._key()}"
        return str(self._local_path())

    def read(self) -> dict[str, Any] | None:
        """The record, or None when none was written yet. ConnectorError if unreachable."""
        if self.on_endpoint:
            try:
                with connector(self._ref()).open_read(self._key()) as fh:
                    data = fh.read()
            except ObjectNotFound:
                return None
        else:
            path = self._local_path()
            if not path.exists():
                return None
            data = path.read_bytes()
        try:
            record = json.loads(data)
        except ValueError:
            raise ConfigError(f"{self.where}: the routing record is not JSON; restore it") from None
        return record if isinstance(record, dict) else None

    def write(self, record: dict[str, Any]) -> None:
        """Replace the record (atomically for a local file: write then rename)."""
        data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        if self.on_endpoint:
            connector(self._ref()).put(self._key(), io.BytesIO(data), len(data))
            return
        path = self._local_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def delete(self) -> None:
        """Remove the record (missing is not an error)."""
        if self.on_endpoint:
            connector(self._ref()).delete(self._key())
        else:
            self._local_path().unlink(missing_ok=True)
