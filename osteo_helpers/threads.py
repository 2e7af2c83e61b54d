"""How many torch threads a fit uses: the profile's number, else the executor's share of the cores, else
every core this process may run on. Ground floor (standard library only): the executor sets the share,
training and the feature encoder read it."""

from __future__ import annotations

import os

#: torch threads of one fit when the profile leaves ``num_threads`` none (set by the executor's workers)
THREADS_ENV = "OSTEO_FIT_THREADS"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fit_threads(num_threads: int | None) -> int:
    """torch threads for one fit: the profile's number when it gives one (numbers on the CPU may depend on
    it, so it is part of the fold's fingerprint); none: the executor's share of the cores
    (``$OSTEO_FIT_THREADS``), else every core this process may use."""
    if num_threads is not None:
        return num_threads
    share = os.environ.get(THREADS_ENV, "")
    return int(share) if share.isdigit() and int(share) > 0 else available_cores()
