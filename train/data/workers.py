"""Process pools for the dataset tools (synth, pack)."""
from __future__ import annotations

import multiprocessing
import sys


def pool(processes: int, initializer=None, initargs=()) -> multiprocessing.pool.Pool:
    """A pool of `processes` workers: forked (fast start) unless MXNet is loaded in this process.

    Forking a process in which MXNet's engine or OpenMP threads run can leave the child blocked on a
    lock one of those threads held (seen when `pack` ran in a process that had trained a network), so
    such a process starts its workers from a clean fork server instead.
    """
    method = "forkserver" if "mxnet" in sys.modules else "fork"
    return multiprocessing.get_context(method).Pool(processes, initializer=initializer, initargs=initargs)
