"""Faults a run must survive or refuse: writes into the data, two writers, how a run ended, stale caches.

The faults of issue 21 (verified files, no pickle, one run per folder, impossible inputs, one line,
leftovers) have a package of their own, one module per family: tests/faults/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest

from osteo_helpers import config, errors, folders, images, pipeline
from osteo_helpers.cli import main
from osteo_helpers.study import RUN_ID_ENV, Study
from tests.conftest import write_notebook


@pytest.fixture
def quiet_env(monkeypatch, tmp_path):
    """A private cache; the variables a run sets are restored afterwards."""
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setenv(RUN_ID_ENV, "test")
    monkeypatch.setenv("TQDM_DISABLE", "1")


# ----------------------------------------------------------------------------- never write into the data


def test_check_study_and_image_cache_leave_the_data_untouched(synthetic_dataset, synth, tmp_path, quiet_env, capsys):
    root = synthetic_dataset.root
    before = synth.snapshot(root)
    assert main(["data", "check", "--data-dir", str(root)]) == 0
    assert main(["data", "check", "--json", "--data-dir", str(root)]) == 0
    study = Study.open("smoke", tmp_path / "run", root, image_size=32, n_folds=3)
    assert study.findings["unreadable_images"] == []
    study.folds()
    stack = study.images(progress=False)
    assert stack.shape == (20, 32, 32) and stack.any()
    assert (tmp_path / "run" / "tables" / "manifest.csv").is_file()
    # the cache is where it was asked to be: the 20 images at the network's, the encoder's and the figures' sizes,
    # from one decode each
    sizes = (32, study.recipe.size, Study.FIGURE_SIZE)
    assert {size: len(list((tmp_path / "cache").glob(f"letterbox-{size}/*/*.npy"))) for size in sizes} == \
        dict.fromkeys(sizes, 20)
    assert synth.snapshot(root) == before  # same files, sizes, modification times and bytes


def test_outputs_inside_the_data_are_refused(synthetic_dataset, synth, tmp_path, monkeypatch, capsys):
    root = synthetic_dataset.root
    before = synth.snapshot(root)
    link = tmp_path / "innocent-looking"
    link.symlink_to(root / "normal", target_is_directory=True)
    data_arg = ["--data-dir", str(root)]
    for argv in (["run", "--out", str(root / "out")], ["run", "--out", str(link / "run")],
                 ["ablation", "--out", str(root / "osteopenia")],
                 ["data", "import", str(root), "--dest", str(root / "copy")]):
        assert main(argv + (data_arg if argv[0] != "data" else [])) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"inside the dataset folder {root}" in err, err
    monkeypatch.setenv(folders.OUTPUT_ENV_VAR, str(root / "outputs"))  # the default run folder, outputs/<profile>
    assert main(["run", "--profile", "smoke", *data_arg]) == 2
    assert "inside the dataset folder" in capsys.readouterr().err
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(link / "cache"))
    with pytest.raises(errors.UsageError, match="cache folder .* inside the dataset folder"):
        folders.cache_dir()
    with pytest.raises(errors.UsageError, match="run folder .* inside the dataset folder"):
        Study.open("smoke", root / "run", root)  # found from the folder itself, with no data_dir given
    assert synth.snapshot(root) == before


# ----------------------------------------------------------------------------- runs say how they ended


def _run(tmp_path: Path, data_root: Path, **kwargs) -> Path:
    return pipeline.run("smoke", tmp_path / "run", data_root, notebooks=("notebooks/01_eda_manifest.ipynb",),
                        build=False, **kwargs)


def test_provenance_says_running_then_finished(synthetic_dataset, tmp_path, quiet_env, monkeypatch):
    seen = []

    def execute(source, target, params, kernel=None):
        seen.append(json.loads((tmp_path / "run" / "provenance.json").read_text())["status"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{}")
        return 0.5

    monkeypatch.setattr(pipeline, "execute_notebook", execute)
    _run(tmp_path, synthetic_dataset.root, overrides={"epochs": "1"})
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert seen == ["running"]
    assert record["status"] == "finished" and "failure" not in record
    assert [s["name"] for s in record["steps"]] == ["notebooks/01_eda_manifest.ipynb"]
    assert record["profile"]["epochs"] == 1 and record["ended"] >= record["started"]


@pytest.mark.parametrize("error", [
    pipeline.PipelineError("01_eda_manifest.ipynb failed in cell 7", notebook="01_eda_manifest.ipynb", cell=7,
                           error="ValueError: boom"),
    KeyboardInterrupt(),
])
def test_provenance_says_failed_with_notebook_cell_and_error(synthetic_dataset, tmp_path, quiet_env, monkeypatch,
                                                             error):
    """A failed notebook is `failed` with where and why; Ctrl-C is `interrupted` (issue 31), never `failed`."""
    def execute(source, target, params, kernel=None):
        raise error

    monkeypatch.setattr(pipeline, "execute_notebook", execute)
    with pytest.raises(type(error)):
        _run(tmp_path, synthetic_dataset.root)
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["status"] == ("failed" if isinstance(error, pipeline.PipelineError) else "interrupted")
    if isinstance(error, pipeline.PipelineError):
        assert record["failure"] == {"notebook": "01_eda_manifest.ipynb", "cell": 7, "error": "ValueError: boom"}
    else:
        assert record["failure"] == {"notebook": "notebooks/01_eda_manifest.ipynb", "cell": None,
                                     "error": "KeyboardInterrupt"}
    assert not (tmp_path / "run" / folders.LOCK_NAME).exists()  # the lock goes with the run


def test_failing_cell_is_named_by_notebook_index_and_error_line(tmp_path):
    source = write_notebook(tmp_path / "broken.ipynb", "x = 1", "raise ValueError('boom\\nmore')")
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.execute_notebook(source, tmp_path / "out" / "broken.ipynb", {})
    assert (err.value.notebook, err.value.cell, err.value.error) == ("broken.ipynb", 1, "ValueError: boom")
    assert "broken.ipynb failed in cell 1" in str(err.value)


# ----------------------------------------------------------------------------- one writer per run folder


HOLDER = """
import sys, time
from osteo_helpers.folders import exclusive
with exclusive(sys.argv[1], command="holder --out " + sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process writing tmp/run; killed (SIGKILL) when the test ends, if it still lives."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                            cwd=config.PROJECT_ROOT)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("command", ["run", "ablation"])
def test_second_writer_is_refused_naming_the_first(holder, synthetic_dataset, tmp_path, capsys, command):
    rc = main([command, "--profile", "smoke", "--out", str(tmp_path / "run"),
               "--data-dir", str(synthetic_dataset.root)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    for words in (f"pid {holder.pid}", socket.gethostname(), "started 20", f"holder --out {tmp_path / 'run'}"):
        assert words in err, err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [folders.LOCK_NAME]  # nothing else written


def test_lock_of_a_killed_run_is_taken_over(holder, synthetic_dataset, tmp_path, quiet_env, monkeypatch):
    with pytest.raises(folders.FolderBusyError):
        with folders.exclusive(tmp_path / "run"):
            pass
    holder.kill()  # as a run killed with SIGKILL: no clean-up, the lock file stays behind
    holder.wait()
    assert json.loads((tmp_path / "run" / folders.LOCK_NAME).read_text())["pid"] == holder.pid
    monkeypatch.setattr(pipeline, "execute_notebook", lambda source, target, params, kernel=None: 0.0)
    _run(tmp_path, synthetic_dataset.root)
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["status"] == "finished" and record["replaced_stale_lock"]["pid"] == holder.pid


def test_lock_file_naming_a_dead_process_is_stale(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / folders.LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                          "started": "2026-01-01T00:00:00", "command": "killed"}))
    assert not folders.pid_alive(pid) and folders.pid_alive(os.getpid())
    with folders.exclusive(folder, command="me") as lock:
        assert lock.replaced["pid"] == pid and lock.owner["pid"] == os.getpid()
        assert json.loads((folder / folders.LOCK_NAME).read_text())["command"] == "me"
        with pytest.raises(folders.FolderBusyError, match=f"pid {os.getpid()}"):
            with folders.exclusive(folder):
                pass
    assert not (folder / folders.LOCK_NAME).exists()


# ----------------------------------------------------------------------------- the cache knows its decoder


def test_a_study_decodes_each_image_once_at_full_resolution(synthetic_dataset, tmp_path, quiet_env, monkeypatch):
    """The checksum that orders the folds and the letterboxes of the network, the encoder and the figures come
    from one decode of each picture (a 2,000 px radiograph takes 10-20 ms to decode: three more per image cost
    seconds on every cold run); a second study of the same settings decodes nothing."""
    decoded = []
    real = images.open_grayscale
    monkeypatch.setattr(images, "open_grayscale", lambda path, *a: decoded.append(Path(path).name) or real(path, *a))
    study = Study.open("smoke", tmp_path / "run", synthetic_dataset.root, image_size=32)
    study.rows()
    study.images(Study.FIGURE_SIZE, progress=False)
    assert len(decoded) == len(set(decoded)) == len(study.cohort) == 20
    decoded.clear()
    again = Study.open("smoke", tmp_path / "again", synthetic_dataset.root, image_size=32)
    again.rows()
    again.images(Study.FIGURE_SIZE, progress=False)
    assert decoded == []


def test_image_cache_is_keyed_by_decoder(tmp_path, synth, monkeypatch):
    image = tmp_path / "OS1.jpg"
    image.write_bytes(synth.jpeg_bytes(1, (64, 48)))
    cache = images.ImageCache(tmp_path / "cache", 32)
    assert f"decoder{images.DECODER_VERSION}" in str(cache.root) and PIL.__version__ in str(cache.root)
    decoded = cache.get(image, "sha")
    real_decode = images.decode_letterbox
    with monkeypatch.context() as m:
        m.setattr(images, "decode_letterbox", lambda *a: pytest.fail("a recorded entry was decoded again"))
        np.testing.assert_array_equal(images.ImageCache(tmp_path / "cache", 32).get(image, "sha"), decoded)
    np.save(cache.path_for("sha"), np.full((32, 32), 7, np.uint8))  # what an older decoder might have written
    for attr, module, value in (("DECODER_VERSION", images, images.DECODER_VERSION + 1), ("__version__", PIL, "0.0.1")):
        monkeypatch.setattr(module, attr, value)
        other = images.ImageCache(tmp_path / "cache", 32)
        assert other.root != cache.root
        np.testing.assert_array_equal(other.get(image, "sha"), real_decode(image, 32))  # decoded afresh
