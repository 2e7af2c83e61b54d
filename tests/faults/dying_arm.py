"""A residual fusion whose worker process dies, for `test_dying_workers` and the Ray case in `test_executor`
(not a test module: worker processes import it to unpickle their fits).

`DyingFusion.moment` (``$OSTEO_TEST_DIE`` when the module is imported, as in a local worker) says when
a fit outside the command's own process kills its process with SIGKILL:

- ``training``: once its progress bar exists (the bar's lock is a named semaphore of the worker, which
  the resource tracker reports as leaked when the worker dies);
- ``sending``: after writing the start of a result into the pool's result queue while holding the
  queue's lock, as a worker killed while its result crosses the pipe.

Just before dying it appends the time to the file ``died`` names (``$OSTEO_TEST_DIED``).
"""

from __future__ import annotations

import gc
import os
import signal
import struct
import time
from multiprocessing.queues import SimpleQueue

from osteo_helpers.arms.networks import FusionArm

DIE_ENV, DIED_ENV, MAIN_ENV = "OSTEO_TEST_DIE", "OSTEO_TEST_DIED", "OSTEO_TEST_MAIN_PID"


def _send_part_of_a_result() -> None:
    """Hold the result queue's lock and write the header of a 1 MiB message and 1 kB of it."""
    queue = next(o for o in gc.get_objects() if type(o) is SimpleQueue)
    queue._wlock.acquire()
    os.write(queue._writer.fileno(), struct.pack("!i", 1 << 20) + bytes(1024))


class DyingFusion(FusionArm):
    moment: str = os.environ.get(DIE_ENV, "")
    died: str = os.environ.get(DIED_ENV, "")
    main_pid: int = int(os.environ.get(MAIN_ENV, "0") or 0)

    def _trainer(self, t_fit, desc):
        made = super()._trainer(t_fit, desc)
        if self.moment and self.fixed_epochs is None and os.getpid() != self.main_pid:
            if self.moment == "sending":
                _send_part_of_a_result()
            with open(self.died, "a") as out:
                out.write(f"{time.time()!r}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return made


def command(argv: list[str]) -> int:
    """The command line with `DyingFusion` as the fusion arm (the tests run it as a new process)."""
    from osteo_helpers.arms import ARM_REGISTRY
    from osteo_helpers.cli import main

    os.environ[MAIN_ENV] = str(os.getpid())
    DyingFusion.main_pid = os.getpid()
    ARM_REGISTRY["fusion"] = DyingFusion
    return main(argv)
