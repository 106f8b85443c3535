"""Azure-only: both ways `abort` discards staged blocks, and what it must never touch."""

from __future__ import annotations

import io

import pytest

from bascule.connectors.azure.connector import AzureBlobConnector
from bascule.errors import PreconditionFailed
from tests.conftest import AzuriteServer, new_container_name


@pytest.fixture
def connector(azurite: AzuriteServer) -> AzureBlobConnector:
    from azure.storage.blob import BlobServiceClient

    name = new_container_name()
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
    return AzureBlobConnector(name, connection_string=azurite.connection_string)


def test_empty_commit_fallback_discards_staged_blocks(connector: AzureBlobConnector) -> None:
    writer = connector.open_writer("staged.bin")
    writer.write_part(1, b"staged only")
    assert [p.key for p in connector.list_uploads()] == ["staged.bin"]
    connector._discard_by_empty_commit("staged.bin")
    assert list(connector.list_uploads()) == []
    assert list(connector.list()) == []


def test_empty_commit_never_clobbers_a_committed_blob(connector: AzureBlobConnector) -> None:
    connector.put("taken.bin", io.BytesIO(b"someone else's"), 14)
    with pytest.raises(PreconditionFailed):
        connector._discard_by_empty_commit("taken.bin")
    with connector.open_read("taken.bin") as stream:
        assert stream.read() == b"someone else's"


def test_abort_over_a_block_blob_recommits_its_blocks(connector: AzureBlobConnector) -> None:
    first = connector.open_writer("blocks.bin", metadata={"origin": "first"})
    receipts = [first.write_part(1, b"one-"), first.write_part(2, b"two")]
    first.commit(receipts)
    etag_before = connector.stat("blocks.bin").etag
    second = connector.open_writer("blocks.bin")
    second.write_part(1, b"REPLACEMENT")
    second.abort()
    blob = connector._container.get_blob_client("blocks.bin")
    _, staged = blob.get_block_list("uncommitted")
    assert staged == []
    after = connector.stat("blocks.bin")
    assert after.etag != etag_before  # recommitted: same bytes, new etag
    assert after.metadata == {"origin": "first"}
    with connector.open_read("blocks.bin") as stream:
        assert stream.read() == b"one-two"
