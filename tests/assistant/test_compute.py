"""Replies produced on the serving thread and streamed to the threads that read them."""

from __future__ import annotations

import threading
from collections.abc import Generator

from assistant import compute


def _counting(threads: list[int], closed: list[bool], fail_at: int | None = None) -> Generator[int, None, None]:
    try:
        for n in range(5):
            threads.append(threading.get_ident())
            if n == fail_at:
                raise ValueError("broken step")
            yield n
    finally:
        closed.append(True)


def _serve_while(reader: threading.Thread) -> None:
    """Serve on this test's thread, as ``ragtune chat``'s main thread does, until ``reader`` is done."""

    def running() -> bool:
        if reader.ident is None:
            reader.start()  # once serving is set up
        return reader.is_alive()

    compute.serve(running)
    reader.join()


def test_without_a_serving_thread_a_generator_runs_where_it_is_read() -> None:
    threads: list[int] = []
    assert list(compute.streamed(_counting(threads, []))) == [0, 1, 2, 3, 4]
    assert set(threads) == {threading.get_ident()}


def test_a_reply_read_by_another_thread_is_produced_on_the_serving_thread() -> None:
    threads: list[int] = []
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(compute.streamed(_counting(threads, []))))
    _serve_while(reader)
    assert got == [0, 1, 2, 3, 4]
    assert set(threads) == {threading.get_ident()}, "every step ran on the serving thread"


def test_a_reader_that_stops_ends_the_generation_and_errors_reach_the_reader() -> None:
    closed: list[bool] = []
    steps: list[int] = []
    stopped = threading.Event()

    def gated() -> Generator[int, None, None]:
        try:
            for n in range(5):
                steps.append(n)
                yield n
                stopped.wait(10)  # the reader has closed its stream by the time the second step runs
        finally:
            closed.append(True)

    def read_one() -> None:
        events = compute.streamed(gated())
        assert next(events) == 0
        events.close()
        stopped.set()

    _serve_while(threading.Thread(target=read_one))
    assert closed == [True] and steps == [0, 1], "the generation ended one step after the reader stopped"

    errors: list[BaseException] = []

    def read_broken() -> None:
        try:
            list(compute.streamed(_counting([], [], fail_at=1)))
        except ValueError as e:
            errors.append(e)

    _serve_while(threading.Thread(target=read_broken))
    assert [str(e) for e in errors] == ["broken step"]
