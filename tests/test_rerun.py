"""A notebook rerun on its own gives the smoke run's numbers (a file that reads the smoke run: it runs last)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from osteo_helpers.config import PROJECT_ROOT


@pytest.mark.realdata
@pytest.mark.slow
def test_rerun_of_one_notebook_is_identical_and_does_not_clobber(smoke_run: Path, real_data_dir: Path) -> None:
    """Same seed and settings on CPU, a fresh run folder and a kernel of its own (the full run executed
    notebook 8 in the kernel that had run notebooks 1-7, and from their cached folds): identical metrics;
    the first run's files untouched."""
    before = {p: p.stat().st_mtime_ns for p in (smoke_run / "tables").glob("*.csv")}
    other = smoke_run.parent / "rerun-08"
    overrides = json.loads((smoke_run / "provenance.json").read_text())["overrides"]
    settings = [f"--set={name}={value}" for name, value in overrides.items()]
    proc = subprocess.run([sys.executable, "-m", "osteo_helpers", "run", "--profile", "smoke", "--out", str(other),
                           "--data-dir", str(real_data_dir), "--no-book", *settings,
                           "--notebook", "notebooks/08_site_validation.ipynb"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = pd.read_csv(smoke_run / "tables" / "leave_one_batch_out.csv")
    second = pd.read_csv(other / "tables" / "leave_one_batch_out.csv")
    pd.testing.assert_frame_equal(first, second)
    assert before == {p: p.stat().st_mtime_ns for p in (smoke_run / "tables").glob("*.csv")}
