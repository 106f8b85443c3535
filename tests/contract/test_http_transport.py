"""The data path's libcurl transport against a real S3 server (moto): connections are kept
and reused, and an idle connection holds nothing of the request it served."""

from __future__ import annotations

import io
import sys
from typing import cast

from bascule.connectors.base import ByteRange
from tests.conftest import S3Server, s3_connector_on

MiB = 1024 * 1024


def test_an_idle_connection_keeps_no_body_and_is_reused(moto_s3: S3Server) -> None:
    connector = s3_connector_on(moto_s3)
    rest = connector._data_path()
    body = b"x" * (8 * MiB)
    before = sys.getrefcount(body)
    for i in range(5):
        rest.put(f"k{i}", body, {}, {})
    assert sys.getrefcount(body) == before  # the pooled handle let go of the request's body
    idle = rest._transport._idle
    assert len(idle) == 1  # five requests in a row, one connection's handle, back in the pool


def test_a_stream_closed_early_aborts_and_the_next_request_still_works(
    moto_s3: S3Server,
) -> None:
    connector = s3_connector_on(moto_s3)
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB: streamed, not read whole
    connector.put("big", io.BytesIO(data), len(data))
    stream = connector.open_read("big", ByteRange(0, len(data)))
    assert stream.read(1000) == data[:1000]
    stream.close()  # the transfer is abandoned mid-body, its connection dropped
    again = connector.open_read("big", ByteRange(len(data) - 10, 10))
    assert again.read() == data[-10:]


def test_a_part_handed_as_a_view_of_a_reused_buffer_arrives_whole(moto_s3: S3Server) -> None:
    connector = s3_connector_on(moto_s3)
    first = bytes(range(256)) * (24 * 1024)  # 6 MiB: several pieces of the upload buffer
    second = bytes(reversed(range(256))) * (20 * 1024)  # 5 MiB, in the same buffer
    buffer = bytearray(len(first))
    writer = connector.open_writer("parts", {})
    receipts = []
    for number, data in ((1, first), (2, second)):
        buffer[: len(data)] = data
        receipts.append(writer.write_part(number, memoryview(buffer)[: len(data)]))
    buffer[:] = bytes(len(buffer))  # the buffer is reused: what was sent is already sent
    writer.commit(receipts)
    assert connector.open_read("parts").read() == first + second
    assert len(connector._data_path()._transport._idle) == 1  # its handle reset and pooled


def test_a_streamed_body_fills_each_read_across_callbacks_and_ends_cleanly(
    moto_s3: S3Server,
) -> None:
    """The reader copies from many callbacks into one buffer per call: every byte once, in
    order, whatever the buffer's size against the callbacks' and the batches'."""
    connector = s3_connector_on(moto_s3)
    data = bytes(range(251)) * (40 * 1024 + 3)  # about 10 MiB, a size with no round factor
    connector.put("big", io.BytesIO(data), len(data))
    stream = cast(io.RawIOBase, connector.open_read("big", ByteRange(0, len(data))))
    buffer = bytearray(MiB + 7)
    got = bytearray()
    while n := stream.readinto(buffer):
        got += buffer[:n]
    assert bytes(got) == data
    assert stream.readinto(buffer) == 0  # the end stays the end
    stream.close()
    assert len(connector._data_path()._transport._idle) >= 1  # finished: its handle pooled
