"""One batch ahead in a thread: the trainer's side of the data loader, off the training thread.

With loader processes, each batch crosses in shared memory: receiving it (a socket per array,
mapping the segment) and freeing the spent one (unmapping ~9 MB for a 16-image SSD batch) cost the
training thread 5-15 ms per step (bench/bench_train.py pipeline). `Prefetcher` does both in a
thread while the training step computes; MXNet and the socket calls release the GIL.
"""
from __future__ import annotations

import queue
import threading

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterate `iterable` one item ahead in a daemon thread; errors re-raise in the consumer.

    Spent items are handed back to the thread and dropped there, one item late (the consumer's loop
    variable still refers to the newest one), so their memory is freed off the training thread.
    Closing the iteration early (break, exception, SIGTERM) stops the thread.
    """

    def __init__(self, iterable, depth: int = 1):
        self._iterable = iterable
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._spent: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        held = []
        try:
            for item in self._iterable:
                while not self._spent.empty():
                    held.append(self._spent.get())
                del held[:-1]  # free all but the newest spent item
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failed(error))

    def __iter__(self):
        thread = threading.Thread(target=self._run, name="magiccards-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = self._ready.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
                self._spent.put(item)
                del item
        finally:
            self._stop.set()
            thread.join(timeout=5)
