"""Committed notebooks are sources: no outputs, no execution counts, the metadata papermill needs,
and a `parameters` cell for papermill to inject the run's parameters after."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*PROJECT_ROOT.glob("notebooks/*.ipynb"), *PROJECT_ROOT.glob("book/*.ipynb")])


def notebook_problems(nb: nbformat.NotebookNode) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.outputs:
            problems.append(f"cell {i} has {len(cell.outputs)} output(s)")
        if cell.execution_count is not None:
            problems.append(f"cell {i} has execution count {cell.execution_count}")
    kernelspec = nb.metadata.get("kernelspec", {})
    if not kernelspec.get("name") or not kernelspec.get("language"):
        problems.append(f"kernelspec metadata lacks name or language: {kernelspec}")
    if not nb.metadata.get("language_info", {}).get("name"):
        problems.append("language_info metadata lacks a name")
    if not any("parameters" in cell.metadata.get("tags", []) for cell in nb.cells):
        problems.append("no cell is tagged `parameters`")
    return problems


MAX_CELL_LINES, MAX_NOTEBOOK_LINES = 15, 70


def thickness_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Notebooks hold narrative and calls: logic that needs more lines belongs in the package, with a test."""
    lines = [len(cell.source.splitlines()) for cell in nb.cells if cell.cell_type == "code"]
    problems = [f"code cell {i} has {n} lines (at most {MAX_CELL_LINES})" for i, n in enumerate(lines)
                if n > MAX_CELL_LINES]
    if sum(lines) > MAX_NOTEBOOK_LINES:
        problems.append(f"{sum(lines)} lines of code (at most {MAX_NOTEBOOK_LINES})")
    return problems


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_committed_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert not notebook_problems(nb), f"{path.relative_to(PROJECT_ROOT)}: {notebook_problems(nb)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_notebook_is_thin(path: Path) -> None:
    problems = thickness_problems(nbformat.read(path, as_version=nbformat.NO_CONVERT))
    assert not problems, f"{path.relative_to(PROJECT_ROOT)}: {problems}"


def test_thickness_checker_counts_lines() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("\n".join(["x = 1"] * 16))] + [nbformat.v4.new_code_cell("y = 2")] * 55
    assert thickness_problems(nb) == ["code cell 0 has 16 lines (at most 15)", "71 lines of code (at most 70)"]


def test_checker_reports_each_problem() -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1", execution_count=3)
    cell.outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells = [cell]
    problems = notebook_problems(nb)
    assert problems == ["cell 0 has 1 output(s)", "cell 0 has execution count 3",
                        "kernelspec metadata lacks name or language: {}", "language_info metadata lacks a name",
                        "no cell is tagged `parameters`"]
    cell.outputs, cell.execution_count = [], None
    cell.metadata["tags"] = ["parameters"]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    assert notebook_problems(nb) == []


#: what `osteo run` passes every notebook (pipeline.run's ``params``); a notebook without one of them
#: would silently ignore it (papermill only warns "Passed unknown parameter")
PIPELINE_PARAMETERS = {"profile", "run_dir", "data_dir", "cohort", "overrides"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_notebook_declares_every_pipeline_parameter_and_cell_ids(path: Path) -> None:
    import ast

    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert PIPELINE_PARAMETERS <= declared, f"{path.name} lacks {PIPELINE_PARAMETERS - declared}"
    assert all("id" in c for c in nb.cells), f"{path.name}: cells without an id (nbformat 4.5)"
