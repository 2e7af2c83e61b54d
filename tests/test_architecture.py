"""The house rules of the package's structure (ARCHITECTURE.md): layers that import only downward (the
import-linter contracts of ``.importlinter``), no import circle, every module on a floor, function-level imports
only to defer a heavy library (each saying so), no module over 500 lines."""

from __future__ import annotations

import ast
import configparser
import graphlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "osteo_helpers"
CONTRACTS = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 500


def _lint_imports(config: Path, cwd: Path, python_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(python_path or ROOT), "HOME": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _layers() -> list[list[str]]:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS)
    lines = [line.strip() for line in parser["importlinter:contract:layers"]["layers"].splitlines() if line.strip()]
    return [re.split(r"\s*[:|]\s*", line) for line in lines]


def test_the_contracts_hold(tmp_path):
    result = _lint_imports(CONTRACTS, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_even_inside_a_function(tmp_path):
    """A copy of the package with one planted import from the data layer up to the study: the contract names it."""
    copy = tmp_path / "planted" / "osteo_planted"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "data" / "spec.py").open("a") as f:
        f.write("\n\ndef _planted():\n    from ..study import Study  # deferred: upward\n\n    return Study\n")
    config = tmp_path / "contracts.ini"
    config.write_text(CONTRACTS.read_text().replace("osteo_helpers", "osteo_planted"))
    result = _lint_imports(config, tmp_path, python_path=copy.parent)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "osteo_planted.data.spec -> osteo_planted.study" in result.stdout
    assert "1 kept, 1 broken" in result.stdout


def test_every_module_is_on_exactly_one_floor():
    on_floors = [name for layer in _layers() for name in layer]
    modules = sorted(p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                     if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").is_file()))
    assert sorted(on_floors) == modules


def test_no_module_imports_in_a_circle():
    """No circle between modules, counting imports inside functions (a package importing its own submodules, to
    re-export them, is not one)."""
    graph = grimp.build_graph("osteo_helpers", cache_dir=None)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if not i.startswith(m + ".")}
             for m in graph.modules if m.startswith("osteo_helpers")}
    graphlib.TopologicalSorter(edges).prepare()  # raises CycleError naming the circle


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import | ast.ImportFrom):
                    found.append((sub.lineno, lines[sub.lineno - 1]))
    return found


def test_function_level_imports_only_defer_a_heavy_library_and_say_so():
    undeclared = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in sorted(PACKAGE.rglob("*.py"))
                  for n, line in _function_level_imports(path) if "# deferred: " not in line]
    assert not undeclared, "import at the top, or say what it defers:\n" + "\n".join(undeclared)


def test_the_rule_finds_an_undeclared_function_level_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import json\n\n    return json\n\n\ndef g():\n"
                      "    import torch  # deferred: imports torch\n\n    return torch\n")
    assert [n for n, line in _function_level_imports(module) if "# deferred: " not in line] == [2]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_500_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
