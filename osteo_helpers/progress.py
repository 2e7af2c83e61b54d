"""Progress events from inside a notebook to the command that runs it.

A notebook executed by papermill runs in its own kernel, whose output the user does not see.
The pipeline therefore sets ``OSTEO_PROGRESS_FILE``; the package appends one JSON line per
event (arm started, fold finished, epoch finished, note) and the pipeline follows the file
and prints what is happening. Interactive sessions see tqdm bars instead; without the
variable, `report` does nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

PROGRESS_ENV = "OSTEO_PROGRESS_FILE"


def report(event: str, **fields: Any) -> None:
    """Append one event (``arm``, ``fold``, ``epoch``, ``note``, ...) to the progress file, if any."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    line = json.dumps({"time": time.time(), "event": event, **fields}, default=str)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def note(message: str) -> None:
    """A one-line message for the person running the analysis (also printed in the notebook)."""
    print(message)
    report("note", message=message)


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events written since byte ``offset`` (complete lines only) and the new offset."""
    path = Path(path)
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    events = []
    for line in chunk[:end].splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events, offset + end
