"""Execute the notebooks with papermill, record provenance, and build the Jupyter Book.

The executed notebooks and everything they write live in the run folder (by default
outputs/<profile>, or outputs/<profile>-<hash> when settings are overridden: config.run_folder);
the book is assembled from a copy of the book sources plus those notebooks, without their
parameter cells, with a banner on every page when the numbers are not the study's (smoke).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
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
from .config import PROJECT_ROOT, Profile, RunPaths, changed_fields, get_profile, resolve_data_dir, run_folder
from .data import check_layout, read_registry, sha256_file
from .fileio import atomic_write_text
from .runfolder import check_output_folder, claim_for_run, exclusive, run_identity, why_moved

NOTEBOOKS: tuple[str, ...] = (
    "notebooks/01_eda_manifest.ipynb",
    "notebooks/02_preprocessing.ipynb",
    "notebooks/03_binary_fusion.ipynb",
    "notebooks/04_three_class.ipynb",
    "notebooks/05_ablation.ipynb",
    "notebooks/06_explainability.ipynb",
    "notebooks/07_image_biomarkers.ipynb",
    "book/results_summary.ipynb",
    "book/provenance.ipynb",
)
BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
#: cell tags of the notebook's own parameters cell and of the one papermill injects
PARAMETER_TAGS = frozenset({"parameters", "injected-parameters"})
SMOKE_BANNER = "smoke profile: the numbers mean nothing"
PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scikit-learn", "scikit-image", "shap", "grad-cam",
            "papermill", "jupyter-book", "matplotlib", "seaborn")


class PipelineError(RuntimeError):
    """A notebook (or the book build) failed; the message names the notebook and the cell."""

    def __init__(self, message: str, notebook: str | None = None, cell: int | None = None,
                 error: str | None = None) -> None:
        super().__init__(message)
        self.notebook, self.cell, self.error = notebook, cell, error


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    return {"commit": commit or "unknown", "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_description() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def data_checksums(data_dir: Path) -> dict[str, Any]:
    """SHA-256 of every dataset file, and whether it matches the shipped registry."""
    registry = read_registry()
    files = {}
    for rel in registry["path"]:
        path = data_dir / rel
        files[rel] = sha256_file(path) if path.is_file() else None
    matches = all(files[r.path] == r.sha256 for r in registry.itertuples())
    return {"data_dir": str(data_dir), "matches_registry": matches,
            "spreadsheet_sha256": files.get("patient details.xlsx"), "files": files}


class Provenance:
    """The run record, rewritten atomically after every step so a crash keeps what finished.

    `status` says how the run ended: `running` from the start, then `finished`, or `failed` with
    `failure` (notebook, cell, error line). A later run into the same folder (e.g. one notebook
    re-executed) keeps the earlier records under `previous_runs`, so the report still shows how
    every file in the folder was made; an earlier record still `running` belongs to a run that
    was killed (the folder's writer lock is held, so it is not alive) and is marked failed.
    """

    def __init__(self, path: Path, record: dict[str, Any]) -> None:
        self.path = path
        self.record = {**record, "status": "running"}
        if path.is_file():
            earlier = json.loads(path.read_text())
            previous = earlier.pop("previous_runs", [])
            earlier.get("data", {}).pop("files", None)
            if earlier.get("status") == "running":
                earlier["status"] = "failed"
                earlier.setdefault("failure", {"notebook": None, "cell": None,
                                               "error": "the run stopped without recording its end (killed?)"})
            self.record["previous_runs"] = previous + [earlier]
        self.write()

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.record, indent=2, default=str))

    def step(self, name: str, **info: Any) -> None:
        self.record.setdefault("steps", []).append({"name": name, **info})
        self.write()

    def finish(self, status: str, started: dt.datetime, failure: dict[str, Any] | None = None) -> None:
        """Record the end: `finished`, or `failed` with what failed."""
        now = dt.datetime.now(dt.UTC)
        self.record.update(status=status, ended=now.isoformat(), duration_s=round((now - started).total_seconds(), 1))
        if failure is not None:
            self.record["failure"] = failure
        self.write()


PROGRESS_FILE = "progress.jsonl"


class Follower:
    """While a notebook runs, follows its progress events (`progress.report`) and prints them."""

    def __init__(self, path: Path, printer: progress.Printer, interval: float = 0.5) -> None:
        self.path, self.printer, self.interval = path, printer, interval
        self.path.write_text("")
        self.offset = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _drain(self) -> None:
        events, self.offset = progress.read_events(self.path, self.offset)
        for event in events:
            self.printer(event)

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


def execute_notebook(source: Path, target: Path, parameters: dict[str, Any]) -> float:
    """Run one notebook with papermill; raise PipelineError naming the failing cell."""
    import papermill as pm
    from jupyter_client.manager import KernelManager
    from papermill.exceptions import PapermillExecutionError

    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    # the kernel talks over local sockets (ipc) in a private folder: nothing listens on a TCP port,
    # and the kernel has no "running over TCP without encryption" warning to print
    with tempfile.TemporaryDirectory(prefix="osteo-kernel-") as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        with _interrupts_kernel(km) as interrupted:
            try:
                pm.execute_notebook(str(source), str(target), parameters=parameters, kernel_name="python3",
                                    cwd=str(PROJECT_ROOT), progress_bar=False, log_output=False, km=km)
            except PapermillExecutionError as exc:
                if interrupted.is_set():
                    raise KeyboardInterrupt from None
                raise _notebook_failure(source, target, exc) from exc
            finally:
                if km.has_kernel:
                    km.shutdown_kernel(now=interrupted.is_set())
                km.cleanup_resources()
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
                + ", ".join(f"{k}={v}" for k, v in changed.items()) + "): not the pre-specified analysis")
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


def write_book_config(source: Path, target: Path, banner: str | None) -> None:
    """Copy _config.yml, adding the banner as the theme's announcement when there is one."""
    import yaml

    config = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    if banner:
        config.setdefault("html", {})["announcement"] = banner
    target.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")


def build_book(run_dir: Path, executed: dict[str, Path], profile: Profile | None = None) -> Path:
    """Assemble book sources + executed notebooks in run_dir/book_src and build HTML into run_dir/_build.

    The copies, not the executed notebooks, lose their parameter cells; `profile` decides the banner.
    """
    src = run_dir / "book_src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in BOOK_FILES:
        if name == "_config.yml":
            write_book_config(PROJECT_ROOT / name, src / name, book_banner(profile))
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
    html = run_dir / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").is_file():
        raise PipelineError(f"jupyter-book build failed (exit {proc.returncode}); see {run_dir / 'book_build.log'}\n"
                            + (proc.stdout + proc.stderr)[-3000:],
                            error=f"jupyter-book build failed (exit {proc.returncode})")
    return html


def run(profile: str = "fast", run_dir: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
        overrides: dict[str, Any] | None = None, notebooks: tuple[str, ...] | None = None,
        build: bool = True) -> Path:
    """Execute the notebooks in order and build the report; returns the HTML folder (or run folder).

    Settings, the data folder and the run folder are checked before anything is written; the run
    holds the folder's writer lock throughout, and provenance.json says how it ended.
    """
    from .models import weights_name
    from .study import RUN_ID_ENV, check_profile_on_data  # imports torch: only once the input is known to be good

    overrides = overrides or {}
    prof = get_profile(profile, **overrides)
    data_root = resolve_data_dir(data_dir)
    check_layout(data_root)
    root = check_output_folder(run_folder(run_dir, prof, announce=True), "run folder", data_root)
    check_profile_on_data(prof, data_root)
    with exclusive(root) as lock:
        moved = claim_for_run(root, run_identity("run", prof.to_dict(), data_root))
        if moved is not None:
            tqdm.write(why_moved(root, moved))
        paths = RunPaths(root)
        started = dt.datetime.now(dt.UTC)
        run_id = f"{profile}-{started:%Y%m%dT%H%M%SZ}"
        os.environ[RUN_ID_ENV] = run_id
        os.environ.setdefault("TQDM_DISABLE", "1")  # progress is shown per notebook here, not inside the book
        prov = Provenance(paths.root / "provenance.json", {
            "run_id": run_id, "started": started.isoformat(), "git": git_state(), "profile": prof.to_dict(),
            "weights": weights_name(prof.encoder, prof.weights),
            "overrides": overrides, "packages": package_versions(), "device": device_description(),
            "data": data_checksums(data_root), "command": lock.owner["command"], "pid": lock.owner["pid"],
            "host": lock.owner["host"], "replaced_stale_lock": lock.replaced,
        })
        selected = notebooks or tuple(nb for nb in NOTEBOOKS if (PROJECT_ROOT / nb).is_file())
        live = sys.stderr.isatty()  # a bar and epoch lines on a terminal; plain lines in a log
        printer = progress.Printer(write=tqdm.write, live=live)
        follower = Follower(paths.root / PROGRESS_FILE, printer)
        params = {"profile": profile, "run_dir": str(paths.root), "data_dir": str(data_root), "overrides": overrides}
        executed: dict[str, Path] = {}
        current = None
        try:
            for i, nb in enumerate(tqdm(selected, desc=f"run {profile}", unit="notebook", disable=not live), 1):
                current = nb
                target = paths.root / "notebooks" / Path(nb).name
                so_far = (dt.datetime.now(dt.UTC) - started).total_seconds()
                tqdm.write(f"executing {nb} ({i} of {len(selected)}, {so_far / 60:.1f} min so far)")
                printer.context = Path(nb).stem
                with follower:
                    seconds = execute_notebook(PROJECT_ROOT / nb, target, params)
                executed[nb] = target
                prov.step(nb, seconds=round(seconds, 1), finished=dt.datetime.now(dt.UTC).isoformat())
            result = paths.root
            if build:
                current = "jupyter-book build"
                t0 = time.time()
                result = build_book(paths.root, executed, prof)
                prov.step("jupyter-book build", seconds=round(time.time() - t0, 1))
        except BaseException as exc:  # Ctrl-C too: the record must not stay "running"
            if isinstance(exc, PipelineError):
                failure = {"notebook": exc.notebook or current, "cell": exc.cell, "error": exc.error or str(exc)}
            else:
                lines = str(exc).strip().splitlines()
                failure = {"notebook": current, "cell": None,
                           "error": f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__}
            prov.finish("failed", started, failure)
            raise
        prov.finish("finished", started)
    from .report import run_summary

    for line in run_summary(paths.root, (dt.datetime.now(dt.UTC) - started).total_seconds(), since=started):
        tqdm.write(line)
    return result
