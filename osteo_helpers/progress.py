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


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Printer:
    """Turns events into lines a person can follow: the arm, fold and epoch being trained, and an
    estimate of the time left for that arm (from the folds finished so far)."""

    def __init__(self, write=print, live: bool = False) -> None:
        self.write, self.live = write, live
        self.context = ""
        self.arm: dict[str, Any] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        prefix = f"  [{self.context}] " if self.context else "  "
        if kind == "arm":
            self.arm = {**event, "trained": 0}
        elif kind == "fold":
            # a line per fold only where folds take time (networks); quick arms get their "done" line only
            self.arm["trained"] = self.arm.get("trained", 0) + 1
            done, trained = event["fold"] - 1, self.arm["trained"]
            per_fold = event.get("elapsed", 0.0) / max(trained - 1, 1)
            if trained > 1 and per_fold >= 1.0:
                self.write(f"{prefix}{event['arm']} ({event['task']}): training fold {event['fold']}/"
                           f"{event['folds']}, about {_duration(per_fold * (event['folds'] - done))} left for this arm")
        elif kind == "epoch" and self.live:
            self.write(f"{prefix}{event['arm']} ({event['task']}): epoch {event['epoch']}/{event['epochs']}, "
                       f"validation loss {event['val_loss']:.3f}", end="\r")
        elif kind == "arm_done" and self.arm.get("trained"):
            self.write(f"{prefix}{event['arm']} ({event['task']}): done in {_duration(event['seconds'])}")
        elif kind == "note":
            self.write(f"{prefix}{event['message']}")
