"""Notebooks run one at a time (papermill, as a researcher would) or in one shared kernel: a session records
its provenance, and progress is plain lines outside a terminal (a failure that names its cell:
tests/test_faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_notebook


def test_notebooks_sharing_a_kernel_start_as_if_alone(tmp_path: Path) -> None:
    """`osteo run` runs every notebook in one kernel: the next one finds no variable, output or figure of
    the last, counts its cells from 1, and the memory the last one held in a reference cycle is freed."""
    import nbformat

    from osteo_helpers.pipeline import Kernel, execute_notebook

    first = write_notebook(tmp_path / "first.ipynb", "import matplotlib.pyplot as plt\nleftover = 1\nplt.figure()",
                           "leftover",
                           "import builtins, weakref\nclass Node:\n    pass\n"
                           "cycle = Node()\ncycle.itself = cycle\nbuiltins._osteo_probe = weakref.ref(cycle)")
    second = write_notebook(tmp_path / "second.ipynb",
                            "import matplotlib.pyplot as plt\n"
                            "assert 'leftover' not in globals() and not Out and globals().get('_', '') == ''\n"
                            "assert plt.get_fignums() == []\n"
                            "import builtins\nassert builtins._osteo_probe() is None, 'a cycle of the last one lives'")
    with Kernel() as kernel:
        execute_notebook(first, tmp_path / "first-out.ipynb", {}, kernel)
        execute_notebook(second, tmp_path / "second-out.ipynb", {}, kernel)
    assert nbformat.read(tmp_path / "second-out.ipynb", as_version=4).cells[0].execution_count == 1


@pytest.mark.parametrize("fails", [False, True], ids=["finished", "failed"])
def test_a_notebook_run_by_papermill_records_its_provenance(tmp_path: Path, synthetic_dataset, fails: bool) -> None:
    """Without `osteo run`, `Study.open` records the session as the pipeline would: settings, code,
    data, steps and how it ended (a failure names the cell)."""
    from osteo_helpers.pipeline import PipelineError, execute_notebook

    src = write_notebook(tmp_path / "session.ipynb",
                         f"from osteo_helpers.study import Study\n"
                         f"study = Study.open('smoke', {str(tmp_path / 'run')!r}, {str(synthetic_dataset.root)!r}, "
                         "epochs=3)",
                         "raise ValueError('boom')" if fails else "x = 1")
    if fails:
        with pytest.raises(PipelineError):
            execute_notebook(src, tmp_path / "out.ipynb", {})
    else:
        execute_notebook(src, tmp_path / "out.ipynb", {})
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["status"] == ("failed" if fails else "finished")
    assert record["profile"]["epochs"] == 3 and record["overrides"] == {"epochs": 3}
    assert record["git"]["commit"] and record["packages"]["torch"] and "duration_s" in record
    assert [s["name"] for s in record["steps"]] == ["notebook session"]
    if fails:
        assert record["failure"]["source"] == "raise ValueError('boom')"
        assert record["failure"]["error"] == "ValueError: boom"


def test_progress_is_plain_lines_outside_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """No redrawn bars in a notebook or a log: a line per fit with the time left, and a line every few seconds."""
    from osteo_helpers import progress
    from osteo_helpers.progress import show_progress

    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert not show_progress()  # pytest's stderr is not a terminal
    for done in (1, 2, 3):
        progress.report("fit_done", arm="image", task="binary", seed=42, fold=done - 1, done=done, total=3,
                        elapsed=10.0 * done)
    progress.report("fits_done", total=3, seconds=30.0, executor="in-process")
    assert list(progress.track(range(3), "images", every=0.0)) == [0, 1, 2]
    out = capsys.readouterr().out
    assert "2/3 fits done (last: image (binary), seed 42 fold 1), about 10s left" in out
    assert "3 fits done in 30s (in-process)" in out
    assert "images: 1 of 3, about" in out and "\r" not in out

