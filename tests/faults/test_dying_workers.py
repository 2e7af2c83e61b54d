"""A worker that dies ends the command within seconds, in one line, and takes every process the command
started with it (issue 31.4).

The fusion arm of `dying_arm` kills its own worker (SIGKILL) at a chosen moment, so each case is
the same every time: while training (its progress bar holds a named semaphore), and while sending
its result (the pool's manager then waits for the rest of the message for ever, and every other
worker for the lock the dead one held). `train-final --workers 2` runs as a new process, as a user
runs it, so that the processes it leaves and everything printed at its exit are seen; every
process it started carries a mark in its environment and is looked for afterwards. The Ray case is in
`tests/test_executor.py`, beside the other test that needs the session's Ray instance: in one file, one pytest
worker starts one instance (8 s) for both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from osteo_helpers import executor, folders
from osteo_helpers.library_warnings import WARNINGS_ENV
from tests.conftest import BUNDLE_SETTINGS
from tests.faults import dying_arm

ROOT = Path(__file__).resolve().parents[2]
MARK_ENV = "OSTEO_TEST_MARK"
#: seconds from the death to the end of the command (it takes about one on an idle machine)
WITHIN = 10
DIED = "error: a worker died while fitting (killed, or out of memory?): every fit that finished is saved; run the " \
       "command again to train the others ("


def train_final_argv(bundle, out: Path) -> list[str]:
    return ["train-final", "--profile", "smoke", *(f"--set={k}={v}" for k, v in BUNDLE_SETTINGS.items()),
            "--data-dir", str(bundle.dataset.root), "--out", str(out)]


def marked(mark: str) -> list[int]:
    """The processes whose environment holds ``mark`` (those the command started, however deep)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if f"{MARK_ENV}={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_a_command_with_local_workers_ends_when_done_and_its_workers_with_it(synthetic_bundle, tmp_path):
    """`osteo` leaves by `__main__.run` (no interpreter teardown): it hung for good after a `--workers 2` command
    had finished, its exit handler waiting on a worker pool that Python's own exit shuts down first."""
    mark = f"done-{os.getpid()}-{time.time_ns()}"
    env = {k: v for k, v in os.environ.items() if k not in (WARNINGS_ENV, executor.EXECUTOR_ENV)}
    env.update({MARK_ENV: mark, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1",
                folders.CACHE_ENV_VAR: str(synthetic_bundle.cache)})
    argv = [sys.executable, "-m", "osteo_helpers", *train_final_argv(synthetic_bundle, tmp_path / "model"),
            "--workers", "2"]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the command did not end after its work was done")
    finally:
        left = marked(mark)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "model" / "bundle.json").is_file()
    assert left == [], f"processes left running after the command ended: {left}"


@pytest.mark.parametrize("moment", ["training", "sending"])
def test_a_killed_local_worker_ends_the_command_within_seconds_alone_and_in_one_line(moment, synthetic_bundle,
                                                                                      tmp_path):
    mark, died = f"{moment}-{os.getpid()}-{time.time_ns()}", tmp_path / "died"
    env = {k: v for k, v in os.environ.items() if k not in (WARNINGS_ENV, executor.EXECUTOR_ENV)}
    env.update({MARK_ENV: mark, dying_arm.DIE_ENV: moment, dying_arm.DIED_ENV: str(died), "TQDM_DISABLE": "1",
                "OMP_NUM_THREADS": "1", folders.CACHE_ENV_VAR: str(synthetic_bundle.cache)})
    driver = "import sys; from tests.faults.dying_arm import command; sys.exit(command(sys.argv[1:]))"
    argv = [sys.executable, "-c", driver, *train_final_argv(synthetic_bundle, tmp_path / "model"), "--workers", "2"]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        ended = time.time()
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the command hung after its worker died (stderr: {exc.stderr!r})")
    finally:
        deadline = time.time() + 10  # the fork server ends when it sees its parent gone (Python's own exit: 1-2 s)
        while marked(mark) and time.time() < deadline:
            time.sleep(0.1)
        left = marked(mark)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left running after the command ended: {left}"
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(DIED), done.stderr
    assert ended - min(map(float, died.read_text().split())) < WITHIN
    assert not (tmp_path / "model").exists()
