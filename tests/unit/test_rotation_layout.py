"""The server-side layout of a key rotation: part 1 is the minimum part (new header + re-sent
payload), the rest is copied by the server within the part count and part size limits."""

from __future__ import annotations

import pytest

from bascule.connectors.base import Capabilities, GiB, MiB
from bascule.migration.rotation import copy_layout

S3 = Capabilities(min_part_size=5 * MiB, max_part_size=5 * GiB, max_parts=10_000)


def test_one_gib_object_sends_one_minimum_part_and_copies_the_rest() -> None:
    old_hlen, new_hlen = 168, 266  # one recipient before, two after
    size = old_hlen + 16 + GiB + 16 * (GiB // (64 * 1024))
    layout = copy_layout(old_hlen, size, new_hlen, S3)
    assert layout is not None
    assert layout.first_part == 5 * MiB  # all the client sends, header included
    assert layout.resend == 5 * MiB - new_hlen
    assert len(layout.copies) == 1 and layout.copies[0].start == old_hlen + layout.resend
    assert layout.first_part + layout.copied == size - old_hlen + new_hlen


def test_copies_respect_the_part_size_and_count_limits() -> None:
    caps = Capabilities(min_part_size=10, max_part_size=20, max_parts=4)
    layout = copy_layout(5, 70, 5, caps)  # part 1: 10 bytes (5 re-sent), 60 to copy
    assert layout is not None
    assert [r.length for r in layout.copies] == [20, 20, 20]
    assert layout.copies[0].start == 10 and layout.copies[-1].end == 70
    assert copy_layout(5, 76, 5, caps) is None  # 66 to copy: 4 copies + part 1 > 4 parts


@pytest.mark.parametrize("payload", [0, 100, 5 * MiB - 168])
def test_objects_within_one_minimum_part_are_not_copied(payload: int) -> None:
    assert copy_layout(168, 168 + payload, 168, S3) is None
