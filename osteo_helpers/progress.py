"""Progress events from inside a notebook to the command that runs it.

A notebook executed by papermill runs in its own kernel, whose output the user does not see.
The pipeline therefore sets ``OSTEO_PROGRESS_FILE``; the package appends one JSON line per
event (arm planned, fit finished, epoch finished, note) and the pipeline follows the file
and prints what is happening; the file stays in the run folder as its log, and the notebook's
own output (the book's page) holds none of it. Without the variable (a notebook run on its own, the `ablation`
command, a script) the same events are printed as plain lines where they happen: tqdm bars are
drawn only on a terminal (`show_progress`), so an executed notebook or a log file holds a
few lines of progress, not megabytes of redrawn bars.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PROGRESS_ENV = "OSTEO_PROGRESS_FILE"

_silenced = False
_interrupted = False  # a Ctrl-C arrived inside `interruptible`


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Drop the fit events of the work inside (notes still pass): for loops of many quick runs,
    such as label permutations, that report their own progress once per run instead."""
    global _silenced
    before, _silenced = _silenced, True
    try:
        yield
    finally:
        _silenced = before


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C stops the work inside for certain: KeyboardInterrupt at once, as Python does. Python drops an
    exception raised while a finaliser or a weak-reference callback runs (an import's module lock has one) and
    prints it as "Exception ignored in ..."; such a lost interrupt is printed nowhere and raised again at the
    next progress event, or as the work ends. Main thread only; elsewhere a no-op."""
    global _interrupted
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame) -> None:
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    def on_unraisable(unraisable: Any) -> None:
        global _interrupted
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _interrupted = True  # raised again below, or at the next progress event
        else:
            hook(unraisable)

    previous, hook, _interrupted = signal.signal(signal.SIGINT, on_sigint), sys.unraisablehook, False
    sys.unraisablehook = on_unraisable
    try:
        yield
        if _interrupted:  # lost in a finaliser while the work ran on to its end
            raise KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
        _interrupted = False


def report(event: str, **fields: Any) -> None:
    """Append one event (``arm``, ``fold``, ``epoch``, ``note``, ...) to the progress file; without one,
    print it as a plain line here (notes are printed by `note` itself). Within `interruptible`, the
    point where a lost Ctrl-C is raised again."""
    global _interrupted
    if _interrupted:
        _interrupted = False  # delivered here
        raise KeyboardInterrupt
    if _silenced and event != "note":
        return
    record = {"time": time.time(), "event": event, **fields}
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        if event != "note":
            _LOCAL(record)
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


def note(message: str) -> None:
    """A one-line message for the person running the analysis: to the command that follows the notebook
    (the pipeline prints it and keeps it in the run's progress log), else printed where it happens. Never
    into a notebook the pipeline runs: the book holds the analysis, not its log."""
    if not os.environ.get(PROGRESS_ENV):
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
        elif kind == "arm" and event.get("reused"):
            self.write(f"{prefix}{event['arm']} ({event['task']}{event.get('tag', '')}): reusing {event['reused']} "
                       f"of {event['folds']} folds")
        elif kind == "note":
            self.write(f"{prefix}{event['message']}")


#: prints the events of a process that no pipeline follows (a notebook on its own, a command, a script)
_LOCAL = Printer(write=lambda line, end="\n": print(line, end=end, flush=True))


def show_progress(progress: bool = True) -> bool:
    """tqdm bars only on a terminal, unless asked off (or TQDM_DISABLE=1). A notebook's output and a log
    file get plain progress lines instead (`report`, `track`): redrawn bars there are megabytes of text."""
    return (progress and sys.stderr.isatty()
            and os.environ.get("TQDM_DISABLE", "").lower() not in {"1", "true", "yes"})


def track(items: Iterable[T], desc: str, total: int | None = None, every: float = 30.0) -> Iterator[T]:
    """Iterate with a tqdm bar on a terminal; elsewhere (notebooks, logs) a plain line every ``every``
    seconds with how many are done and about how long is left."""
    from tqdm.auto import tqdm  # deferred: imports tqdm

    total = total if total is not None else (len(items) if isinstance(items, Sized) else None)
    if show_progress():
        yield from tqdm(items, desc=desc, total=total, leave=False)
        return
    start = last = time.time()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.time()
        if now - last >= every and (total is None or done < total):
            left = f", about {_duration((now - start) / done * (total - done))} left" if total else ""
            note(f"{desc}: {done}" + (f" of {total}" if total else "") + left)
            last = now
