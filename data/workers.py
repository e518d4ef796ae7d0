"""Process pools for the dataset tools (synth, pack), safe to interrupt with Ctrl-C."""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator

POLL_SECONDS = 0.1


class WorkerPool:
    """A process pool whose results are read with `map`; Ctrl-C is honoured between results.

    A KeyboardInterrupt raised at a random point inside `multiprocessing.Pool` (while it starts its
    workers, or holds one of its locks) can leave `terminate()` waiting forever; so while the pool
    lives, Ctrl-C only sets a flag, and `map` raises KeyboardInterrupt at a point where the pool can
    be torn down. Workers ignore Ctrl-C themselves: one line is reported, not a traceback per worker.
    """

    def __init__(self, pool: multiprocessing.pool.Pool, interrupted: threading.Event):
        self._pool, self._interrupted = pool, interrupted

    def map(self, func: Callable, items: Iterable, ordered: bool = True, chunksize: int = 1) -> Iterator:
        """func(item) for every item, computed in the workers; in item order unless `ordered` is False."""
        chunks = ((func, chunk) for chunk in _chunks(items, chunksize))
        results = (self._pool.imap if ordered else self._pool.imap_unordered)(_apply, chunks)  # one chunk a task
        while True:
            if self._interrupted.is_set():
                raise KeyboardInterrupt
            try:
                yield from results.next(timeout=POLL_SECONDS)
            except StopIteration:
                return
            except multiprocessing.TimeoutError:
                continue


@contextlib.contextmanager
def pool(processes: int, initializer=None, initargs=()) -> Iterator[WorkerPool]:
    """A pool of `processes` workers: forked (fast start) unless MXNet is loaded in this process.

    Forking a process in which MXNet's engine or OpenMP threads run can leave the child blocked on a
    lock one of those threads held (seen when `pack` ran in a process that had trained a network), so
    such a process starts its workers from a clean fork server instead.
    """
    interrupted = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set()) if in_main_thread else None
    try:
        method = "forkserver" if "mxnet" in sys.modules else "fork"
        workers = multiprocessing.get_context(method).Pool(processes, initializer=_start_worker,
                                                           initargs=(initializer, initargs))
        try:
            yield WorkerPool(workers, interrupted)
        finally:
            workers.terminate()
            workers.join()
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt


def _chunks(items: Iterable, size: int) -> Iterator[tuple]:
    it = iter(items)
    while chunk := tuple(itertools.islice(it, size)):
        yield chunk


def _apply(task: tuple[Callable, tuple]) -> list:
    func, chunk = task
    return [func(item) for item in chunk]


def _start_worker(initializer, initargs) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)
