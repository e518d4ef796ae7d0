"""What every backend shares: the error a backend raises, and the cores this process may use."""
from __future__ import annotations

import os

from magiccards.errors import UserError


class BackendError(UserError):
    """A backend that was asked for cannot run this model directory."""


def threads_given() -> int:
    """The cores this process may use (the CPU affinity mask: a container's --cpuset-cpus)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
