"""A bug is not a storage error: only the SDK's own exceptions are mapped.

httpx's `test_httpcore_all_exceptions_mapped`, turned around: on every backend of the contract
suite, a programming error raised inside the SDK's call path (here a `TypeError`, injected by
replacing the SDK's transport, the filesystem calls or the subprocess launcher) must leave the
connector unchanged, never as a `ConnectorError` (which the CLI would print as "storage error",
exit 3, and the retry layer might retry).
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable
from typing import Any, NoReturn

import botocore.client
import pytest
from azure.core.pipeline.transport import RequestsTransport

from bascule.connectors import http
from bascule.connectors.base import Connector, PartWriterOpener
from bascule.errors import ConnectorError
from tests.conftest import Backend

BUG = "an injected programming error"
Inject = Callable[[pytest.MonkeyPatch, Connector], None]


def boom(*args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(BUG)


class BrokenStore(dict[str, Any]):
    """The memory connector's storage, broken the way a bug would break it."""

    get = __getitem__ = __setitem__ = __delitem__ = __iter__ = boom
    __contains__ = pop = items = keys = values = boom


def _inject_s3(mp: pytest.MonkeyPatch, _: Connector) -> None:
    mp.setattr(botocore.client.BaseClient, "_make_api_call", boom)
    # the data path (object reads, writes and listings) sends through libcurl
    mp.setattr(http.Transport, "request", boom)
    mp.setattr(http.Transport, "stream", boom)


def _inject_azure(mp: pytest.MonkeyPatch, _: Connector) -> None:
    mp.setattr(RequestsTransport, "send", boom)
    mp.setattr(http.Transport, "request", boom)  # the data path (Get Blob, List Blobs)
    mp.setattr(http.Transport, "stream", boom)


def _inject_rclone(mp: pytest.MonkeyPatch, _: Connector) -> None:
    mp.setattr(subprocess, "run", boom)
    mp.setattr(subprocess, "Popen", boom)


def _inject_local(mp: pytest.MonkeyPatch, _: Connector) -> None:
    for name in ("stat", "scandir", "mkdir", "replace", "link", "unlink"):
        mp.setattr(os, name, boom)
    mp.setattr(io, "open", boom)


def _inject_memory(mp: pytest.MonkeyPatch, connector: Connector) -> None:
    mp.setattr(connector, "_objects", BrokenStore())
    mp.setattr(connector, "_uploads", BrokenStore())


INJECT: dict[str, Inject] = {
    "local": _inject_local,
    "memory": _inject_memory,
    "azure_blob": _inject_azure,
    "s3_rclone": _inject_s3,
    "s3_moto": _inject_s3,
    "rclone": _inject_rclone,
}


def assert_propagates(
    connector: Connector, inject: Inject, action: Callable[[], object], what: str
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        inject(mp, connector)
        try:
            action()
        except BaseException as exc:  # the type is what is under test
            error: BaseException = exc
        else:
            raise AssertionError(f"{what}: the injected bug raised nothing")
    assert type(error) is TypeError, f"{what}: {type(error).__name__}: {error}"
    assert str(error) == BUG
    assert not isinstance(error, ConnectorError)
    assert not connector.should_retry(error), f"{what}: a bug must not be retried"


def operations(connector: Connector) -> dict[str, Callable[[], object]]:
    ops: dict[str, Callable[[], object]] = {
        "list": lambda: list(connector.list()),
        "stat": lambda: connector.stat("present.bin"),
        "open_read": lambda: connector.open_read("present.bin").read(),
        "put": lambda: connector.put("new.bin", io.BytesIO(b"n"), 1),
        "delete": lambda: connector.delete("present.bin"),
    }
    if isinstance(connector, PartWriterOpener) and connector.capabilities.resumable_parts:
        opener = connector
        ops["open_writer"] = lambda: opener.open_writer("parts.bin")
        ops["list_uploads"] = lambda: list(opener.list_uploads())
    return ops


def test_a_bug_in_the_sdk_call_path_propagates_unchanged(backend: Backend) -> None:
    connector = backend.make()
    connector.put("present.bin", io.BytesIO(b"v1"), 2)
    for what, action in operations(connector).items():
        assert_propagates(connector, INJECT[backend.name], action, f"{backend.name} {what}")
    assert connector.stat("present.bin").size == 2  # nothing was half-done


# Reads stream after the call returned: the stream wrappers map errors too, so a bug there must
# come out unchanged as well. Both data paths (S3 GetObject, Azure Get Blob) stream a body of
# this size through libcurl.
BODY_SIZE = 5 * 1024 * 1024


def _break_body(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(http.ReplyStream, "readinto", boom)


BREAK_BODY: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "azure_blob": _break_body,
    "s3_rclone": _break_body,
    "s3_moto": _break_body,
}


@pytest.mark.parametrize("backend", sorted(BREAK_BODY), indirect=True)
def test_a_bug_while_reading_a_body_propagates_unchanged(backend: Backend) -> None:
    connector = backend.make()
    connector.put("big.bin", io.BytesIO(b"b" * BODY_SIZE), BODY_SIZE)
    stream = connector.open_read("big.bin")
    try:
        with pytest.MonkeyPatch.context() as mp:
            BREAK_BODY[backend.name](mp)
            with pytest.raises(TypeError, match=BUG):
                while stream.read(1024 * 1024):
                    pass
    finally:
        stream.close()
