"""No leftovers, precise messages (issue 21.6): what a killed build left is removed by the next one, a failed
command leaves no empty skeleton, and each wrong data folder has a message of its own."""

from __future__ import annotations

import shutil

import pytest

from osteo_helpers import ablation_run, train_final
from osteo_helpers.cli import main
from osteo_helpers.config import SPREADSHEET_NAME


def test_the_next_train_final_removes_what_a_killed_one_left(cohort, tmp_path, monkeypatch):
    target = tmp_path / "model"
    for stale in (".model.building-99999", ".model.old-99998"):  # what SIGKILL leaves mid-build, mid-swap
        (tmp_path / stale / "arms").mkdir(parents=True)
        (tmp_path / stale / "arms" / "fusion.json").write_text("{}")
    (tmp_path / ".other.building-99999").mkdir()  # another bundle's: not ours to remove

    def stop(*args, **kwargs):
        raise RuntimeError("stopped after the clean-up")

    monkeypatch.setattr(train_final, "make_bundle", stop)
    with pytest.raises(RuntimeError, match="stopped"):
        train_final.train_final("smoke", target, cohort[2].root, {"image_size": "32"}, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.building-99999"]


def test_a_failed_ablation_leaves_no_skeleton_of_folders(cohort, tmp_path, monkeypatch, capsys):
    def fail(profile_name, task, out, **kwargs):
        from osteo_helpers.study import Study

        Study.open(profile_name, out, cohort=kwargs["cohort"]).folds()  # folders and a table, then a failure
        shutil.rmtree(out / "tables")
        raise FileNotFoundError(f"{out}: something was missing")

    monkeypatch.setattr(ablation_run, "run_ablation", fail)
    out = tmp_path / "new" / "abl"
    assert main(["ablation", "--profile", "smoke", "--out", str(out), "--data-dir", str(cohort[2].root)]) == 1
    assert "something was missing" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("case, words", [
    ("empty folder", "the folder is empty"),
    ("images only", "holds 3 image file(s) but no 'patient details.xlsx'"),
    ("a file", "is a file, not a folder"),
    ("no such folder", "no such folder"),
])
def test_each_wrong_data_folder_has_its_own_message(case, words, cohort, tmp_path, capsys):
    given = tmp_path / "data"
    if case == "empty folder":
        given.mkdir()
    elif case == "images only":
        given.mkdir()
        for image in list(cohort[2].images.values())[:3]:
            shutil.copy(image, given / image.name)
    elif case == "a file":
        given.write_text("not a folder")
    assert main(["data", "check", "--data-dir", str(given)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(given) in lines[0] and words in lines[0], lines


def test_reimport_over_an_installed_dataset_says_so(cohort, tmp_path, capsys):
    installed = shutil.copytree(cohort[2].root, tmp_path / "raw")
    assert main(["data", "import", str(cohort[2].root), "--dest", str(installed)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{installed} already holds an installed dataset ({SPREADSHEET_NAME})" in lines[0]


def test_two_threads_writing_one_file_at_once_both_succeed(tmp_path):
    """The biomarkers of two identical images are one cache entry, written by the two threads of
    `cohort_biomarkers` at once: a fast report failed in notebook 7 with FileNotFoundError on the shared temporary
    file (`.x.npz.PID.tmp`) that the other thread had already renamed. Here both threads have written their
    temporary file before either renames it."""
    import threading

    from osteo_helpers import fileio

    target, both_written, errors = tmp_path / "entry.npz", threading.Barrier(2, timeout=10), []

    def write() -> None:
        def body(tmp):
            tmp.write_bytes(b"same bytes")
            both_written.wait()

        try:
            fileio._replace(target, body)  # what atomic_write_bytes does, with a pause between write and rename
        except Exception as exc:  # the test reports what either thread raised
            errors.append(repr(exc))

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() == b"same bytes" and [p.name for p in tmp_path.iterdir()] == ["entry.npz"]
