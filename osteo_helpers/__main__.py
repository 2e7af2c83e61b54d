"""`osteo` and `python -m osteo_helpers`. Ctrl-C is one line and exit 130 from the first instruction on: the
handler is installed before anything else is imported; then `cli.main` dispatches to the command's module."""

import signal

from .errors import stop

signal.signal(signal.SIGINT, stop)

import sys  # noqa: E402  (after the handler: nothing before it may take time)

from .cli import INTERRUPTED, main  # noqa: E402,F401  (INTERRUPTED: the line Ctrl-C prints, for callers)

if __name__ == "__main__":
    sys.exit(main())
