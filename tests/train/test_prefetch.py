"""The training thread's batch prefetcher: order, errors, early stop, and where spent batches die."""
import threading
import time

import pytest
from magiccards.train.prefetch import Prefetcher


class Batch:
    freed_by: dict = {}

    def __init__(self, n):
        self.n = n

    def __del__(self):
        Batch.freed_by[self.n] = threading.current_thread().name


def _threads():
    return [t for t in threading.enumerate() if t.name == "magiccards-prefetch"]


def test_yields_every_item_in_order_and_frees_spent_ones_in_its_thread():
    Batch.freed_by.clear()
    seen = []
    for batch in Prefetcher(Batch(i) for i in range(8)):
        seen.append(batch.n)
        time.sleep(0.01)
    assert seen == list(range(8))
    # spent batches are dropped by the prefetch thread, not the consumer's (the last few go at the end)
    assert all(Batch.freed_by.get(i) == "magiccards-prefetch" for i in range(5)), Batch.freed_by
    assert not _threads()


def test_errors_reach_the_consumer():
    def items():
        yield 1
        raise ValueError("corrupt record 7")

    with pytest.raises(ValueError, match="corrupt record 7"):
        list(Prefetcher(items()))
    assert not _threads()


def test_stopping_early_stops_the_thread():
    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    for n in Prefetcher(endless()):
        if n == 3:
            break
    time.sleep(0.3)
    assert not _threads() and len(produced) <= 6
