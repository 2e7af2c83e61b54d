"""`osteo` and `python -m osteo_helpers`. Ctrl-C is one line and exit 130 from the first instruction on: the
handler is installed before anything else is imported; then `cli.main` dispatches to the command's module."""

import atexit
import os
import signal

from .errors import INTERRUPTED_STATUS, stop

signal.signal(signal.SIGINT, stop)

import contextlib  # noqa: E402  (after the handler: nothing before it may take time)
import sys  # noqa: E402
import threading  # noqa: E402

from .cli import main as dispatch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """The command's exit status (`run` makes it a process's). Once the command has finished, Ctrl-C is
    ignored: the interpreter's shutdown puts back the default handler of a Python one, and an interrupt
    then killed the finished process (status -2) instead of letting it exit with its own status. An
    interrupted command leaves at once with 130."""
    status = dispatch(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if status == INTERRUPTED_STATUS:  # cleaned up already; Python 3.11 remembers an interrupt that crossed a
        sys.stdout.flush()  # C extension's import, though caught, and its shutdown then re-sends SIGINT (-2)
        sys.stderr.flush()
        os._exit(status)
    return status


def run() -> None:
    """`osteo` as a process: the command, then the interpreter's own exit steps in its order (wait for the threads
    and shut the worker pools down, run the exit handlers: temporary folders, logs; flush the output), then the
    exit without its teardown: clearing the modules of torch, pandas and scikit-learn took 0.6-0.7 s after the
    command had printed its last line (a fifth of a `predict`)."""
    status = main()
    threading._shutdown()  # what Python does first at exit: a process pool's shutdown is registered here
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader gone (`osteo ... | head`): the status still stands
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
