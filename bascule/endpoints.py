"""Build connectors from endpoint config, reading secrets from this process's environment.

Tasks sent to workers carry an `EndpointRef` (the endpoint's config: names of environment
variables, never their values) so that every worker builds its own clients from its own
environment. Connectors are cached per process: boto3 and Azure clients are thread-safe and
expensive to create.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from typing import Any

from bascule.config import (
    AzureBlobEndpoint,
    Endpoint,
    LocalEndpoint,
    RcloneEndpoint,
    S3Endpoint,
    check_plain_http,
)
from bascule.connectors.base import Connector
from bascule.errors import AccessDenied, ConfigError

_AZURE_STORAGE_SCOPE = "https://storage.azure.com/.default"


@dataclass(frozen=True)
class EndpointRef:
    """Which store on which endpoint; picklable and free of secrets."""

    name: str
    endpoint: Endpoint
    store: str

    @functools.cached_property
    def cache_key(self) -> str:
        """Identifies the connector to reuse (computed once: it is asked on every task)."""
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


def _azure_credential(where: str) -> Any:
    """The Azure credential chain (DefaultAzureCredential) for an endpoint with `account_url`
    and no connection string. A token is fetched once here, so that a missing credential is
    one line (exit 3) before any request: never an anonymous request instead."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    try:
        credential.get_token(_AZURE_STORAGE_SCOPE)
    except ClientAuthenticationError:
        credential.close()
        raise AccessDenied(
            f"{where}: account_url without connection_string_env uses the Azure credential chain "
            "(DefaultAzureCredential), which found no credential; sign in (`az login`), run with "
            "a managed identity or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, or set "
            "connection_string_env",
            connector=where,
        ) from None
    return credential


def build_connector(ref: EndpointRef) -> Connector:
    """A new connector for `ref` (no cache). ConfigError when an env variable is missing."""
    ep = ref.endpoint
    where = f"endpoints.{ref.name}"
    if isinstance(ep, AzureBlobEndpoint):
        from bascule.connectors.azure.connector import AzureBlobConnector

        conn = _env(ep.connection_string_env, where)
        credential = None if conn else _azure_credential(where)
        azure = AzureBlobConnector(
            ref.store,
            connection_string=conn,
            account_url=ep.account_url,
            credential=credential,
            ca_bundle=str(ep.ca_bundle) if ep.ca_bundle else None,
        )
        check_plain_http(where, ep, [azure.endpoint_url])
        return azure
    if isinstance(ep, S3Endpoint):
        from bascule.connectors.s3.connector import S3Connector

        s3 = S3Connector(
            ref.store,
            endpoint_url=ep.endpoint_url,
            region=ep.region,
            access_key_id=_env(ep.access_key_id_env, where),
            secret_access_key=_env(ep.secret_access_key_env, where),
            provider=ep.provider,
            max_parts=ep.max_parts,
            part_checksum=ep.part_checksum,
            ca_bundle=str(ep.ca_bundle) if ep.ca_bundle else None,
        )
        # The URL boto3 settled on (endpoint_url, AWS_ENDPOINT_URL_S3, profile, AWS itself).
        check_plain_http(where, ep, [s3.endpoint_url])
        return s3
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
