"""A run in a few lines of text for the terminal: the end of `osteo run` and `osteo answer RUN`.

Every line is read from the run's files (``provenance.json`` and ``tables/``), never typed: the
answer is `answer.study_answer`'s sentence (the book's first page says the same), and every number
carries its 95% CI as the report prints it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .ablation import ARM_LABELS, PRIMARY, arm_label
from .answer import direction, row_of, study_answer
from .fileio import read_csv
from .provenance import finished_record
from .report import control_table
from .wording import ci

#: the arms whose binary AUROC the end of `osteo run` quotes; `osteo answer` quotes the primary two
SUMMARY_ARMS = ("age", "clinical", "fusion", "fusion_tscore")


def auroc_lines(results: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """'binary AUROC, clinical (age, sex): 0.781 [0.702, 0.853]' for each arm of ``names`` the table holds."""
    main = results[(results["subset"] == "all") & (results["metric"] == "auroc")].set_index("model")
    return [f"binary AUROC, {arm_label(name)}: {ci(row.value, row.ci_low, row.ci_high)}"
            for name in names if name in main.index for row in [main.loc[name]]]


def run_summary(run_dir: Path, seconds: float, since: dt.datetime | None = None) -> list[str]:
    """What a finished run says in a few lines: the headline AUROCs with CIs, the answer, the time.
    With ``since``, only tables written by this run are quoted (never an earlier run's left in the folder)."""
    tables = Path(run_dir) / "tables"
    lines = [f"finished in {int(seconds // 60)} min {int(seconds % 60)} s"]

    def quoted(path: Path) -> bool:
        return path.is_file() and (since is None or path.stat().st_mtime >= since.timestamp())

    results = tables / "results_binary.csv"
    if quoted(results):
        lines += auroc_lines(read_csv(results), SUMMARY_ARMS)
        if quoted(tables / "comparisons.csv"):
            lines.append(study_answer(tables))
    return lines


def run_line(run_dir: Path, record: dict) -> str:
    """'run outputs/fast: profile fast (with epochs=3), finished, commit 0123456789ab (clean)'."""
    overrides = record.get("overrides") or {}
    changed = f" (with {', '.join(f'{k}={v}' for k, v in overrides.items())})" if overrides else ""
    git = record.get("git") or {}
    commit = str(git.get("commit", "not recorded"))[:12]
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(git.get("dirty"), "")
    profile = (record.get("profile") or {}).get("name", "not recorded")
    return f"run {run_dir}: profile {profile}{changed}, {record.get('status', 'unknown')}, commit {commit}{dirty}"


def primary_line(comparisons: pd.DataFrame | None) -> str:
    """The declared primary comparison (binary AUROC, fusion minus clinical) with its CI and its verdict."""
    row = None if comparisons is None else row_of(comparisons, "binary", *PRIMARY)
    if row is None:
        return "primary comparison: not in this run"
    verdict = {1: "better", -1: "worse", 0: "no detectable difference"}[direction(row)]
    return (f"primary comparison, binary AUROC of {arm_label(row['model_a'])} minus {arm_label(row['model_b'])}: "
            f"{ci(row['diff'], row['ci_low'], row['ci_high'], signed=True)} ({verdict})")


def control_line(control: pd.DataFrame | None) -> str:
    """What the image arms learned of sex and age (the positive control), with CIs: one part per encoder
    (the pretrained features' head and the CNN from scratch), each named when there are several."""
    if control is None:
        return "positive control: not in this run"
    models = list(dict.fromkeys(control["model"])) if "model" in control else [None]
    parts = []
    for model in models:
        c = (control if model is None else control[control["model"] == model]).set_index(["target", "metric"])
        found = [f"{target} {label} {ci(row.value, row.ci_low, row.ci_high)}"
                 for target, metric, label in (("sex", "auroc", "AUROC"), ("age", "pearson_r", "Pearson r"))
                 if (target, metric) in c.index for row in [c.loc[(target, metric)]]]
        if found:
            parts.append((f"{arm_label(model)}: " if len(models) > 1 else "") + ", ".join(found))
    return "positive control, from the image alone: " + ("; ".join(parts) or "no sex or age rows")


def headline(run_dir: str | os.PathLike) -> list[str]:
    """`osteo answer RUN`: the run, its answer and its headline numbers; UsageError (one line) for a folder
    that is not a finished run (`provenance.finished_record`)."""
    run = Path(run_dir)
    record = finished_record(run, "answer")
    tables = run / "tables"

    def table(name: str) -> pd.DataFrame | None:
        return read_csv(tables / name) if (tables / name).is_file() else None

    return [run_line(run, record), f"answer: {study_answer(tables)}", primary_line(table("comparisons.csv")),
            *auroc_lines(table("results_binary.csv"), PRIMARY[::-1]), control_line(table("positive_control.csv"))]


# ----------------------------------------------------------------------------- the README's numbers
#: the arms whose binary AUROC the README quotes, in the declared order
README_ARMS = ("age", "clinical", "image", "image_cnn", "fusion")
#: the markers of the README's block that `scripts/readme_numbers.py` rewrites
README_START, README_END = "<!-- readme-numbers:start -->", "<!-- readme-numbers:end -->"


#: the arms whose numbers are the same on every CPU: scikit-learn on the clinical table, with a closed-form or
#: well-conditioned fit; `tests/test_cpu_identity.py` holds their out-of-fold predictions to stored checksums
CPU_IDENTICAL_ARMS = ("age", "ost", "clinical")


def same_on_every_cpu(arm: str) -> bool:
    """Whether an arm's numbers are the same on every CPU (`CPU_IDENTICAL_ARMS`, checked). Any other arm may
    differ in the third decimal between CPU types: a torch network (the pretrained encoder, a CNN, the
    fusions) rounds as the CPU's vector instructions do, and a tuned fit (`clinical_full`) is not checked."""
    return arm in CPU_IDENTICAL_ARMS


def readme_block(run_dir: str | os.PathLike, shown_as: str | None = None) -> str:
    """The README's numbers, from a finished run's files (never typed): the answer as the book's first page
    states it, the primary comparison, the headline AUROCs with CIs and whether each is the same on every
    CPU, and the positive control. ``shown_as``: how the run's folder is named in the text."""
    run = Path(run_dir)
    record = finished_record(run, "run")
    tables = run / "tables"
    git = record.get("git") or {}
    made = (f"the `{(record.get('profile') or {}).get('name')}` profile's run of {str(record.get('started'))[:10]}, "
            f"commit {str(git.get('commit', 'not recorded'))[:12]}" + (" with uncommitted changes" if git.get("dirty")
                                                                       else ""))
    results = read_csv(tables / "results_binary.csv")
    main = results[(results["subset"] == "all") & (results["metric"] == "auroc")].set_index("model")
    rows = [f"| {arm_label(name)} | {ci(r.value, r.ci_low, r.ci_high)} | "
            f"{'yes' if same_on_every_cpu(name) else 'may differ in the third decimal'} |"
            for name in README_ARMS if name in main.index for r in [main.loc[name]]]
    comparisons = read_csv(tables / "comparisons.csv") if (tables / "comparisons.csv").is_file() else None
    primary = primary_line(comparisons)
    lines = [README_START,
             f"<!-- written by scripts/readme_numbers.py from {shown_as or run} ({made}); do not edit by hand -->",
             f"**The answer** ({made}): *{study_answer(tables)}*", "", f"{primary[0].upper()}{primary[1:]}.", "",
             "| binary AUROC, out-of-fold | value [95% CI] | the same on every CPU |", "|---|---|---|", *rows]
    if (tables / "positive_control.csv").is_file():
        control = control_table(read_csv(tables / "positive_control.csv"), ARM_LABELS)
        lines += ["", "The positive control, from the image alone (sex and age, which an image that shows the "
                  "patient's knee must carry; every number may differ in the third decimal between CPU types):", "",
                  "| " + " | ".join(control.columns) + " |", "|" + "---|" * len(control.columns),
                  *("| " + " | ".join(str(v).replace("\u00a0", " ") for v in row) + " |"
                    for row in control.itertuples(index=False))]
    return "\n".join([*lines, README_END])


def replace_block(text: str, block: str) -> str:
    """``text`` with its README block (between `README_START` and `README_END`) replaced by ``block``;
    ValueError when the markers are not there exactly once each, in order."""
    start, end = text.find(README_START), text.find(README_END)
    if text.count(README_START) != 1 or text.count(README_END) != 1 or end < start:
        raise ValueError(f"the README must hold {README_START} and then {README_END}, once each")
    return text[:start] + block + text[end + len(README_END):]
