"""bascule's reading of Azure connection strings and account URLs (`connectors/azure/
account.py`, which starts without importing the SDK) against azure-storage-blob's own
answers for the same input: account name, service URL, container URL, refusals, and the
API version the data path sends."""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from bascule.connectors.azure import account

KEY = "a2V5a2V5a2V5a2V5"
CONNECTION_STRINGS = [
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net",
    f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net",
    f"AccountName=acct;AccountKey={KEY}",
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}",
    f"accountname=acct;accountkey={KEY};endpointsuffix=core.chinacloudapi.cn;",
    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
    "UseDevelopmentStorage=true",
    "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2020-08-04&sig=abc",
    "BlobEndpoint=http://localhost:10000/devstoreaccount1;SharedAccessSignature=sv=1&sig=x",
    f"AccountName=acct;AccountKey={KEY};BlobEndpoint=https://proxy.example.org/store/",
    "BlobEndpoint=https://acct-dualstack.blob.core.windows.net;SharedAccessSignature=sig=x",
    "BlobEndpoint=https://acct-secondary.blob.core.windows.net;SharedAccessSignature=sig=x",
    "BlobEndpoint=https://proxy.example.org;SharedAccessSignature=sig=x",
    "AccountName=acct;SharedAccessSignature=sv=1&sig=x",
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};;",
]
REFUSED = [
    "garbage",
    "",
    f"AccountKey={KEY}",
    "BlobSecondaryEndpoint=https://acct-secondary.blob.core.windows.net;SharedAccessSignature=s",
    "AccountName=acct;AccountKey",
]
ACCOUNT_URLS = [
    "https://acct.blob.core.windows.net",
    "https://acct.blob.core.windows.net/",
    "acct.blob.core.windows.net",
    "http://127.0.0.1:10000/devstoreaccount1",
    "http://localhost:10000/devstoreaccount1/",
    "https://proxy.example.org/path/",
    "HTTPS://Acct.blob.core.windows.net",
]
CONTAINER = "my container-é"


def _sdk(client: BlobServiceClient) -> tuple[str | None, str, str]:
    container = client.get_container_client(CONTAINER)
    return client.account_name, client.url.split("?")[0], container.url.split("?")[0]


def _ours(found: account.Account) -> tuple[str | None, str, str]:
    return found.name, found.service_url, found.container_url(CONTAINER)


@pytest.mark.parametrize("connection_string", CONNECTION_STRINGS)
def test_a_connection_string_points_where_the_sdk_connects(connection_string: str) -> None:
    sdk = _sdk(BlobServiceClient.from_connection_string(connection_string))
    assert _ours(account.from_connection_string(connection_string)) == sdk


@pytest.mark.parametrize("connection_string", REFUSED)
def test_a_connection_string_the_sdk_refuses_is_refused(connection_string: str) -> None:
    with pytest.raises(ValueError):
        BlobServiceClient.from_connection_string(connection_string)
    with pytest.raises(ValueError):
        account.from_connection_string(connection_string)


@pytest.mark.parametrize("url", ACCOUNT_URLS)
def test_an_account_url_points_where_the_sdk_connects(url: str) -> None:
    assert _ours(account.from_account_url(url)) == _sdk(BlobServiceClient(url))


@pytest.mark.parametrize("url", ["https://", "http:///path"])
def test_an_account_url_without_a_host_is_refused_as_by_the_sdk(url: str) -> None:
    with pytest.raises(ValueError):
        BlobServiceClient(url)
    with pytest.raises(ValueError):
        account.from_account_url(url)


def test_the_data_path_speaks_the_sdks_api_version() -> None:
    client = BlobServiceClient.from_connection_string(CONNECTION_STRINGS[0])
    assert client.api_version == account.API_VERSION
