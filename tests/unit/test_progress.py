"""ThrottledProgress: counts are handed on at most every interval, and all of them on flush."""

from __future__ import annotations

from bascule.migration.progress import ThrottledProgress


class _Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def add_total(self, objects: int, nbytes: int) -> None:
        self.calls.append(("total", (objects, nbytes)))

    def advance(self, nbytes: int) -> None:
        self.calls.append(("advance", nbytes))

    def object_done(self, key: str) -> None:
        self.calls.append(("done", key))


def test_counts_wait_for_the_interval_then_flush_hands_on_their_sums() -> None:
    sink = _Sink()
    bar = ThrottledProgress(sink, every_s=3600.0)
    for key in ("a", "b", "c"):
        bar.add_total(1, 10)
        bar.advance(10)
        bar.object_done(key)
    assert sink.calls == []  # an hour has not passed
    bar.flush()
    assert sink.calls == [("total", (3, 30)), ("advance", 30), *[("done", "c")] * 3]
    bar.flush()  # nothing new: nothing handed on
    assert len(sink.calls) == 5


def test_with_no_interval_each_count_is_handed_on_at_once() -> None:
    sink = _Sink()
    bar = ThrottledProgress(sink, every_s=0.0)
    bar.add_total(2, 5)
    bar.advance(5)
    assert sink.calls == [("total", (2, 5)), ("advance", 5)]
