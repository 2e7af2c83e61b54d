"""`cohort check` finds every problem in one pass (issue 28.2), and every command answers the same bad input
with the same exit status, before any work and leaving nothing behind (issue 28.5).

The cohorts are the small CSV cohorts of tests/test_cohort.py (`tiny_cohort`), edited per test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteo_helpers import folders
from osteo_helpers.cli import main
from tests.test_cohort import _broken_dicoms, _check, tiny_cohort, write_dicom

REQUIRED = "is required: the declared clinical model uses it"
#: one problem of each kind, each in its own row of `_broken`'s table (the header is row 1)
EXPECTED = [
    "table.csv, column 'TScore': value is missing (the T-score is the outcome): row 4",
    f"table.csv, column 'Sex': value is missing (sex {REQUIRED}): row 5",
    "table.csv, column 'Sex': unknown value (known: f, m): row 6 ('X')",
    f"table.csv, column 'Age': value is missing (age_years {REQUIRED}): row 7",
    "table.csv, column 'Height': not a number: row 8 ('tall')",
]


def _broken(table: pd.DataFrame) -> pd.DataFrame:
    table = table.astype({"Height": object, "Age": object})
    table.loc[2, "TScore"] = None  # the outcome
    table.loc[3, "Sex"] = None  # required
    table.loc[4, "Sex"] = "X"  # a value the spec does not map
    table.loc[5, "Age"] = None  # required, and once not reported at all
    table.loc[6, "Height"] = "tall"
    return table


@pytest.fixture
def quiet(monkeypatch, tmp_path):
    """A private image cache (it must stay empty when a command refuses its input); no progress bars."""
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(tmp_path / "image-cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


def test_every_problem_of_the_table_is_listed_in_one_pass(tmp_path, capsys):
    spec = tiny_cohort(tmp_path / "c", edit=_broken)
    rc, out, err = _check(capsys, str(spec))
    assert rc == 2
    assert "table: table.csv, 12 rows (5 with a problem that stops a run: left out of what follows)" in out
    assert "problems that stop run, ablation and train-final: 5 problems of 5 kinds\n" in out
    for line in EXPECTED:
        assert f"\n  {line}\n" in out, line
    assert err.strip().splitlines() == [
        "error: 5 problems of 5 kinds stop run, ablation and train-final on this cohort (listed above)"]
    rc, out, _ = _check(capsys, str(spec), "--json")
    findings = json.loads(out)
    assert rc == 2 and findings["fatal_problem_lines"] == EXPECTED
    assert [(p["row"], p["patient_id"]) for p in findings["fatal_problems"]] == [
        (4, "E02"), (5, "E03"), (6, "E04"), (7, "E05"), (8, "E06")]
    assert findings["patients"] == findings["rows"] == 12


COMMANDS = {"run": ["run", "--no-book"], "ablation": ["ablation"], "train-final": ["train-final"]}


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_list_every_problem_before_any_work(command, tmp_path, capsys, quiet):
    spec = tiny_cohort(tmp_path / "c", edit=_broken)
    out = tmp_path / "out"
    rc = main([*COMMANDS[command], "--profile", "smoke", "--cohort", str(spec), "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert lines == [f"error: cohort tiny: 5 problems of 5 kinds stop this command (`osteo cohort check {spec}` "
                     "lists them with every finding):", *(f"error: {line}" for line in EXPECTED)]
    assert not out.exists() and not (tmp_path / "image-cache").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_cohort_without_a_normal_patient_is_refused_before_any_work(command, tmp_path, capsys, quiet):
    """Issue 28: every arm answers normal against low BMD; a cohort that holds no normal patient cannot say
    anything: `cohort check` says so (exit 2) and the command refuses it in the same line before any work (it
    used to fail in the first fit)."""
    spec = tiny_cohort(tmp_path / "c", edit=lambda t: t.assign(TScore=t["TScore"].clip(upper=-1.5)))
    out = tmp_path / "out"
    line = ("error: cohort tiny: outcome: normal against low BMD, the question every arm answers, is not estimable: "
            "no patient of this cohort is in the class normal")
    rc, _, err = _check(capsys, str(spec))
    assert rc == 2 and err.strip().splitlines() == [line]
    rc = main([*COMMANDS[command], "--profile", "smoke", "--cohort", str(spec), "--out", str(out)])
    assert rc == 2 and capsys.readouterr().err.strip().splitlines() == [line]
    assert not out.exists() and not (tmp_path / "image-cache").exists()


def test_five_thousand_rows_with_one_problem_are_one_line(tmp_path, capsys, quiet):
    spec = tiny_cohort(tmp_path / "c", persons=1)
    n = 5000
    pd.DataFrame({"Exam": [f"E{i:04d}" for i in range(n)], "File": [f"img/E{i:04d}.png" for i in range(n)],
                  "Age": 60, "Sex": "U", "Height": 160, "Weight": 150, "TScore": -1.5}
                 ).to_csv(tmp_path / "c" / "table.csv", index=False)
    rc, out, err = _check(capsys, str(spec))
    line = ("table.csv, column 'Sex': unknown value (known: f, m): 5000 rows: 2 ('U'), 3 ('U'), 4 ('U'), 5 ('U'), "
            "6 ('U') and 4995 more")
    assert rc == 2 and f"\n  {line}\n" in out and len(out.splitlines()) < 25, out
    assert err.strip().splitlines() == [f"error: cohort tiny: {line}"]
    assert main(["ablation", "--profile", "smoke", "--cohort", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: cohort tiny: {line}"]


def test_people_of_the_person_column_are_counted_and_are_not_duplicate_records(tmp_path, capsys):
    spec = tiny_cohort(tmp_path / "c", knees=2, table_extra='person = "Person"')
    rc, out, _ = _check(capsys, str(spec))
    assert rc == 0
    assert "table: table.csv, 24 rows\npeople: 12 (column 'Person')\nimages: 24 found (.png 24)" in out
    assert ("identical clinical records of different people (every input and the T-score equal; one person "
            "entered twice?): 0") in out
    # what the cohort does not have is not mentioned: a Z-score, a class column, class folders, free text
    for absent in ("Z-score", "patients:", "label tscore", "folder label", "outcome mentioned"):
        assert absent not in out, absent
    findings = json.loads(_check(capsys, str(spec), "--json")[1])
    assert (findings["rows"], findings["people"], findings["duplicate_clinical_records"]) == (24, 12, [])
    # without a person column the two knees of a person are two people whose records are identical
    other = json.loads(_check(capsys, str(tiny_cohort(tmp_path / "d", knees=2)), "--json")[1])
    assert other["people"] == 24 and len(other["duplicate_clinical_records"]) == 12
    assert other["duplicate_clinical_records"][0] == ["E00L", "E00R"]


def test_groups_found_by_pixels_are_not_called_identical_bytes(tmp_path, capsys):
    spec = tiny_cohort(tmp_path / "c")
    folder = tmp_path / "c"
    table = pd.read_csv(folder / "table.csv")
    for i, exam in enumerate(table["Exam"]):
        pixels = np.asarray(Image.open(folder / "img" / f"{table['Exam'][0 if i == 1 else i]}.png"))
        write_dicom(folder / "img" / f"{exam}.dcm", pixels, PatientID=exam)  # a new UID: other bytes
    table["File"] = "img/" + table["Exam"] + ".dcm"
    table.to_csv(folder / "table.csv", index=False)
    assert (folder / "img" / "E00.dcm").read_bytes() != (folder / "img" / "E01.dcm").read_bytes()
    rc, out, _ = _check(capsys, str(spec))
    assert rc == 0 and "duplicate image groups (identical pixels): 1, of which 1 span more than one class" in out
    assert "bytes" not in out and "\n  E00 = E01   <- crosses classes\n" in out


def test_missing_images_say_where_they_were_looked_for(tmp_path, capsys):
    def elsewhere(rows: int):
        return lambda t: t.assign(File=t["File"].where(t.index >= rows, "scans/" + t["Exam"] + ".png"))

    spec = tiny_cohort(tmp_path / "c", edit=elsewhere(7))
    folder = tmp_path / "c"
    rc, out, err = _check(capsys, str(spec))
    assert rc == 0 and err == ""
    assert (f"images: 5 found (.png 5), looked for as the paths in column 'File', relative to the cohort folder "
            f"{folder} ([cohort] root of {spec})") in out
    assert f"rows without image: 7\n  E00 (row 2): looked for {folder}/scans/E00.png\n" in out
    assert f"  E04 (row 6): looked for {folder}/scans/E04.png\n  and 2 more: E05, E06\n" in out
    spec = tiny_cohort(tmp_path / "d", edit=elsewhere(12))  # no image at all: an error, not "images: 0"
    rc, out, err = _check(capsys, str(spec))
    assert rc == 2 and err.strip().splitlines() == [
        f"error: cohort tiny: images: none found for any of the 12 rows: looked for the paths in column 'File', "
        f"relative to the cohort folder {tmp_path / 'd'} ([cohort] root of {spec})"]


# ----------------------------------------------------------------------------- one exit status per input


def _no_such_sheet(spec: Path) -> None:
    pd.read_csv(spec.parent / "table.csv").to_excel(spec.parent / "table.xlsx", sheet_name="exams", index=False)
    spec.write_text(spec.read_text().replace('file = "table.csv"', 'file = "table.xlsx"\nsheet = "patients"'))


def _unreadable_table(spec: Path) -> None:
    (spec.parent / "table.xlsx").write_bytes(b"not a spreadsheet" * 40)
    spec.write_text(spec.read_text().replace('file = "table.csv"', 'file = "table.xlsx"'))


@pytest.mark.parametrize("command", ["cohort check", "run", "ablation", "train-final", "validate"])
@pytest.mark.parametrize("damage, words", [(_no_such_sheet, "table.xlsx: cannot be read as a table (Worksheet named "
                                                            "'patients' not found)"),
                                           (_unreadable_table, "table.xlsx: cannot be read as a table")],
                         ids=["no such sheet", "unreadable table"])
def test_a_table_that_cannot_be_read_is_exit_2_everywhere(command, damage, words, tmp_path, capsys, quiet,
                                                                    request):
    spec = tiny_cohort(tmp_path / "c")
    damage(spec)
    out = tmp_path / "out"
    if command == "validate":  # a real bundle, so that the cohort is what it refuses (the session's, 4 s once)
        model = request.getfixturevalue("synthetic_bundle").folder
        argv = ["validate", "--model", str(model), "--cohort", str(spec), "--out", str(out)]
    elif command == "cohort check":
        argv = ["cohort", "check", str(spec)]
    else:
        argv = [*COMMANDS[command], "--profile", "smoke", "--cohort", str(spec), "--out", str(out)]
    rc = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and words in lines[0], lines
    assert not out.exists() and not (tmp_path / "image-cache").exists()


def _every_command_refuses_alike(spec: Path, image: str, tmp_path: Path, capsys) -> None:
    """Row 5 of the cohort's table names ``image`` (which cannot be decoded): `cohort check`, `run`, `ablation` and
    `train-final` all exit 2 with the same line naming it, and leave nothing behind."""
    table = pd.read_csv(spec.parent / "table.csv")
    table.loc[3, "File"] = image
    table.to_csv(spec.parent / "table.csv", index=False)
    said = set()
    for command in ("cohort check", *COMMANDS):
        out = tmp_path / command.replace(" ", "-")
        argv = (["cohort", "check", str(spec)] if command == "cohort check" else
                [*COMMANDS[command], "--profile", "smoke", "--cohort", str(spec), "--out", str(out)])
        rc = main(argv)
        lines = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and f"row 5 ({image}: " in lines[0], (command, lines)
        assert not out.exists(), command  # no tables/manifest.csv, no run_identity.json
        said.add(lines[0])
    assert len(said) == 1 and not (tmp_path / "image-cache").exists()


def test_an_unreadable_dicom_stops_every_command_alike_leaving_nothing(tmp_path, capsys, quiet):
    spec = tiny_cohort(tmp_path / "c")
    broken = _broken_dicoms(tmp_path / "c" / "img")["truncated pixels"]
    _every_command_refuses_alike(spec, f"img/{broken.name}", tmp_path, capsys)


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")
def test_a_truncated_dicom_export_of_a_real_knee_stops_every_command_alike(real_data_dir, tmp_path, capsys, quiet):
    """The export's DICOM (a real knee's JPEG bitstream encapsulated), cut in half: once exit 1 for `cohort check`
    and 2 for `ablation`, and `run` left tables/manifest.csv and run_identity.json behind."""
    from osteo_helpers.data.export import _jpeg_to_dicom

    spec = tiny_cohort(tmp_path / "c")
    knee = next((real_data_dir / "osteopenia").glob("*.jp*g"))
    dicom = tmp_path / "c" / "img" / "E03.dcm"
    _jpeg_to_dicom(knee, dicom, "E03")
    dicom.write_bytes(dicom.read_bytes()[: dicom.stat().st_size // 2])
    _every_command_refuses_alike(spec, "img/E03.dcm", tmp_path, capsys)
