"""One line, never a traceback (issue 21.5): image size limits before decoding, profile fields checked for what
they mean before any work, a bundle with a missing key, Ctrl-C in ablation and in run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from osteo_helpers import config, folders
from osteo_helpers.bundle import Bundle, seal
from osteo_helpers.cli import main
from osteo_helpers.errors import INTERRUPTED, UsageError
from tests.conftest import write_notebook


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", ["data check", "ablation", "predict"])
def test_a_decompression_bomb_is_one_line_naming_the_file(command, cohort, saved_bundle, tmp_path, make, capsys):
    root = shutil.copytree(cohort[2].root, tmp_path / "knee-osteoporosis")
    bomb = make.bomb_jpeg(root / cohort[2].images["OP4"].relative_to(cohort[2].root))
    argv = {"data check": ["data", "check", "--data-dir", str(root)],
            "ablation": ["ablation", "--profile", "smoke", "--out", str(tmp_path / "abl"), "--data-dir", str(root)],
            "predict": ["predict", "--model", str(saved_bundle[1]), "--image", str(bomb), "--age", "60", "--sex", "f"]}
    rc = main(argv[command])
    line = _one_line(capsys)
    assert rc == 2 and str(bomb.name) in line and ("65500" in line or "decompression" in line.lower()), line
    assert not (tmp_path / "abl").exists()


SETTINGS = [("name=mine", "profile field 'name' cannot be set"),
            ("weights={not_a_checkpoint}", "not a PyTorch checkpoint"),
            ("weights={other_width}", "do not fit smallcnn of width 16"),
            ("n_folds=500", "profile field 'n_folds': 500 is not allowed for this dataset (must be at most")]


@pytest.mark.parametrize("command, setting, words", [
    (command, setting, words) for command in ("run", "ablation", "train-final") for setting, words in SETTINGS
    if not (command == "train-final" and setting.startswith("n_folds"))])  # train-final makes no folds
def test_profile_fields_are_checked_for_what_they_mean_before_any_work(command, setting, words, cohort, tmp_path,
                                                                       capsys, monkeypatch):
    from osteo_helpers import pipeline, train_final

    monkeypatch.setattr(pipeline, "execute_notebook", lambda *a: pytest.fail("a notebook ran"))
    monkeypatch.setattr(train_final, "fit_arms", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "notes.txt").write_text("a file that is no checkpoint")
    torch.save({"features.0.weight": torch.zeros(8, 1, 5, 5)}, tmp_path / "narrow.pth")
    value = setting.format(not_a_checkpoint=tmp_path / "notes.txt", other_width=tmp_path / "narrow.pth")
    out = tmp_path / "out"
    rc = main([command, "--profile", "smoke", "--out", str(out), "--data-dir", str(cohort[2].root), "--set", value])
    line = _one_line(capsys)
    assert rc == 2 and words in line, line
    assert "do not fit" not in line or "do not fit" in words, line  # a file that is no checkpoint is not a misfit
    assert not out.exists()


def test_a_bundle_lacking_a_key_is_one_line(saved_bundle, tmp_path):
    _, folder = saved_bundle
    for path in (("self_check",), ("screening", "threshold"), ("files",)):
        copy = shutil.copytree(folder, tmp_path / "-".join(path))
        facts = json.loads((copy / "bundle.json").read_text())
        node = facts
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        facts["seal"] = seal(facts)
        (copy / "bundle.json").write_text(json.dumps(facts))
        with pytest.raises(UsageError) as err:
            Bundle.load(copy)
        assert f"lacks {'.'.join(path)}" in str(err.value) and "\n" not in str(err.value)


def _interrupt(argv: list[str], ready: Path, tmp_path: Path, wait: float = 120) -> tuple[int, str, float]:
    """Start the command, wait until ``ready`` exists, press Ctrl-C; (exit status, stderr, seconds to exit)."""
    env = {**os.environ, "TQDM_DISABLE": "1", folders.CACHE_ENV_VAR: str(tmp_path / "image-cache")}
    proc = subprocess.Popen([sys.executable, "-m", "osteo_helpers", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=config.PROJECT_ROOT)
    deadline = time.time() + wait
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    start = time.time()
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err, time.time() - start


def test_ctrl_c_ends_ablation_in_one_line_leaving_no_partial_file(cohort, tmp_path, capsys, monkeypatch):
    """A real SIGINT to this process while the ablation trains and writes its fold cache."""
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(tmp_path / "image-cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    out = tmp_path / "abl"
    stop = threading.Event()

    def press_ctrl_c_once_a_fold_is_saved() -> None:
        while not stop.wait(0.05):
            if next(out.rglob("done.json"), None) is not None:
                os.kill(os.getpid(), signal.SIGINT)
                return

    watcher = threading.Thread(target=press_ctrl_c_once_a_fold_is_saved, daemon=True)
    watcher.start()
    try:
        rc = main(["ablation", "--profile", "smoke", "--out", str(out), "--data-dir", str(cohort[2].root),
                   "--set", "image_size=32", "--set", "num_threads=1"])
    finally:
        stop.set()
        watcher.join()
    assert rc == 130 and capsys.readouterr().err == f"{INTERRUPTED}\n"  # one line, no blank one before it
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    for done in out.rglob("done.json"):  # every fold recorded as finished has all its files
        assert all((done.parent / name).is_file() for name in json.loads(done.read_text())["files"])


def test_ctrl_c_interrupts_the_running_notebook_of_a_run(cohort, tmp_path):
    """A real process and kernel (about 10 s on quiet cores): the terminal's Ctrl-C never reaches the kernel,
    which runs in a session of its own; before, the run ended only when the running cell did."""
    ready = tmp_path / "cell-started"
    write_notebook(tmp_path / "slow.ipynb", f"import time, pathlib\npathlib.Path({str(ready)!r}).touch()\n"
                                           "time.sleep(120)")
    out = tmp_path / "run"
    rc, err, seconds = _interrupt(["run", "--profile", "smoke", "--out", str(out), "--data-dir", str(cohort[2].root),
                                   "--no-book", "--notebook", str(tmp_path / "slow.ipynb")], ready, tmp_path)
    assert rc == 130 and err.strip().splitlines()[-1] == INTERRUPTED and "Traceback" not in err, err
    assert seconds < 10
    record = json.loads((out / "provenance.json").read_text())
    assert record["status"] == "interrupted" and record["failure"]["error"].startswith("KeyboardInterrupt")
