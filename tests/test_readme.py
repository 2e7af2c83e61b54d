"""The README a newcomer reads (issue 32): its numbers written from a run by a script, never by hand; every
setting the package reads from the environment documented; the conda environment the same set as the lock."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osteo_helpers import headline
from osteo_helpers.config import PROJECT_ROOT
from osteo_helpers.fileio import read_csv
from osteo_helpers.wording import ci

README = PROJECT_ROOT / "README.md"
SCRIPT = PROJECT_ROOT / "scripts" / "readme_numbers.py"
#: set by `osteo run` for its own notebooks and workers, not by users (the README says so)
INTERNAL = {"OSTEO_RUN_ID", "OSTEO_PROGRESS_FILE", "OSTEO_FIT_THREADS"}


def test_every_setting_read_from_the_environment_is_documented():
    """OSTEO_OUTPUT_DIR and OSTEO_CACHE_DIR were read by the package and named nowhere in the README."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (PROJECT_ROOT / "osteo_helpers").rglob("*.py"))
    names = set(re.findall(r'"(OSTEO_[A-Z_]+)"', source))
    assert {"OSTEO_OUTPUT_DIR", "OSTEO_CACHE_DIR", "OSTEO_DATA_DIR", "OSTEO_DEVICE", "OSTEO_WARNINGS"} <= names
    text = README.read_text(encoding="utf-8")
    table = text[text.index("**Settings in the environment.**"):text.index("A command's stderr")]
    assert [n for n in sorted(names - INTERNAL) if f"| `{n}` |" not in table] == []
    assert all(f"`{n}`" in table for n in INTERNAL)


def test_the_readme_starts_with_the_question_the_answer_and_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first = text[:text.index("\n## ")]
    assert first.index("**The question.**") < first.index(headline.README_START) < first.index("make report   #")
    assert "make test     #" in first and "apt-get" in first and "benchmarks/README.md" in first
    assert text.count(headline.README_START) == 1 and text.count(headline.README_END) == 1
    assert not re.search(r"\d+ min \d+ s", first), "timings belong in benchmarks/README.md"


def test_the_conda_environment_installs_the_locked_set():
    """environment.yml holds Python and pip from conda and every other package from pip, pinned by
    constraints.txt with the extras `make setup` installs; its Python is the one the lock was made with."""
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text(encoding="utf-8"))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert conda == [f"python={sys.version_info.major}.{sys.version_info.minor}", "pip"], conda
    makefile = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    extras = re.search(r'-e "(\.\[[a-z,]+\])"', makefile)[1]
    assert "CONSTRAINTS ?= constraints.txt" in makefile
    assert pip == ["-c constraints.txt", f'-e "{extras}"'], pip
    lock = [line for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    assert lock and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s=]+", line) for line in lock)


def test_the_block_is_replaced_and_nothing_else():
    text = f"intro\n{headline.README_START}\nold numbers\n{headline.README_END}\nrest\n"
    block = f"{headline.README_START}\nnew\n{headline.README_END}"
    assert headline.replace_block(text, block) == f"intro\n{block}\nrest\n"
    with pytest.raises(ValueError, match="once each"):
        headline.replace_block("no markers", block)


def test_only_the_checked_arms_are_called_the_same_on_every_cpu():
    """`clinical_full` (regularisation tuned inside each fold) is a scikit-learn arm too, but no checksum holds it:
    the README calls it the same on every CPU only once a test does."""
    assert [a for a in ("age", "ost", "clinical", "clinical_full", "image", "image_cnn", "fusion", "tabular")
            if headline.same_on_every_cpu(a)] == ["age", "ost", "clinical"]


@pytest.mark.realdata
@pytest.mark.slow
def test_the_script_writes_the_readme_numbers_from_a_run(smoke_run: Path, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(README.read_text(encoding="utf-8"), encoding="utf-8")
    command = [sys.executable, str(SCRIPT), str(smoke_run), "--readme", str(readme)]
    first = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert first.returncode == 0, first.stderr
    text = readme.read_text(encoding="utf-8")
    block = text[text.index(headline.README_START):text.index(headline.README_END)]
    results = read_csv(smoke_run / "tables" / "results_binary.csv")
    clinical = results[(results.model == "clinical") & (results.metric == "auroc") & (results.subset == "all")].iloc[0]
    assert f"| clinical (age, sex) | {ci(clinical.value, clinical.ci_low, clinical.ci_high)} | yes |" in block
    assert "| fusion (residual) |" in block and "may differ in the third decimal" in block
    assert headline.study_answer(smoke_run / "tables") in block and "Positive control" not in block[:40]
    outside = README.read_text(encoding="utf-8").split(headline.README_START)
    assert text.startswith(outside[0]) and text.endswith(outside[1].split(headline.README_END)[1])
    again = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert again.returncode == 0 and "unchanged" in again.stdout and readme.read_text(encoding="utf-8") == text
    refused = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--readme", str(readme)],
                             capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: ")
