"""An Azure source read over the data path never imports azure-storage-blob (about 0.25 s at
every start): the SDK's client is made on the first call that needs it, and with it the
SDK, in a process of its own here since the test process has imported the SDK already."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from bascule.connectors.azure.connector import AzureBlobConnector
from tests.conftest import AzuriteServer, new_container_name

CHILD = """
import io, json, sys
from bascule.connectors.azure.connector import AzureBlobConnector
from bascule.connectors.base import ByteRange
conn, container = sys.argv[1], sys.argv[2]
az = AzureBlobConnector(container, connection_string=conn)
keys = [o.key for o in az.list()]
got = bytearray()
az.read_to("a/one.bin", ByteRange(0, 5), got.extend)
before = "azure.storage.blob" in sys.modules
info = az.stat("a/one.bin")  # a call the data path does not cover: the SDK, now
print(json.dumps({"keys": keys, "read": got.decode(), "sdk_before": before,
                  "sdk_after": "azure.storage.blob" in sys.modules, "size": info.size}))
"""


def test_listing_and_reading_start_without_the_sdk(azurite: AzuriteServer) -> None:
    name = new_container_name()
    writer = AzureBlobConnector(name, connection_string=azurite.connection_string)
    writer._container.create_container()
    writer.put("a/one.bin", io.BytesIO(b"hello world"), 11)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, azurite.connection_string, name],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    seen = json.loads(done.stdout)
    assert seen == {
        "keys": ["a/one.bin"], "read": "hello", "sdk_before": False, "sdk_after": True,
        "size": 11,
    }  # fmt: skip
