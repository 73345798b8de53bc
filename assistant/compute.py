"""A long-running server's replies, produced on one thread: the main one.

On a CPU, each thread that runs torch ops keeps an OpenMP team of its own, and
once the process has more OpenMP threads than cores, libgomp lets idle workers
sleep at once, so every parallel op pays for waking them. The web app's main
thread loads the model (a team), and Gradio reads each reply from a worker thread
(a second team): the bundled model decoded at 81-83 ms a token that way against
51-52 ms on the main thread. So ``ragtune chat`` lends its main thread, which
otherwise only waits for Ctrl-C, to :func:`serve`, and :func:`streamed` has each
reply's generator run there while its items stream back to the thread that reads
them. Replies are produced one at a time, as the model's lock had them anyway.
Without a serving thread (the CLI, tests), a generator runs where it is read.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

from assistant.errors import AssistantError

__all__ = ["serve", "streamed"]

T = TypeVar("T")

_serving: queue.SimpleQueue[_Task] | None = None  # the tasks of the thread in serve(), while it serves


class _Task:
    """One generator run on the serving thread; its items, an error or the end go to ``out``."""

    def __init__(self, items: Iterator[Any]) -> None:
        self.items = items
        self.out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.cancelled = threading.Event()

    def __call__(self) -> None:
        try:
            if self.cancelled.is_set():  # the reader stopped before its turn came
                return
            for item in self.items:
                self.out.put(("item", item))
                if self.cancelled.is_set():  # the reader stopped: end the generation (closed below)
                    break
        except BaseException as e:  # handed to the reader; Ctrl-C also stops serving
            self.out.put(("error", e))
            if not isinstance(e, Exception):
                raise
        finally:
            close = getattr(self.items, "close", None)
            if close is not None:
                close()
        self.out.put(("end", None))

    def abandon(self) -> None:
        self.out.put(("error", AssistantError("the server is stopping: ask again once it is back")))


def serve(running: Callable[[], bool]) -> None:
    """Produce the generators handed to :func:`streamed`, on this thread, while ``running()`` is true.

    Ctrl-C ends it (the reply being produced gets the interruption as its error);
    replies still waiting are told the server is stopping.
    """
    global _serving
    tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
    _serving = tasks
    try:
        while running():
            try:
                task = tasks.get(timeout=0.1)
            except queue.Empty:
                continue
            task()
    finally:
        _serving = None
        while not tasks.empty():
            tasks.get_nowait().abandon()


def streamed(items: Generator[T, None, None]) -> Generator[T, None, None]:
    """``items`` as they are produced on the serving thread, or read here when none serves.

    Closing the returned generator ends ``items`` at its next item.
    """
    tasks = _serving
    if tasks is None or threading.current_thread() is threading.main_thread():
        yield from items
        return
    task = _Task(items)
    tasks.put(task)
    try:
        while True:
            try:
                kind, value = task.out.get(timeout=1.0)
            except queue.Empty:
                if _serving is not tasks:  # serving stopped between handing this over and producing it
                    task.abandon()
                continue
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        task.cancelled.set()
