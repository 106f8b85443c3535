"""Where an Azure Storage connection string points, read as azure-storage-blob reads it,
without importing the SDK: importing azure-storage-blob costs about 0.25 s at every start,
and the data path (`rest.py`) does not need it to list or read.

The rules are the SDK's own (`parse_connection_str`, then `BlobServiceClient`'s account-name
and host rules, in azure-storage-blob 12.x): an explicit ``BlobEndpoint``, else
``DefaultEndpointsProtocol://AccountName.blob.EndpointSuffix``, else
``https://AccountName.blob.core.windows.net``; ``UseDevelopmentStorage=true`` is the local
emulator. The account name comes from ``AccountName`` with a key, else from the host
(``name.blob.core...``) or, for an emulator on 127.0.0.1 or localhost, from the path.
tests/contract/test_azure_account.py holds every answer here to the SDK's for the same
input, so the plain-HTTP check and the connector's identity cannot drift from what the SDK
connects to.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import ParseResult, quote, urlparse

SERVICE_HOST_BASE = "core.windows.net"
DEV_ACCOUNT = "devstoreaccount1"
DEV_ENDPOINT = f"http://127.0.0.1:10000/{DEV_ACCOUNT}"
# The x-ms-version the SDK sends by default (its _SUPPORTED_API_VERSIONS[-1]): the data path
# speaks the same protocol. The contract test fails when an upgrade of the SDK moves it.
API_VERSION = "2026-10-06"
_SECONDARY_SUFFIX = "-secondary"
_FEATURE_SUFFIXES = ("-dualstack", "-ipv6")


@dataclass(frozen=True)
class Account:
    """An account endpoint: `name` (None where the URL does not say), `scheme` and the
    primary host (with a path for an emulator), as the SDK's client holds them."""

    name: str | None
    scheme: str
    host: str

    @property
    def service_url(self) -> str:
        """The service URL without any SAS query (`BlobServiceClient.url` less its query)."""
        return f"{self.scheme}://{self.host}/"

    def container_url(self, container: str) -> str:
        return f"{self.scheme}://{self.host}/{quote(container)}"


def from_connection_string(connection_string: str) -> Account:
    """The account a connection string names; ValueError where the SDK refuses it."""
    fields = _fields(connection_string)
    if fields.get("USEDEVELOPMENTSTORAGE") == "true":
        return _account(DEV_ENDPOINT, DEV_ACCOUNT)
    primary = fields.get("BLOBENDPOINT")
    if primary is None:
        if "BLOBSECONDARYENDPOINT" in fields:
            raise ValueError("Connection string specifies only secondary endpoint.")
        primary = _built_endpoint(fields)
    keyed = "ACCOUNTNAME" in fields and "ACCOUNTKEY" in fields
    return _account(primary, fields["ACCOUNTNAME"] if keyed else None)


def from_account_url(account_url: str) -> Account:
    """The account of an ``account_url`` (no credential); ValueError where the SDK refuses it."""
    return _account(account_url, None)


def _fields(connection_string: str) -> dict[str, str]:
    pairs = [s.split("=", 1) for s in connection_string.rstrip(";").split(";")]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError("Connection string is either blank or malformed.")
    return {key.upper(): value for key, value in pairs}


def _built_endpoint(fields: dict[str, str]) -> str:
    try:
        name = fields["ACCOUNTNAME"]
    except KeyError:
        raise ValueError("Connection string missing required connection details.") from None
    if "DEFAULTENDPOINTSPROTOCOL" in fields and "ENDPOINTSUFFIX" in fields:
        return f"{fields['DEFAULTENDPOINTSPROTOCOL']}://{name}.blob.{fields['ENDPOINTSUFFIX']}"
    return f"https://{name}.blob.{fields.get('ENDPOINTSUFFIX', SERVICE_HOST_BASE)}"


def _parsed(account_url: str) -> ParseResult:
    if not account_url.lower().startswith("http"):
        account_url = "https://" + account_url
    parsed = urlparse(account_url.rstrip("/"))
    if not parsed.netloc:
        raise ValueError(f"Invalid URL: {account_url}")
    return parsed


def _account(account_url: str, keyed_name: str | None) -> Account:
    parsed = _parsed(account_url)
    netloc = parsed.netloc
    split = netloc.split(".blob.core.")
    name = _account_name(split[0]) if len(split) > 1 else None
    if (not name and netloc.startswith("localhost")) or netloc.startswith("127.0.0.1"):
        name = parsed.path.strip("/")
    host = netloc if len(split) > 1 else (netloc + parsed.path).rstrip("/")
    return Account(keyed_name or name, parsed.scheme, host)


def _account_name(account_part: str) -> str:
    secondary = account_part.find(_SECONDARY_SUFFIX)
    if secondary >= 0:
        return account_part[:secondary]
    for suffix in _FEATURE_SUFFIXES:
        if account_part.endswith(suffix):
            return account_part[: -len(suffix)]
    return account_part
