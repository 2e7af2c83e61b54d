"""The executor: the same out-of-fold tables in-process, in local workers and on Ray; a dying worker
loses only its own fold; bad options are one line and exit 2 before any work.

Worker tests spawn processes that import torch (a few seconds each on the shared 2-core machine):
that is what they test. The two Ray tests (the tables, and a killed Ray worker of issue 31.4) share the session's
local 2-CPU Ray instance and are marked slow: both in this file, so that one pytest worker starts it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from osteo_helpers import arms, config, executor, folders, progress, splits
from osteo_helpers.arms import ARM_REGISTRY
from osteo_helpers.arms.networks import FusionArm
from osteo_helpers.cli import main
from osteo_helpers.threads import THREADS_ENV, available_cores, fit_threads
from osteo_helpers.training import DEVICE_ENV, pick_device, use_device
from tests.faults import dying_arm
from tests.faults.test_dying_workers import DIED, WITHIN, train_final_argv

COUNTS = {"normal": 8, "osteopenia": 8, "osteoporosis": 8}
ARMS = ("fusion", "age")  # a heavy arm (the executor runs it) and a quick one (run here)
DIE_ENV = "OSTEO_TEST_DIE_AT"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, synth):
    root = tmp_path_factory.mktemp("executor") / "knee-osteoporosis"
    ds = synth.make_dataset(root, counts=COUNTS, seed=4)
    rows = synth.model_rows(ds, tmp_path_factory.mktemp("cache"))
    return rows, splits.make_folds(rows, "label_3class", 3, 1, seed=2)


@pytest.fixture(scope="module")
def profile():
    return config.get_profile("smoke", image_size=32, epochs=2, patience=1, batch_size=8, n_folds=3, n_repeats=1,
                              num_threads=1, seed=2)


@pytest.fixture(autouse=True)
def no_executor_from_outside(monkeypatch):
    """Each test chooses its executor; none leaks from the environment or into the next test."""
    monkeypatch.setenv(executor.EXECUTOR_ENV, "")
    monkeypatch.setattr(executor, "_current", None)


def _tables(cohort, profile, cache: Path, ex: executor.Executor) -> dict[str, pd.DataFrame]:
    rows, folds = cohort
    return arms.run_arms_together(ARMS, rows, folds, "binary", profile=profile, cache=cache, progress_bar=False,
                                  executor=ex)


@pytest.fixture(scope="module")
def here(cohort, profile, tmp_path_factory) -> tuple[dict[str, pd.DataFrame], Path]:
    """The tables made in this process, and their cache folder: what every executor must reproduce."""
    cache = tmp_path_factory.mktemp("in-process")
    return _tables(cohort, profile, cache, executor.InProcess()), cache


def _ignores_ctrl_c(task, shared) -> bool:
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_two_local_workers_give_the_in_process_tables(cohort, profile, here, tmp_path, monkeypatch):
    here, here_cache = here
    events = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(events))
    workers = executor.LocalWorkers(2)
    try:
        there = _tables(cohort, profile, tmp_path / "workers", workers)
        assert list(workers.map(_ignores_ctrl_c, [None], None)) == [(0, True)]  # the parent handles Ctrl-C
    finally:
        workers.close()
    for name in ARMS:
        pd.testing.assert_frame_equal(here[name], there[name], check_exact=True)
    saved = sorted(p.relative_to(tmp_path / "workers").as_posix() for p in (tmp_path / "workers").rglob("done.json"))
    assert saved == sorted(p.relative_to(here_cache).as_posix() for p in here_cache.rglob("done.json"))
    assert len(saved) == 6
    done = [e for e in progress.read_events(events)[0] if e["event"] == "fit_done"]
    assert [e["done"] for e in done] == list(range(1, 7)) and {e["total"] for e in done} == {6}
    assert {(e["arm"], e["fold"]) for e in done} == {(a, f) for a in ARMS for f in range(3)}


def _where_am_i(task, shared) -> tuple[str | None, str]:
    return os.environ.get(task), os.getcwd()


def test_a_worker_sees_the_environment_and_folder_of_now_not_of_the_fork_servers_start(tmp_path, monkeypatch):
    """Workers fork from a server started once; each pool's workers still get the caller's current
    environment and working folder, as spawned ones would."""
    for value in ("first", "second"):
        monkeypatch.setenv("OSTEO_TEST_WHERE", value)
        folder = tmp_path / value
        folder.mkdir()
        monkeypatch.chdir(folder)
        workers = executor.LocalWorkers(1)
        try:
            assert list(workers.map(_where_am_i, ["OSTEO_TEST_WHERE"], None)) == [(0, (value, str(folder)))]
        finally:
            workers.close()


class DyingFusion(FusionArm):
    """The residual fusion, except that the fit named by $OSTEO_TEST_DIE_AT ("random_state:cache folder")
    kills its worker once the other folds are saved (so none of theirs is in flight)."""

    def _fit(self, rows, y):
        target = os.environ.get(DIE_ENV, "")
        if target and self.fixed_epochs is None and target.split(":", 1)[0] == str(self.random_state):
            folder = Path(target.split(":", 1)[1])
            deadline = time.time() + 300
            while len(list(folder.glob("seed*_fold*/done.json"))) < 2 and time.time() < deadline:
                time.sleep(0.2)
            os._exit(1)
        super()._fit(rows, y)


def _fits(monkeypatch) -> list[int]:
    """random_state of every outer fit run in this process."""
    calls: list[int] = []
    original = arms.Arm.fit

    def fit(self, rows, y):
        if getattr(self, "fixed_epochs", None) is None:
            calls.append(self.random_state)
        return original(self, rows, y)

    monkeypatch.setattr(arms.Arm, "fit", fit)
    return calls


def test_a_dying_worker_leaves_no_half_written_fold_and_the_rerun_retrains_only_it(cohort, profile, tmp_path,
                                                                                   monkeypatch):
    rows, folds = cohort
    monkeypatch.setitem(ARM_REGISTRY, "fusion", DyingFusion)
    folder = tmp_path / "fusion" / "binary"
    monkeypatch.setenv(DIE_ENV, f"{2 * 1000 + 2}:{folder}")  # seed 2, fold 2: the last fit of the plan
    workers = executor.LocalWorkers(2)
    try:
        with pytest.raises(executor.ExecutorError, match="a worker died while fitting"):
            arms.cross_validate("fusion", rows, folds, "binary", profile=profile, cache=tmp_path, progress_bar=False,
                                executor=workers)
    finally:
        workers.close()
    assert sorted(p.parent.name for p in folder.glob("*/done.json")) == ["seed2_fold0", "seed2_fold1"]
    assert not (folder / "seed2_fold2" / "done.json").exists()
    monkeypatch.delenv(DIE_ENV)
    calls = _fits(monkeypatch)
    oof = arms.cross_validate("fusion", rows, folds, "binary", profile=profile, cache=tmp_path, progress_bar=False,
                              executor=executor.InProcess())
    assert calls == [2002]
    assert len(oof) == len(rows) and oof["patient_id"].is_unique


@pytest.mark.slow
def test_a_local_ray_instance_gives_the_in_process_tables(cohort, profile, here, tmp_path, local_ray):
    here, _ = here
    there = _tables(cohort, profile, tmp_path / "ray", executor.RayCluster("auto"))
    for name in ARMS:
        pd.testing.assert_frame_equal(here[name], there[name], check_exact=True)
    assert len(list((tmp_path / "ray").rglob("done.json"))) == 6


@pytest.mark.parametrize(("options", "message"), [
    (["--workers", "0"], "--workers: 0 is not allowed (must be >= 1)"),
    (["--workers", "2", "--ray", "auto"], "--workers and --ray: choose one"),
    (["--fits-per-gpu", "2"], "--fits-per-gpu: only with --ray"),
    (["--ray", "127.0.0.1:1"], "--ray 127.0.0.1:1: no Ray cluster answers there"),
    (["--ray", "headnode"], "--ray headnode: not an address"),
])
@pytest.mark.parametrize("command", ["run", "ablation", "train-final"])
def test_bad_executor_options_are_one_line_and_exit_2(command, options, message, tmp_path, capsys):
    argv = [command, "--profile", "smoke", "--data-dir", str(tmp_path / "no-data"), *options]
    argv += ["--out", str(tmp_path / "out")] if command != "run" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_ray_without_ray_installed_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(executor, "ray_installed", lambda: False)
    assert main(["ablation", "--profile", "smoke", "--ray", "auto", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == 'error: --ray: Ray is not installed; install the extra with pip install -e ".[ray]"\n'


def test_the_choice_reaches_other_processes_through_the_environment(monkeypatch):
    executor.configure(executor.LocalWorkers(3))
    assert json.loads(os.environ[executor.EXECUTOR_ENV]) == {"kind": "workers", "workers": 3}
    monkeypatch.setattr(executor, "_current", None)  # a notebook kernel started from here
    assert executor.current().describe() == "3 local workers"
    monkeypatch.setenv(executor.EXECUTOR_ENV, "")
    assert isinstance(executor.current(), executor.InProcess)


def test_threads_of_a_fit(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert fit_threads(2) == 2  # a profile's number always wins: it is part of the fold's fingerprint
    assert fit_threads(None) == available_cores()
    monkeypatch.setenv(THREADS_ENV, "3")  # a worker's share of the cores
    assert fit_threads(None) == 3 and fit_threads(1) == 1


def test_every_network_step_goes_where_it_is_asked(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device().type == "cpu"
    with use_device("meta"):  # the bundle's self-check uses this to stay on the CPU
        assert pick_device() == torch.device("meta")
    assert pick_device().type == "cpu"


@pytest.mark.slow
def test_a_killed_ray_worker_ends_the_command_within_seconds_in_one_line(synthetic_bundle, local_ray, tmp_path,
                                                                         monkeypatch, capfd):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(dying_arm)  # Ray's workers cannot import the tests
    monkeypatch.setattr(dying_arm.DyingFusion, "moment", "training")
    monkeypatch.setattr(dying_arm.DyingFusion, "died", str(tmp_path / "died"))
    monkeypatch.setattr(dying_arm.DyingFusion, "main_pid", os.getpid())
    monkeypatch.setitem(ARM_REGISTRY, "fusion", dying_arm.DyingFusion)
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(synthetic_bundle.cache))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    capfd.readouterr()
    try:
        assert main([*train_final_argv(synthetic_bundle, tmp_path / "model"), "--ray", "auto"]) == 1
        ended = time.time()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(dying_arm)
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(DIED), err
    assert "(raylet)" not in out and "A worker died" not in out
    assert ended - min(map(float, (tmp_path / "died").read_text().split())) < WITHIN
