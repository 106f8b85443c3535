"""Write seeded objects into an Azurite container (the only module of the sandbox that
imports the Azure SDK; errors are mapped here to bascule's error tree)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ServiceRequestError
from azure.storage.blob import BlobServiceClient, ContainerClient

from bascule.errors import ConnectorError, TransientStorageError
from bascule.sandbox.seed import SeededObject, SeedObject

# Blobs above this go up as staged blocks (and then carry no Content-MD5, as on Azure).
_SINGLE_PUT_BYTES = 4 * 1024 * 1024


@contextmanager
def _mapped(where: str, key: str = "") -> Iterator[None]:
    try:
        yield
    except ServiceRequestError as exc:
        raise TransientStorageError(
            f"cannot reach Azurite at {where} ({exc.message}); is the sandbox running? "
            "check `bascule sandbox status`",
            connector=where,
            key=key,
        ) from exc
    except AzureError as exc:
        raise ConnectorError(
            f"Azurite refused a write at {where} {key!r}: {exc.message}", connector=where, key=key
        ) from exc


def _container(connection_string: str, container: str, ca_bundle: str | None) -> ContainerClient:
    options: dict[str, Any] = {"max_single_put_size": _SINGLE_PUT_BYTES}
    if ca_bundle:
        options["connection_verify"] = ca_bundle
    service = BlobServiceClient.from_connection_string(connection_string, **options)
    client = service.get_container_client(container)
    # Seeding again overwrites objects in place.
    with _mapped(f"az://{service.account_name}/{container}"), suppress(ResourceExistsError):
        client.create_container()
    return client


def upload_objects(
    connection_string: str,
    container: str,
    objects: Iterable[SeedObject],
    on_object: Callable[[SeededObject], None] | None = None,
    ca_bundle: str | None = None,
) -> list[SeededObject]:
    """Create `container` if needed and write every object (overwriting); over HTTPS,
    trusting the CA certificates in `ca_bundle`. Raises TransientStorageError if Azurite
    cannot be reached, ConnectorError if it refuses."""
    client = _container(connection_string, container, ca_bundle)
    where = f"az://{client.account_name}/{container}"
    written = []
    for obj in objects:
        with _mapped(where, obj.key):
            client.upload_blob(obj.key, obj.data, overwrite=True, max_concurrency=2)
        done = SeededObject(obj.key, len(obj.data), obj.md5)
        written.append(done)
        if on_object is not None:
            on_object(done)
    return written
