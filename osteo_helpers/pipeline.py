"""Execute the notebooks with papermill, record provenance, and build the Jupyter Book.

The executed notebooks and everything they write live in the run folder (by default
outputs/<profile>, or outputs/<profile>-<hash> when settings are overridden: runfolder.run_folder);
the book is assembled from a copy of the book sources plus those notebooks, without their
parameter cells, with a banner on every page when the numbers are not the study's (smoke).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from . import progress
from .config import PROJECT_ROOT, Profile, get_profile
from .data import Cohort
from .errors import (
    PipelineError,  # noqa: F401  (raised here, re-exported)
    UsageError,
)
from .folders import check_output_folder, exclusive
from .provenance import Provenance, run_record
from .runfolder import RunPaths, changed_fields, claim_for_run, holds_run, run_folder, run_identity, why_moved

NOTEBOOKS: tuple[str, ...] = (
    "notebooks/01_eda_manifest.ipynb",
    "notebooks/02_preprocessing.ipynb",
    "notebooks/03_binary_fusion.ipynb",
    "notebooks/04_three_class.ipynb",
    "notebooks/05_ablation.ipynb",
    "notebooks/06_explainability.ipynb",
    "notebooks/07_image_biomarkers.ipynb",
    "notebooks/08_site_validation.ipynb",
    "book/results_summary.ipynb",
    "book/provenance.ipynb",
)
#: the book page that shows provenance.json; the run's status is final before it executes
PROVENANCE_PAGE = "book/provenance.ipynb"
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
#: cell tags of the notebook's own parameters cell and of the one papermill injects
PARAMETER_TAGS = frozenset({"parameters", "injected-parameters"})
SMOKE_BANNER = "smoke profile: the numbers mean nothing"


PROGRESS_FILE = "progress.jsonl"


class Follower:
    """While a notebook runs, follows its progress events (`progress.report`) and prints them; counts the
    folds its arms fitted and reused from the fold cache (``folds``: a notebook's, read and reset by
    `take_folds`), which provenance records."""

    def __init__(self, path: Path, printer: progress.Printer, interval: float = 0.5) -> None:
        self.path, self.printer, self.interval = path, printer, interval
        self.path.write_text("")
        self.offset = 0
        self.folds = {"folds_fitted": 0, "folds_reused": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _drain(self) -> None:
        events, self.offset = progress.read_events(self.path, self.offset)
        for event in events:
            if event.get("event") == "arm":
                self.folds["folds_fitted"] += int(event.get("folds", 0)) - int(event.get("reused", 0))
                self.folds["folds_reused"] += int(event.get("reused", 0))
            self.printer(event)

    def take_folds(self) -> dict[str, int]:
        folds, self.folds = self.folds, {"folds_fitted": 0, "folds_reused": 0}
        return folds

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._drain()

    def __enter__(self) -> Follower:
        os.environ[progress.PROGRESS_ENV] = str(self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drain()
        os.environ.pop(progress.PROGRESS_ENV, None)


class Kernel:
    """One Python kernel for the notebooks of a run: the kernel's start and the package imports are paid
    once, not once per notebook; its namespace is cleared between notebooks (``%reset``, figures
    closed, execution count back to 1), so each notebook starts as it would on its own.

    The kernel talks over local sockets (ipc) in a private folder: nothing listens on a TCP port, and
    the kernel has no "running over TCP without encryption" warning to print.
    """

    #: run (unrecorded) before every notebook but the first: figures closed, then the hard reset of
    #: ``%reset -f`` (namespace, output cache, history) without the magic's extra garbage collections; a
    #: collection after it frees what the notebook left in reference cycles (the reset collects before it
    #: clears the namespace), and what survives (the modules, their caches) is frozen out of later
    #: collections: each took 0.3 s with the package loaded, then about 0.01 s
    RESET = ("import matplotlib.pyplot\nmatplotlib.pyplot.close('all')\n"
             "get_ipython().reset(new_session=False)\n"
             "__import__('gc').collect()\n"
             "__import__('gc').freeze()\n"
             "get_ipython().execution_count = 1")

    def __enter__(self) -> Kernel:
        from jupyter_client.manager import KernelManager  # deferred: imports jupyter_client

        self._sockets = tempfile.TemporaryDirectory(prefix="osteo-kernel-")
        self.km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(self._sockets.name) / "kernel"))
        self.used = False
        return self

    def fresh(self) -> None:
        """Clear what the previous notebook left in the kernel (nothing to do before the first)."""
        if self.used and self.km.has_kernel:
            client = self.km.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=60)
                reply = client.execute_interactive(self.RESET, store_history=False, timeout=120,
                                                   output_hook=lambda msg: None)
                if reply["content"]["status"] != "ok":
                    raise PipelineError(f"the notebook kernel could not be reset: {reply['content'].get('evalue')}")
            finally:
                client.stop_channels()
        self.used = True

    def stop(self, now: bool = False) -> None:
        if self.km.has_kernel:
            self.km.shutdown_kernel(now=now)
        self.km.cleanup_resources()

    def __exit__(self, kind: type | None, *exc: object) -> None:
        # a failed notebook's kernel shuts down as usual (its exit handlers record the failure); an
        # interrupted one at once
        self.stop(now=kind is not None and issubclass(kind, KeyboardInterrupt))
        self._sockets.cleanup()


def execute_notebook(source: Path, target: Path, parameters: dict[str, Any], kernel: Kernel | None = None) -> float:
    """Run one notebook with papermill (in ``kernel`` when given, else in a kernel of its own); raise
    PipelineError naming the failing cell."""
    import papermill as pm  # deferred: imports papermill
    from papermill.exceptions import PapermillExecutionError  # deferred: imports papermill

    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with contextlib.nullcontext(kernel) if kernel is not None else Kernel() as k:
        k.fresh()
        with _interrupts_kernel(k.km) as interrupted:
            try:
                pm.execute_notebook(str(source), str(target), parameters=parameters, kernel_name="python3",
                                    cwd=str(PROJECT_ROOT), progress_bar=False, log_output=False, km=k.km)
            except PapermillExecutionError as exc:
                if interrupted.is_set():
                    raise KeyboardInterrupt from None
                raise _notebook_failure(source, target, exc) from exc
            finally:
                if interrupted.is_set():
                    k.stop(now=True)
    return time.time() - start


@contextlib.contextmanager
def _interrupts_kernel(km) -> Iterator[threading.Event]:
    """Ctrl-C while a notebook runs interrupts its kernel (which runs in a session of its own, so the
    terminal's signal never reaches it): the running cell stops at once and the run ends with
    KeyboardInterrupt, instead of waiting for the cell to finish. Between cells, or a second Ctrl-C,
    raises KeyboardInterrupt here directly."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum, frame) -> None:
        busy = km.has_kernel and not interrupted.is_set()
        interrupted.set()
        if not busy:
            raise KeyboardInterrupt
        km.interrupt_kernel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _notebook_failure(source: Path, target: Path, exc) -> PipelineError:
    """The PipelineError naming the notebook, its failing cell and the error line."""
    error = f"{exc.ename}: {str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else ''}"
    return PipelineError(
        f"{source.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): "
        f"{exc.ename}: {exc.evalue}\nThe partly executed notebook is {target}",
        notebook=source.name, cell=exc.cell_index, error=error,
    )


def book_banner(profile: Profile | None) -> str | None:
    """The announcement on every page of a book whose numbers are not the study's: smoke, or changed settings."""
    if profile is None:
        return None
    if profile.name == "smoke":
        return SMOKE_BANNER
    changed = changed_fields(profile)
    if changed:
        return (f"profile {profile.name} with changed settings ("
                + ", ".join(f"{k}={v}" for k, v in changed.items()) + "): not the declared analysis")
    return None


def hide_parameter_cells(notebook: Path) -> None:
    """Tag the parameters cell and papermill's injected one `remove-cell` in a book copy: they hold the
    run's absolute paths and settings, which the provenance page reports instead."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if set(tags) & PARAMETER_TAGS and "remove-cell" not in tags:
            tags.append("remove-cell")
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")


def write_book_config(source: Path, target: Path, banner: str | None, answer: str) -> None:
    """Copy _config.yml, adding the banner as the theme's announcement when there is one, and the run's
    answer as the substitution ``{{ answer }}`` of the first page."""
    import yaml  # deferred: imports yaml

    config = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    if banner:
        config.setdefault("html", {})["announcement"] = banner
    config.setdefault("parse", {}).setdefault("myst_substitutions", {})["answer"] = answer
    target.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def build_book(run_dir: Path, executed: dict[str, Path], profile: Profile | None = None) -> Path:
    """Assemble book sources + executed notebooks in run_dir/book_src and build HTML into run_dir/_build.

    The copies, not the executed notebooks, lose their parameter cells; `profile` decides the banner.
    """
    from .answer import study_answer  # deferred: imports torch, sklearn and scipy

    src = run_dir / "book_src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in BOOK_FILES:
        if name == "_config.yml":
            write_book_config(PROJECT_ROOT / name, src / name, book_banner(profile), study_answer(run_dir / "tables"))
        elif (PROJECT_ROOT / name).is_file():
            shutil.copy2(PROJECT_ROOT / name, src / name)
    shutil.copytree(PROJECT_ROOT / "book", src / "book", ignore=shutil.ignore_patterns("*.ipynb", ".*"))
    for rel, nb in executed.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, src / rel)
        hide_parameter_cells(src / rel)
    exe = Path(sys.executable).with_name("jupyter-book")
    # warnings are errors (-W -n): a broken reference or citation fails the build instead of a page
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(src), "--path-output", str(run_dir),
           "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (run_dir / "book_build.log").write_text(proc.stdout + proc.stderr)
    site = run_dir / "_build" / "html"
    if proc.returncode != 0 or not (site / "index.html").is_file():
        raise PipelineError(f"jupyter-book build failed (exit {proc.returncode}); see {run_dir / 'book_build.log'}\n"
                            + (proc.stdout + proc.stderr)[-3000:],
                            error=f"jupyter-book build failed (exit {proc.returncode})")
    for rel in sorted(set().union(*(linked_run_files(src / rel) for rel in executed))):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run_dir / rel, site / rel)
    return site


def linked_run_files(notebook: Path) -> set[str]:
    """The run folder's files an executed notebook links (`Study.table`'s CSV files, `Study.figure`'s images:
    ``../tables/x.csv``, relative to the executed notebooks' folder), by their path in the run folder. Every
    book page sits one folder below the book's root, so the book serves them from the same path, once copied."""
    link = re.compile(r'class="osteo-(?:source|figure)" (?:href|src)="\.\./([^"]+)"')
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = {html.unescape(m) for cell in nb.get("cells", []) for out in cell.get("outputs", [])
             for m in link.findall("".join(out.get("data", {}).get("text/html", "")))}
    return {rel for rel in found if ".." not in Path(rel).parts}


def executed_copy(root: Path, notebook: str) -> Path:
    """Where a run folder keeps its executed copy of ``notebook`` (a path of `NOTEBOOKS`)."""
    return root / "notebooks" / Path(notebook).name


def with_book_pages(selected: tuple[str, ...]) -> tuple[str, ...]:
    """Some notebooks and, after them, the book's pages that summarise the run's tables and record (results
    summary, provenance): they are executed again whenever the book is built from a run of some notebooks."""
    pages = tuple(nb for nb in NOTEBOOKS if nb.startswith("book/"))
    return tuple(nb for nb in selected if nb not in pages) + pages


def missing_for_book(root: Path, selected: tuple[str, ...], identity: dict[str, Any]) -> list[str]:
    """The notebooks of the book that a run of ``selected`` does not execute and ``root`` holds no executed copy
    of from the same run (`runfolder.holds_run`: its results are set aside otherwise)."""
    same = holds_run(root, identity)
    return [nb for nb in NOTEBOOKS if nb not in selected and not (same and executed_copy(root, nb).is_file())]


def run(profile: str = "fast", run_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None, notebooks: tuple[str, ...] | None = None,
        build: bool = True, cohort: Cohort | str | os.PathLike | None = None, kernel: Kernel | None = None) -> Path:
    """Execute the notebooks in order and build the report; returns the HTML folder (or run folder).

    Settings, the data folder and the run folder are checked before anything is written; the run
    holds the folder's writer lock throughout, and provenance.json says how it ended. ``kernel``: a
    started `Kernel` the notebooks run in (several runs in one process share its start and imports);
    by default one of the run's own.
    """
    from .study import RUN_ID_ENV, check_profile_on_data  # deferred: imports sklearn, scipy and skimage

    overrides = overrides or {}
    prof = get_profile(profile, **overrides)
    dataset = Cohort.open(cohort, data_dir)  # the spec, the folder and its layout, checked before any work
    dataset.require_usable()  # every table value and image, decoded: all problems at once before any work
    data_root = dataset.root
    root = check_output_folder(run_folder(run_dir, prof, announce=True), "run folder", data_root)
    check_profile_on_data(prof, dataset)
    identity = run_identity("run", prof.to_dict(), dataset)
    selected = notebooks or tuple(nb for nb in NOTEBOOKS if (PROJECT_ROOT / nb).is_file())
    if notebooks and build:  # the book from this run's other executed notebooks, its summary pages made again
        selected = with_book_pages(notebooks)
        missing = missing_for_book(root, selected, identity)
        if missing:
            raise UsageError(f"--notebook: the book needs every notebook, and {root} holds no executed "
                             f"{', '.join(Path(nb).name for nb in missing)} of a run with these settings, data and "
                             "code; run them too (or run without --notebook), or give --no-book")
    with exclusive(root) as lock:
        moved = claim_for_run(root, identity)
        if moved is not None:
            tqdm.write(why_moved(root, moved))
        paths = RunPaths(root)
        started = dt.datetime.now(dt.UTC)
        run_id = f"{profile}-{started:%Y%m%dT%H%M%SZ}"
        # what the notebooks' kernels inherit: the run's id, and no bars (progress comes through this process)
        restore = {name: os.environ.get(name) for name in (RUN_ID_ENV, "TQDM_DISABLE")}
        os.environ[RUN_ID_ENV] = run_id
        os.environ.setdefault("TQDM_DISABLE", "1")
        prov = Provenance(paths.root / "provenance.json", {
            "run_id": run_id, "started": started.isoformat(), "command": lock.owner["command"],
            **run_record(prof, dataset, overrides), "pid": lock.owner["pid"], "host": lock.owner["host"],
            "replaced_stale_lock": lock.replaced,
        })
        live = sys.stderr.isatty()  # a bar and epoch lines on a terminal; plain lines in a log
        printer = progress.Printer(write=tqdm.write, live=live)
        follower = Follower(paths.root / PROGRESS_FILE, printer)
        params = {"profile": profile, "run_dir": str(paths.root), "data_dir": str(data_root),
                  "cohort": dataset.spec.source, "overrides": overrides}
        executed: dict[str, Path] = {}
        current = None
        try:
            with contextlib.nullcontext(kernel) if kernel is not None else Kernel() as shared:  # imports paid once
                for i, nb in enumerate(tqdm(selected, desc=f"run {profile}", unit="notebook", disable=not live), 1):
                    current = nb
                    if nb == PROVENANCE_PAGE:  # the page shows how the analysis ended, so record it first
                        prov.finish("finished", started)
                    target = executed_copy(paths.root, nb)
                    so_far = (dt.datetime.now(dt.UTC) - started).total_seconds()
                    tqdm.write(f"executing {nb} ({i} of {len(selected)}, {so_far / 60:.1f} min so far)")
                    printer.context = Path(nb).stem
                    with follower:
                        seconds = execute_notebook(PROJECT_ROOT / nb, target, params, shared)
                    executed[nb] = target
                    prov.step(nb, seconds=round(seconds, 1), finished=dt.datetime.now(dt.UTC).isoformat(),
                              **follower.take_folds())
            result = paths.root
            if build:
                current = "jupyter-book build"
                t0 = time.time()
                earlier = {nb: executed_copy(paths.root, nb) for nb in NOTEBOOKS if nb not in executed}
                result = build_book(paths.root, {**earlier, **executed}, prof)
                prov.step("jupyter-book build", seconds=round(time.time() - t0, 1))
        except BaseException as exc:  # Ctrl-C too: the record must not stay "running"
            if isinstance(exc, PipelineError):
                failure = {"notebook": exc.notebook or current, "cell": exc.cell, "error": exc.error or str(exc)}
            else:
                lines = str(exc).strip().splitlines()
                failure = {"notebook": current, "cell": None,
                           "error": f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__}
            prov.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", started, failure)
            raise
        finally:
            for name, value in restore.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
        prov.finish("finished", started)
    from .headline import run_summary  # deferred: imports torch, sklearn and scipy

    for line in run_summary(paths.root, (dt.datetime.now(dt.UTC) - started).total_seconds(), since=started):
        tqdm.write(line)
    return result
