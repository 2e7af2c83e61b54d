"""Library warnings kept off the terminal: a command's stderr holds its own lines only.

Libraries speak on stderr as they work: pydicom warns of a truncated file, torch of a pickle
protocol, Pillow of a large image, matplotlib of its cache folder, Ray of its token. What a user
needs from them is in the command's own message (the image readers turn a truncated DICOM into
"truncated"; the pixel limit names the image); the rest would bury that one line. While a command
runs (`routed`), and for good in a worker process (`route`), every Python warning and every log
record that no handler takes (`logging.lastResort`, where Python would print it) goes where
``$OSTEO_WARNINGS`` says:

- unset or empty: nowhere;
- ``stderr``: to stderr, as Python prints them (for debugging);
- anything else: appended to that file, one line each with the time and the process id.

Commands have no log file of their own (a run's notebooks keep their warnings in their outputs), so
the file is the one place to collect them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

WARNINGS_ENV = "OSTEO_WARNINGS"


def _destination() -> Callable[[str], None] | None:
    """Where a message goes (None: left as Python does it, on stderr)."""
    where = os.environ.get(WARNINGS_ENV, "").strip()
    if where == "stderr":
        return None
    if not where:
        return lambda line: None

    def append(line: str) -> None:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        try:
            with open(where, "a", encoding="utf-8") as log:
                log.write(f"{stamp} pid {os.getpid()} {line}\n")
        except OSError:
            pass  # a log that cannot be written must not end the command

    return append


class _Handler(logging.Handler):
    def __init__(self, send: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        self.send(f"{record.name} {record.levelname}: {' '.join(record.getMessage().split())}")


def route() -> Callable[[], None]:
    """Send warnings and unhandled log records where ``$OSTEO_WARNINGS`` says; a function that undoes it."""
    send = _destination()
    if send is None:
        return lambda: None
    shown, last_resort = warnings.showwarning, logging.lastResort

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        send(f"{category.__name__}: {' '.join(str(message).split())} ({filename}:{lineno})")

    warnings.showwarning, logging.lastResort = show, _Handler(send)

    def undo() -> None:
        warnings.showwarning, logging.lastResort = shown, last_resort

    return undo


@contextmanager
def routed() -> Iterator[None]:
    """`route` for the block (a command)."""
    undo = route()
    try:
        yield
    finally:
        undo()
