"""Build connectors from endpoint config, reading secrets from this process's environment.

Tasks sent to workers carry an `EndpointRef` (the endpoint's config: names of environment
variables, never their values) so that every worker builds its own clients from its own
environment. Connectors are cached per process: boto3 and Azure clients are thread-safe and
expensive to create.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from bascule.config import (
    AzureBlobEndpoint,
    Endpoint,
    LocalEndpoint,
    RcloneEndpoint,
    S3Endpoint,
)
from bascule.connectors.base import Connector
from bascule.errors import ConfigError


@dataclass(frozen=True)
class EndpointRef:
    """Which store on which endpoint; picklable and free of secrets."""

    name: str
    endpoint: Endpoint
    store: str

    @property
    def cache_key(self) -> str:
        return f"{self.name}|{self.store}|{self.endpoint.model_dump_json()}"


_cache: dict[str, Connector] = {}
_lock = threading.Lock()


def _env(var: str | None, where: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise ConfigError(f"{where}: environment variable {var} is not set; export it")
    return value


def build_connector(ref: EndpointRef) -> Connector:
    """A new connector for `ref` (no cache). ConfigError when an env variable is missing."""
    ep = ref.endpoint
    where = f"endpoints.{ref.name}"
    if isinstance(ep, AzureBlobEndpoint):
        from bascule.connectors.azure_blob import AzureBlobConnector

        conn = _env(ep.connection_string_env, where)
        return AzureBlobConnector(ref.store, connection_string=conn, account_url=ep.account_url)
    if isinstance(ep, S3Endpoint):
        from bascule.connectors.s3.connector import S3Connector

        return S3Connector(
            ref.store,
            endpoint_url=ep.endpoint_url,
            region=ep.region,
            access_key_id=_env(ep.access_key_id_env, where),
            secret_access_key=_env(ep.secret_access_key_env, where),
            provider=ep.provider,
            max_parts=ep.max_parts,
        )
    if isinstance(ep, LocalEndpoint):
        from bascule.connectors.local import LocalConnector

        return LocalConnector(ep.path / ref.store if ref.store else ep.path)
    if isinstance(ep, RcloneEndpoint):
        from bascule.connectors.rclone import RcloneConnector

        remote = f"{ep.remote}:{ref.store}" if ref.store else f"{ep.remote}:"
        return RcloneConnector(remote)
    raise ConfigError(f"{where}: unsupported endpoint kind")


def connector(ref: EndpointRef) -> Connector:
    """The process-wide connector for `ref`, built on first use."""
    key = ref.cache_key
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = build_connector(ref)
        return found


def clear_cache() -> None:
    with _lock:
        _cache.clear()
