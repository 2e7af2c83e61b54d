"""A command line that answers at once and never leaks a traceback on Ctrl-C (issue 31, points 1 and 2; issue 33.3).

Speed is measured by benchmarks/bench_startup.py, not here: these tests check what makes it fast, that help,
usage errors and spec errors import none of the heavy libraries, and that the help text of every command
stays what it was when the command line became one module per command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELP = ROOT / "tests" / "cli_help"
#: libraries a command may import only once it works: each costs from a tenth of a second to seconds
HEAVY = ("torch", "pandas", "sklearn", "scipy", "matplotlib", "PIL", "skops", "efficientnet_lite_pytorch")
COMMANDS = ["", "data", "data check", "data import", "cohort", "cohort check", "cohort export", "cohort schema", "run",
            "answer", "ablation", "train-final", "predict", "validate", "profiles"]


def _imported_by(argv: list[str]) -> tuple[int, list[str], str]:
    """Run the command line in a fresh interpreter; its exit status, the heavy modules it imported, stderr."""
    code = ("import json, sys\nfrom osteo_helpers.cli import main\ntry:\n    rc = main(sys.argv[1:])\n"
            "except SystemExit as exc:\n    rc = exc.code\nheavy = [m for m in " + repr(HEAVY)
            + " if m in sys.modules]\nprint(json.dumps([rc, heavy]), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "100"})
    lines = done.stderr.strip().splitlines()
    rc, heavy = json.loads(lines[-1])
    return rc, heavy, "\n".join(lines[:-1])


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["run", "--set", "epochs=x"],
                                  ["profiles"], ["run", "--workers", "nope"]], ids=" ".join)
def test_help_and_usage_errors_import_no_heavy_library(argv):
    rc, heavy, _ = _imported_by(argv)
    assert rc in (0, 2) and heavy == [], heavy


@pytest.mark.parametrize("command", ["run", "ablation", "train-final", "cohort check", "validate"])
def test_a_spec_error_is_one_line_before_any_heavy_import(command, tmp_path):
    """A spec that is not TOML took 34 s to report under load: every command reads it first."""
    spec = tmp_path / "bad.toml"
    spec.write_text("x = [\n")
    argv = [*command.split(), *(["--cohort", str(spec)] if command != "cohort check" else [str(spec)])]
    argv += {"ablation": ["--out", str(tmp_path / "o")], "train-final": ["--out", str(tmp_path / "o")],
             "validate": ["--model", str(tmp_path / "m"), "--out", str(tmp_path / "o")]}.get(command, [])
    rc, heavy, err = _imported_by(argv)
    assert rc == 2 and err.splitlines() == [f"error: cohort spec {spec}: not valid TOML (Invalid value (at end of "
                                            "document))"]
    assert not {"torch", "sklearn", "matplotlib", "skops"} & set(heavy), heavy


@pytest.mark.parametrize("command", COMMANDS)
def test_the_help_text_of_every_command_is_what_it_was(command):
    """The command line became one module per command (issue 33): the help a user reads did not change."""
    name = command.replace(" ", "_") or "osteo"
    done = subprocess.run([sys.executable, "-m", "osteo_helpers", *command.split(), "--help"], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "100"})
    assert done.returncode == 0 and done.stdout == (HELP / f"{name}.txt").read_text()


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 1.6])
def test_ctrl_c_at_any_moment_of_the_start_is_one_line_and_130(delay, tmp_path):
    """An interrupt in the first second (Python starting, the package importing, the parser, torch loading for
    predict) gave a KeyboardInterrupt traceback of 6-88 lines: the handler comes before every import."""
    proc = subprocess.Popen([sys.executable, "-m", "osteo_helpers", "predict", "--model", str(tmp_path / "none"),
                             "--image", "x.jpg", "--age", "60", "--sex", "female"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 2:  # the command finished first (its one error line): nothing was left to interrupt
        assert len(err.strip().splitlines()) == 1
        return
    assert proc.returncode == 130 and err == "interrupted\n", err  # one line: predict has nothing to resume
    assert out == ""


def test_an_interrupt_after_the_command_finished_leaves_its_exit_status():
    """The interpreter's shutdown puts the default handler back in place of a Python one, so a Ctrl-C in the
    last instants (seen under load at 0.6 and 1 s after a failing predict) killed the process: status -2,
    neither the command's 2 nor 130. Once the command has finished, an interrupt is ignored."""
    code = ("import os, signal, sys\nfrom osteo_helpers.__main__ import main\n"
            "status = main(['predict', '--model', sys.argv[1], '--image', 'x.jpg', '--age', '60', '--sex', 'female'])\n"
            "os.kill(os.getpid(), signal.SIGINT)\nsys.exit(status)\n")
    done = subprocess.run([sys.executable, "-c", code, "/nonexistent/model"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_interrupt_inside_a_compiled_modules_initialisation_is_an_interrupt():
    """Ctrl-C while scipy's HiGHS module initialised reached the user as a 40-line ImportError
    ("initialization failed", caused by the KeyboardInterrupt) with exit status 1."""
    from osteo_helpers.cli import _caused_by_interrupt

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise ImportError("initialization failed") from interrupt
    except ImportError as exc:
        assert _caused_by_interrupt(exc)
    assert not _caused_by_interrupt(ImportError("initialization failed"))


def test_an_interrupt_lost_in_a_finaliser_is_raised_again_and_nothing_is_printed(capsys, monkeypatch):
    """Ctrl-C inside a weak-reference callback (an import's module lock has one, seen 0.6 s into `predict`) was
    printed as 'Exception ignored in ...' with a 5-line traceback, and the command ran on to its end and exited
    with its own status: now nothing is printed and the work ends as interrupted."""
    from osteo_helpers import progress

    class Lost:
        def __del__(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # Python's, which prints (pytest's records)
    hook = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), progress.interruptible():
        Lost()
        ran_on = True
    assert ran_on and capsys.readouterr().err == "" and sys.unraisablehook is hook
