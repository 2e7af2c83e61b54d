"""A new user's first hour: where runs write, what the book hides and shows, the README's commands, --help.

Runs with changed settings and notebook sessions never write into outputs/<profile> (the last
full report); the book's pages carry no parameters cell (absolute paths) and a smoke build says
on every page that its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from osteo_helpers import __version__, config, folders, pipeline, runfolder
from osteo_helpers.cli import build_parser, main
from osteo_helpers.study import RUN_ID_ENV, Study
from tests.conftest import write_notebook

README = config.PROJECT_ROOT / "README.md"


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    """A private outputs/ root; the variables a run sets are restored afterwards."""
    monkeypatch.setenv(folders.OUTPUT_ENV_VAR, str(tmp_path / "outputs"))
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv(RUN_ID_ENV, "test")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return (tmp_path / "outputs").resolve()


# ----------------------------------------------------------------------------- the override folder rule


def test_only_a_profile_as_defined_writes_its_own_folder(outputs, tmp_path, capsys):
    assert runfolder.run_folder(None, "fast", announce=True) == outputs / "fast"
    assert capsys.readouterr().out == ""
    changed = runfolder.run_folder(None, "fast", {"epochs": "10"}, announce=True)
    assert changed.parent == outputs and re.fullmatch(r"fast-[0-9a-f]{8}", changed.name)
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and str(changed) in said[0] and "epochs=10" in said[0]
    # the same settings however spelled give the same folder; other settings another one
    assert runfolder.run_folder(None, "fast", {"epochs": 10}) == changed
    assert runfolder.run_folder(None, config.get_profile("fast", epochs="10")) == changed
    assert runfolder.run_folder(None, "fast", {"epochs": "11"}) not in (changed, outputs / "fast")
    assert runfolder.run_folder(None, "fast", {"epochs": str(config.PROFILES["fast"].epochs)}) == outputs / "fast"
    # a notebook session without overrides has a folder of its own; an explicit folder always wins
    assert runfolder.run_folder(None, "fast", interactive=True) == outputs / "fast-interactive"
    assert runfolder.run_folder(None, "fast", {"epochs": "10"}, interactive=True) == changed
    assert runfolder.run_folder(tmp_path / "mine", "fast", {"epochs": "10"}) == tmp_path / "mine"


def _fake_execute(seen: list[str]):
    def execute(source, target, params, kernel=None):
        seen.append(params["run_dir"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{}")
        return 0.1

    return execute


def test_run_with_set_goes_to_its_own_folder_and_says_where(synthetic_dataset, outputs, monkeypatch, capsys):
    seen: list[str] = []
    monkeypatch.setattr(pipeline, "execute_notebook", _fake_execute(seen))
    argv = ["run", "--profile", "smoke", "--data-dir", str(synthetic_dataset.root), "--no-book",
            "--notebook", "notebooks/01_eda_manifest.ipynb"]
    assert main([*argv, "--set", "epochs=3"]) == 0
    folder = runfolder.run_folder(None, "smoke", {"epochs": "3"})
    assert f"run folder: {folder} (" in capsys.readouterr().out
    assert seen == [str(folder)] and not (outputs / "smoke").exists()
    assert json.loads((folder / "provenance.json").read_text())["profile"]["epochs"] == 3
    assert main(argv) == 0  # no overrides: the profile's own folder, as before
    assert "run folder:" not in capsys.readouterr().out
    assert seen[-1] == str(outputs / "smoke") and (outputs / "smoke" / "provenance.json").is_file()


def test_rerunning_one_notebook_builds_the_book_from_the_runs_files(synthetic_dataset, outputs, monkeypatch, capsys):
    """Issue 28: `--notebook` without `--no-book` used to fail in the book build (its table of contents names every
    notebook). The book is built from the run folder's executed notebooks, the summary pages executed again; a
    folder holding no executed notebooks of a run with the same settings, data and code is refused before any work."""
    seen: list[str] = []
    built: dict[str, Path] = {}
    monkeypatch.setattr(pipeline, "execute_notebook", _fake_execute(seen))
    monkeypatch.setattr(pipeline, "build_book", lambda root, executed, profile=None: built.update(executed) or root)
    out = outputs / "mine"
    base = ["run", "--profile", "smoke", "--data-dir", str(synthetic_dataset.root), "--out", str(out)]
    one = ["--notebook", "notebooks/03_binary_fusion.ipynb"]
    def refused(argv: list[str]) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "01_eda_manifest.ipynb" in err[0] and "--no-book" in err[0], err
        assert not built and not seen

    refused([*base, *one])
    assert not out.exists()
    assert main([*base, "--no-book"]) == 0 and not built and len(seen) == len(pipeline.NOTEBOOKS)
    seen.clear()
    first = (out / "provenance.json").read_bytes()
    refused([*base, *one, "--set", "epochs=2"])  # other settings: the folder's notebooks are not this run's
    assert (out / "provenance.json").read_bytes() == first and not (out / "previous").exists()
    assert main([*base, *one]) == 0
    assert seen == [str(out)] * 3
    steps = [s["name"] for s in json.loads((out / "provenance.json").read_text())["steps"]]
    assert steps == ["notebooks/03_binary_fusion.ipynb", "book/results_summary.ipynb", "book/provenance.ipynb",
                     "jupyter-book build"]
    assert built == {nb: out / "notebooks" / Path(nb).name for nb in pipeline.NOTEBOOKS}


def test_a_notebook_session_never_opens_the_report_folder(synthetic_dataset, outputs, capsys):
    study = Study.open("smoke", None, synthetic_dataset.root)
    assert study.paths.root == outputs / "smoke-interactive"
    assert "run folder:" in capsys.readouterr().out
    assert Study.open("smoke", None, synthetic_dataset.root, epochs=3).paths.root != outputs / "smoke"
    assert Study.open("smoke", outputs / "given", synthetic_dataset.root).paths.root == outputs / "given"
    assert not (outputs / "smoke").exists()


@pytest.mark.parametrize("notebook", pipeline.NOTEBOOKS)
def test_default_notebook_parameters_stay_out_of_the_report_folder(notebook, outputs):
    nb = nbformat.read(config.PROJECT_ROOT / notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params: dict = {}
    exec(cell.source, {}, params)
    assert params["run_dir"] is None
    folder = runfolder.run_folder(params["run_dir"], params["profile"], params["overrides"], interactive=True)
    assert folder != outputs / params["profile"]


# ----------------------------------------------------------------------------- the book


def _notebook(path: Path, injected: str) -> Path:
    params = nbformat.v4.new_code_cell('profile = "fast"\nrun_dir = None')
    params.metadata["tags"] = ["parameters", "remove-cell"]
    inj = nbformat.v4.new_code_cell(injected)
    inj.metadata["tags"] = ["injected-parameters"]
    body = nbformat.v4.new_markdown_cell("# A page\n\nThe text a reader sees.")
    code = nbformat.v4.new_code_cell("x = 1")
    code.metadata["tags"] = ["hide-input"]
    return write_notebook(path, params, inj, body, code)


def test_parameter_cells_are_removed_from_the_book_copy_only(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb", 'run_dir = "/home/someone/outputs/fast"')
    pipeline.hide_parameter_cells(path)
    pipeline.hide_parameter_cells(path)  # twice changes nothing more
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], [], ["hide-input"]]


def test_banner_for_smoke_and_changed_settings_only(tmp_path):
    assert pipeline.book_banner(config.get_profile("smoke")) == "smoke profile: the numbers mean nothing"
    assert pipeline.book_banner(config.get_profile("fast")) is None
    assert "epochs=3" in pipeline.book_banner(config.get_profile("fast", epochs=3))
    pipeline.write_book_config(config.PROJECT_ROOT / "_config.yml", tmp_path / "smoke.yml", pipeline.SMOKE_BANNER,
                               "An answer.")
    pipeline.write_book_config(config.PROJECT_ROOT / "_config.yml", tmp_path / "fast.yml", None, "An answer.")
    original = yaml.safe_load((config.PROJECT_ROOT / "_config.yml").read_text())
    fast = yaml.safe_load((tmp_path / "fast.yml").read_text())
    assert fast["parse"]["myst_substitutions"] == {"answer": "An answer."}
    fast["parse"]["myst_substitutions"] = original["parse"]["myst_substitutions"]
    assert fast == original
    smoke = yaml.safe_load((tmp_path / "smoke.yml").read_text())
    assert smoke["html"]["announcement"] == pipeline.SMOKE_BANNER
    assert {k: v for k, v in smoke["html"].items() if k != "announcement"} == original["html"]


def test_smoke_book_has_the_banner_on_every_page_and_no_parameters(tmp_path, monkeypatch):
    """A two-page book built with the project's _config.yml, as the pipeline builds a smoke run's book."""
    project = tmp_path / "project"
    (project / "book").mkdir(parents=True)
    (project / "_config.yml").write_text((config.PROJECT_ROOT / "_config.yml").read_text())
    (project / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: notebooks/page\n")
    (project / "references.bib").write_text("")
    shutil.copytree(config.PROJECT_ROOT / "book" / "_static", project / "book" / "_static")
    (project / "book" / "index.md").write_text("# Index\n")
    secret = "/home/someone/secret-outputs/smoke"
    executed = _notebook(tmp_path / "run" / "notebooks" / "page.ipynb", f'run_dir = "{secret}"')
    monkeypatch.setattr(pipeline, "PROJECT_ROOT", project)
    html = pipeline.build_book(tmp_path / "run", {"notebooks/page.ipynb": executed}, config.get_profile("smoke"))
    pages = [html / "book" / "index.html", html / "notebooks" / "page.html"]
    for page in pages:
        assert pipeline.SMOKE_BANNER in page.read_text(encoding="utf-8"), page
    assert "The text a reader sees" in pages[1].read_text(encoding="utf-8")
    leaked = [p for p in html.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert "injected-parameters" in executed.read_text()  # the run's own copy is left as papermill wrote it
    assert "remove-cell" not in json.dumps(json.loads(executed.read_text())["cells"][1]["metadata"])


def test_model_card_page_is_in_the_results_part():
    toc = yaml.safe_load((config.PROJECT_ROOT / "_toc.yml").read_text())
    results = next(p for p in toc["parts"] if p["caption"] == "Results")
    assert {"file": "book/model_card"} in results["chapters"]
    page = (config.PROJECT_ROOT / "book" / "model_card.md").read_text()
    for words in ("not a medical device", "train-final", "predict", "spectrum bias", "QUS", "calibration"):
        assert words in page, words


# ----------------------------------------------------------------------------- the command line and the README


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{parser.prog}: command {choice.dest} has no help"
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_and_command_has_help():
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and len(action.help) > 10, f"{parser.prog} {action.option_strings or action.dest}"


def test_version_and_profiles(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"osteo_helpers {__version__}"
    assert main(["profiles"]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("field"))
    assert header.split() == ["field", *config.PROFILES, "accepts"]
    for name in config.get_profile("fast").to_dict():
        if name != "name":
            assert re.search(rf"^{name}\s", text, re.M), name


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def test_readme_commands_use_the_virtualenv():
    text = README.read_text()
    commands = [line for block in _bash_blocks(text) for line in block.replace("\\\n", " ").splitlines()]
    commands += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    tools = r"(python3?|pip|papermill|jupyter|pytest|jupyter-book)"
    bare = [c for c in commands if re.match(rf"\s*{tools}\s", c)]
    assert bare == [], "use .venv/bin/... or the installed `osteo` script: " + "; ".join(bare)


def test_readme_papermill_example_creates_its_output_folder():
    found = 0
    for block in _bash_blocks(README.read_text()):
        lines = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
        for k, words in enumerate(lines):
            if words and words[0].endswith("papermill"):
                found += 1
                folder = str(Path(words[2]).parent)
                before = [w for line in lines[:k] for w in line]
                assert "mkdir" in before and folder in before, f"{folder} is not created before papermill writes"
    assert found
