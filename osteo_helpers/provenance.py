"""The record of how a run folder's files were made (``provenance.json``), and its page in the book.

`osteo run` writes the record for the whole pipeline. A notebook executed on its own (papermill,
nbconvert, JupyterLab) writes the same record through `record_session`, which `Study.open` calls
whenever the pipeline is not in charge, so a folder made by papermill is documented as one made
by `osteo run` is: settings, code version, packages, device, data checksums, status and time.
"""

from __future__ import annotations

import atexit
import datetime as dt
import html
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .config import PROJECT_ROOT, Profile
from .data import published_spec_path, read_registry
from .errors import UsageError
from .executor import current as current_executor
from .features import FeatureRecipe, recipe_record
from .fileio import atomic_write_text, sha256_file
from .folders import shorten_paths

if TYPE_CHECKING:
    from .data import Cohort

RECORD_NAME = "provenance.json"
PACKAGES = ("torch", "torchvision", "efficientnet-lite-pytorch", "numpy", "pandas", "scikit-learn", "scikit-image",
            "shap", "grad-cam", "papermill", "jupyter-book", "matplotlib", "seaborn")


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
    import torch  # deferred: imports torch

    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def data_checksums(cohort: Cohort) -> dict[str, Any]:
    """SHA-256 of every file of the cohort (the published dataset: every file of its registry), and
    whether they match the shipped registry."""
    registry = read_registry()
    spec = cohort.spec
    published = Path(spec.source) == published_spec_path()
    rels = list(registry["path"]) if published else [spec.table_file,
                                                     *sorted(cohort.manifest()["image_path"].dropna())]
    files = {}
    for rel in rels:
        path = cohort.root / rel
        files[rel] = sha256_file(path) if path.is_file() else None
    matches = published and all(files[r.path] == r.sha256 for r in registry.itertuples())
    return {"data_dir": str(cohort.root), "cohort": spec.name, "cohort_spec": spec.source,
            "matches_registry": matches, "spreadsheet_sha256": files.get(spec.table_file), "files": files}


def run_record(profile: Profile, cohort: Cohort, overrides: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The facts every record holds: code, settings, packages, device, executor and data."""
    from .models import weights_name  # deferred: imports torch and tqdm

    return {"git": git_state(), "profile": profile.to_dict(), "weights": weights_name(profile.encoder, profile.weights),
            "image_encoder": recipe_record(FeatureRecipe.of(profile)), "overrides": overrides,
            "packages": package_versions(), "device": device_description(),
            "executor": current_executor().describe(), "data": data_checksums(cohort), **extra}


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
        """Record the end: `finished`, `failed` with what failed, or `interrupted` (Ctrl-C) with where."""
        now = dt.datetime.now(dt.UTC)
        self.record.update(status=status, ended=now.isoformat(), duration_s=round((now - started).total_seconds(), 1))
        if failure is not None:
            self.record["failure"] = failure
        self.write()


_SESSION: dict[str, Any] = {}


def record_session(run_dir: Path, profile: Profile, cohort: Cohort, overrides: dict[str, Any]) -> Provenance | None:
    """Record a notebook kernel that runs without `osteo run` (papermill, nbconvert, JupyterLab).

    The record says `running` until the kernel exits, then `finished`, or `failed` naming the
    first cell that raised (IPython's post_run_cell event: its execution count and first line); one
    record per kernel and folder.
    Outside IPython nothing is recorded (scripts and tests call the package directly).
    """
    try:
        from IPython import get_ipython  # deferred: imports IPython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or _SESSION.get("path") == Path(run_dir) / RECORD_NAME:
        return _SESSION.get("provenance")
    started = dt.datetime.now(dt.UTC)
    prov = Provenance(Path(run_dir) / RECORD_NAME, {
        "run_id": f"{profile.name}-session-{started:%Y%m%dT%H%M%SZ}", "started": started.isoformat(),
        "command": "a notebook executed without `osteo run` (papermill, nbconvert or JupyterLab): "
                   + " ".join(Path(a).name for a in sys.argv[:1]),
        **run_record(profile, cohort, overrides), "pid": os.getpid()})
    t0 = time.time()
    failure: dict[str, Any] = {}

    def after_cell(result: Any) -> None:
        if not result.success and not failure:
            error = result.error_in_exec or result.error_before_exec
            source = (getattr(result.info, "raw_cell", "") or "").strip().splitlines()
            failure.update(notebook=None, cell=shell.execution_count, error=f"{type(error).__name__}: {error}",
                           source=source[0] if source else "")
            prov.finish("failed", started, dict(failure))

    def at_exit() -> None:
        prov.step("notebook session", seconds=round(time.time() - t0, 1))
        prov.finish("failed" if failure else "finished", started, dict(failure) or None)

    shell.events.register("post_run_cell", after_cell)
    atexit.register(at_exit)
    _SESSION.update(path=Path(run_dir) / RECORD_NAME, provenance=prov)
    return prov


def finished_record(run_dir: str | os.PathLike, what: str, otherwise: str = "") -> dict[str, Any]:
    """The record of a finished run that made its cross-validated results (tables/results_binary.csv): what
    `train-final --run` and `osteo answer` read. UsageError, one line naming ``what`` and the folder, for any
    other folder; ``otherwise`` (``"; or leave --run out"``) ends the line with what else the user can do."""
    run = Path(run_dir)
    where = f"{what} {run}"
    if not run.is_dir():
        raise UsageError(f"{where}: " + ("is a file, not a run folder" if run.exists() else "no such folder")
                         + otherwise)
    if not (run / RECORD_NAME).is_file():
        raise UsageError(f"{where}: no {RECORD_NAME}, so not a folder made by `osteo run`{otherwise}")
    try:
        record = json.loads((run / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{where}: {RECORD_NAME} cannot be read ({type(exc).__name__}), so the settings that "
                         f"made its tables are unknown{otherwise}") from None
    status = record.get("status", "unknown") if isinstance(record, dict) else "unknown"
    if status != "finished":
        raise UsageError(f"{where}: the run is {status}, not finished; its tables may be partial or another "
                         f"run's: finish it (`osteo run`){otherwise}")
    if not (run / "tables" / "results_binary.csv").is_file():
        raise UsageError(f"{where}: no tables/results_binary.csv: the run made no cross-validated results (run "
                         f"with every notebook){otherwise}")
    return record


# ----------------------------------------------------------------------------------------- the page
def status_text(prov: dict) -> str:
    """The run's status in words; a failure names the notebook and cell, an interruption the notebook it stopped."""
    status = prov.get("status", "unknown")
    failure = prov.get("failure") or {}
    if status == "failed" and failure:
        where = failure.get("notebook") or "a notebook"
        status += f" in {where} (cell {failure.get('cell', '?')}): {failure.get('error', '')}".rstrip(": ")
    if status == "interrupted" and failure.get("notebook"):
        status += f" (Ctrl-C) in {failure['notebook']}"
    return status


def summary_table(prov: dict) -> pd.DataFrame:
    """Run, status, time, commit, command, data and weights as a short two-column table."""
    git = prov["git"]
    duration = prov.get("duration_s")
    rows = {
        "run": prov["run_id"],
        "status": status_text(prov),
        "started": _when(prov["started"]),
        "duration": f"{duration // 60:.0f} min {duration % 60:.0f} s" if duration is not None else "not recorded",
        "commit": f"{git['commit']} on {git['branch']}" + (" (uncommitted changes)" if git["dirty"] else " (clean)"),
        "command": shorten_paths(prov["command"]),
        "data folder": shorten_paths(prov["data"]["data_dir"]),
        "data matches the shipped checksum registry": "yes" if prov["data"]["matches_registry"] else "no",
        "image encoder (image, fusion arms)": _encoder_text(prov.get("image_encoder")),
        "from-scratch CNN (image_cnn) weights": prov.get("weights", "not recorded"),
    }
    return pd.DataFrame({"value": rows}).rename_axis("")


def _encoder_text(record: dict | None) -> str:
    """The frozen encoder as the provenance page names it: variant, input, views, and its weights by SHA-256."""
    if not record:
        return "not recorded"
    return (f"{record['encoder']} (ImageNet weights {record['weights_file']}, SHA-256 {record['weights_sha256'][:12]}…;"
            f" {record.get('architecture', '')}), {record['size']} px, views: {', '.join(record['views'])}")


def _when(iso: str) -> str:
    """An ISO time as a person reads it: 2026-12-04 20:36:52 UTC."""
    try:
        return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError):
        return str(iso)


def key_values(table: pd.DataFrame, caption: str) -> Any:
    """A two-column table (names in the index) styled to wrap long values instead of widening the page."""
    return (table.style.set_caption(caption).hide(axis="columns")
            .set_table_attributes('class="osteo-keyvalue"'))


def steps_table(prov: dict) -> pd.DataFrame:
    """Each step of the run with its seconds and the time it finished."""
    return pd.DataFrame([{"step": s["name"], "seconds": f"{s.get('seconds', float('nan')):.1f}",
                          "finished": _when(s["finished"]) if s.get("finished") else ""}
                         for s in prov.get("steps", [])])


def folds_text(prov: dict) -> str:
    """How many folds of the arms this run fitted and how many it reused from the fold cache (an earlier run
    with the same data, settings and code fitted them): one sentence, where a log would print one line an arm."""
    steps = [s for s in prov.get("steps", []) if "folds_fitted" in s]
    if not steps:
        return "This record does not count the folds fitted and reused."
    fitted, reused = (sum(int(s.get(k, 0)) for s in steps) for k in ("folds_fitted", "folds_reused"))
    return (f"**Folds.** The arms' cross-validations fitted {fitted} folds in this run and reused {reused} from the "
            "fold cache, each only where its fingerprint (data, settings, code) and every file it wrote matched; "
            "the run's progress, arm by arm, is in its log (progress.jsonl in the run folder).")


def device_table(prov: dict) -> pd.DataFrame:
    device = prov.get("device", {})
    names = {"platform": "platform", "cpu_count": "CPU cores", "cuda": "CUDA available", "gpu": "GPU"}
    return pd.DataFrame({"value": {names.get(k, k): str(v) for k, v in device.items()}}).rename_axis("")


def parameter_table(prov: dict) -> pd.DataFrame:
    """Every profile field, with the fields the run changed (`--set`, notebook overrides) marked."""
    changed = set(prov.get("overrides") or {})
    return pd.DataFrame([{"parameter": k, "value": ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v),
                          "changed for this run": "yes" if k in changed else ""}
                         for k, v in prov["profile"].items()])


def checksum_block(prov: dict) -> str:
    """Every data file's full SHA-256 as HTML, folded in a <details> block (the page stays short)."""
    files = prov["data"].get("files") or {}
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td><code>{digest or 'missing'}</code></td></tr>"
                   for name, digest in files.items())
    return (f"<details><summary>SHA-256 of all {len(files)} data files (click to open)</summary>"
            '<div class="osteo-wide"><table class="osteo-keyvalue"><thead><tr><th>file</th><th>SHA-256</th></tr>'
            "</thead>"
            f"<tbody>{rows}</tbody></table></div></details>")


def earlier_runs(prov: dict) -> pd.DataFrame:
    """Earlier runs into the same folder (their files may still be there)."""
    return pd.DataFrame([{"run": r["run_id"], "status": r.get("status", "unknown"), "commit": r["git"]["commit"][:10],
                          "dirty": r["git"]["dirty"], "steps": ", ".join(s["name"] for s in r.get("steps", []))}
                         for r in prov.get("previous_runs", [])])
