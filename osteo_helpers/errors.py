"""The errors a user can act on, and the exit status each means (the README's "Exit status").

Plain classes with no imports, at the bottom of the package: the command line chooses an exit code from
them without importing a model, a table reader or a notebook runner, so an error prints at once. Errors
raised before any work (exit 2) derive from `UsageError` or are about input that cannot be read; errors of
work that started and failed are exit 1.
"""

from __future__ import annotations

import os
import signal
import sys


class UsageError(ValueError):
    """Input a command cannot start with (an option, a setting, a folder).

    Raised before any work; the command line prints it as one line and exits with status 2.
    """


class DataNotFoundError(FileNotFoundError):
    """The dataset is not where any of the documented settings point."""


class DataValidationError(ValueError):
    """Raw data that cannot be interpreted; the message names the file, row and column."""


class ImageReadError(DataValidationError):
    """An image file that cannot be read or decoded: the one image-read error of the project."""


class DatasetLayoutError(DataValidationError, UsageError):
    """A dataset folder without its class folders or without images: nothing to analyse (exit 2)."""


class TableColumnError(DataValidationError, UsageError):
    """A cohort table that lacks a column its spec names, holds one it must not, or has no data rows: nothing
    to analyse (exit 2)."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had (offline, missing file)."""


class ExecutorError(RuntimeError):
    """Fits could not run to the end (a worker died, the cluster went away); finished folds are kept."""


class PipelineError(RuntimeError):
    """A notebook (or the book build) failed; the message names the notebook and the cell."""

    def __init__(self, message: str, notebook: str | None = None, cell: int | None = None,
                 error: str | None = None) -> None:
        super().__init__(message)
        self.notebook, self.cell, self.error = notebook, cell, error


#: exit status 2: the command cannot start with this input (an unreadable image is such input, as a bad option is)
BAD_INPUT = (UsageError, DataNotFoundError, WeightsUnavailableError, ImageReadError)
#: exit status 1: the data or the work turned out bad after it started
FAILED = (DataValidationError, PipelineError, ExecutorError, FileNotFoundError, FileExistsError)


def exit_status(exc: BaseException) -> int | None:
    """2: the command cannot start with this input; 1: the data or a run failed; None: a bug (traceback)."""
    if isinstance(exc, BAD_INPUT):
        return 2
    if isinstance(exc, FAILED):
        return 1
    return None


#: what Ctrl-C prints (exit status 130) for a command whose finished work a second run picks up (folds, fits,
#: executed notebooks and cached images are kept, half-written files are not)
INTERRUPTED = "interrupted; run the same command again to resume"
#: the commands that resume: the others (predict, validate, the checks) have nothing to pick up
RESUMABLE = ("run", "ablation", "train-final")
#: the exit status of an interrupted command
INTERRUPTED_STATUS = 130


def interrupted_line(command: str | None) -> str:
    """The one line Ctrl-C prints for ``command``; after a line break on a terminal, which has echoed ``^C``."""
    return ("\n" if sys.stderr.isatty() else "") + (INTERRUPTED if command in RESUMABLE else "interrupted")


def stop(signum: int, frame: object) -> None:
    """Ctrl-C outside a command's own work (starting, parsing, reporting an error): the one line, exit 130, at
    once. Installed before anything is imported, so that no interrupt ever ends in a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)  # not parsed yet, perhaps
    sys.stderr.write(f"{interrupted_line(command)}\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED_STATUS)
