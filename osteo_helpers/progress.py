"""Progress events from inside a notebook to the command that runs it.

A notebook executed by papermill runs in its own kernel, whose output the user does not see.
The pipeline therefore sets ``OSTEO_PROGRESS_FILE``; the package appends one JSON line per
event (arm planned, fit finished, epoch finished, note) and the pipeline follows the file
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


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Printer:
    """Turns events into lines a person can follow: the fits finished of all those a step trains
    (counted wherever they ran: here, in local workers or on a cluster), with an estimate of the
    time left from the pace so far, and the epoch being trained (live terminals)."""

    def __init__(self, write=print, live: bool = False) -> None:
        self.write, self.live = write, live
        self.context = ""

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        prefix = f"  [{self.context}] " if self.context else "  "
        if kind == "fit_done":
            # a line per fit only where fits take time (networks); quick arms get the summary line only
            done, total = event["done"], event["total"]
            per_fit = event.get("elapsed", 0.0) / max(done, 1)
            if done < total and per_fit >= 1.0:
                where = f"seed {event['seed']} fold {event['fold']}" if "fold" in event else "all rows"
                self.write(f"{prefix}{done}/{total} fits done (last: {event['arm']} ({event['task']}), {where}), "
                           f"about {_duration(per_fit * (total - done))} left")
        elif kind == "fits_done" and event.get("seconds", 0.0) >= 1.0:
            self.write(f"{prefix}{event['total']} fits done in {_duration(event['seconds'])} ({event['executor']})")
        elif kind == "epoch" and self.live:
            self.write(f"{prefix}{event['arm']} ({event['task']}): epoch {event['epoch']}/{event['epochs']}, "
                       f"validation loss {event['val_loss']:.3f}", end="\r")
        elif kind == "note":
            self.write(f"{prefix}{event['message']}")
