"""Build connectors from endpoint config, reading secrets from this process's environment.

Tasks sent to workers carry an `EndpointRef`: which store on which endpoint, and the
endpoint's settings as a plain `EndpointSpec` (names of environment variables, never their
values), so that every worker builds its own clients from its own environment. A worker
unpickles a ref without importing the config's models (pydantic): `bascule.config` is
imported here for type checking only. Connectors are cached per process: boto3 and Azure
clients are thread-safe and expensive to create.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bascule.connectors.base import Connector
from bascule.errors import AccessDenied, ConfigError
from bascule.urls import refuse_plain_http

if TYPE_CHECKING:
    from bascule.config import Endpoint

_AZURE_STORAGE_SCOPE = "https://storage.azure.com/.default"


# One spec per endpoint kind of `bascule.config`, with the fields of its model (`kind` is the
# class): `spec_of` builds one from the model's fields, so a field added there and not here
# fails on the first ref made.
@dataclass(frozen=True)
class AzureBlobSpec:
    connection_string_env: str | None
    account_url: str | None
    ca_bundle: Path | None


@dataclass(frozen=True)
class S3Spec:
    provider: str
    region: str | None
    endpoint_url: str | None
    max_parts: int | None
    part_checksum: str | None
    access_key_id_env: str | None
    secret_access_key_env: str | None
    allow_insecure_http: bool
    ca_bundle: Path | None


@dataclass(frozen=True)
class LocalSpec:
    path: Path


@dataclass(frozen=True)
class RcloneSpec:
    remote: str


EndpointSpec = AzureBlobSpec | S3Spec | LocalSpec | RcloneSpec
_SPECS: dict[str, type[EndpointSpec]] = {
    "azure-blob": AzureBlobSpec,
    "s3": S3Spec,
    "local": LocalSpec,
    "rclone": RcloneSpec,
}


def spec_of(endpoint: Endpoint) -> EndpointSpec:
    """The plain settings of a validated endpoint."""
    return _SPECS[endpoint.kind](**endpoint.model_dump(exclude={"kind"}))


@dataclass(frozen=True)
class EndpointRef:
    """Which store on which endpoint; picklable, free of secrets and of pydantic."""

    name: str
    spec: EndpointSpec
    store: str

    @classmethod
    def of(cls, name: str, endpoint: Endpoint, store: str) -> EndpointRef:
        return cls(name, spec_of(endpoint), store)

    @functools.cached_property
    def cache_key(self) -> str:
        """Identifies the connector to reuse (computed once: it is asked on every task)."""
        return f"{self.name}|{self.store}|{self.spec!r}"


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
    ep = ref.spec
    where = f"endpoints.{ref.name}"
    if isinstance(ep, AzureBlobSpec):
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
        refuse_plain_http(where, [azure.endpoint_url], s3=False, allowed=False)
        return azure
    if isinstance(ep, S3Spec):
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
        refuse_plain_http(where, [s3.endpoint_url], s3=True, allowed=ep.allow_insecure_http)
        return s3
    if isinstance(ep, LocalSpec):
        from bascule.connectors.local import LocalConnector

        return LocalConnector(ep.path / ref.store if ref.store else ep.path)
    if isinstance(ep, RcloneSpec):
        from bascule.connectors.rclone import RcloneConnector

        remote = f"{ep.remote}:{ref.store}" if ref.store else f"{ep.remote}:"
        return RcloneConnector(remote)
    raise ConfigError(f"{where}: unsupported endpoint kind")


def connector(ref: EndpointRef) -> Connector:
    """The process-wide connector for `ref`, built on first use (the lock is taken to build
    one only: a dict lookup is atomic, and a task asks four times per object)."""
    key = ref.cache_key
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _cache[key] = build_connector(ref)
        return found


def clear_cache() -> None:
    with _lock:
        _cache.clear()
