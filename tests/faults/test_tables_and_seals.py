"""The remaining holes (issue 31.6): a cohort table with a header and no rows, a semicolon-separated CSV and
a wide table are each one short line; a bundle signed with a key (`signing`, ``--sign-key``) is refused
when a file was edited and its checksums recomputed, when the key is another, and when it is unsigned.

The tables are written from real knee radiographs (`real_cohort`); the signing tests sign copies of the
session's bundle, so nothing trains.
"""

from __future__ import annotations

import json
import shutil

import pytest

from osteo_helpers import bundle as bundle_module
from osteo_helpers import folders, signing
from osteo_helpers import train_final as train_final_module
from osteo_helpers.bundle import seal
from osteo_helpers.cli import main
from osteo_helpers.errors import UsageError
from tests.conftest import BUNDLE_SETTINGS


def _one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_table_with_a_header_and_no_rows_is_one_line(real_data_dir, make, tmp_path, capsys):
    spec = make.real_cohort(real_data_dir, tmp_path / "cohort", ["K0", "K1", "K2"])
    table = tmp_path / "cohort" / "table.csv"
    table.write_text(table.read_text().splitlines()[0] + "\n")
    assert main(["cohort", "check", str(spec)]) == 2
    assert _one_line(capsys) == "error: table.csv: no data rows, only a header: nothing to analyse"


def test_a_semicolon_separated_table_is_named_as_such(real_data_dir, make, saved_bundle, tmp_path, capsys):
    spec = make.real_cohort(real_data_dir, tmp_path / "cohort", ["K0", "K1", "K2"])
    table = tmp_path / "cohort" / "table.csv"
    table.write_text(table.read_text().replace(",", ";"))
    assert main(["cohort", "check", str(spec)]) == 2
    line = _one_line(capsys)
    assert line.startswith("error: table.csv: read as one column") and "its separator looks like ';'" in line
    rows = tmp_path / "rows.csv"
    rows.write_text("patient_id;age_years;sex\nK0;63;female\n")
    assert main(["predict", "--model", str(saved_bundle[1]), "--clinical", str(rows), "--images",
                 str(tmp_path / "cohort" / "img")]) == 2
    assert _one_line(capsys) == (f"error: --clinical {rows}: read as one column: its separator looks like ';', not "
                                 "a comma; save it with commas")


def test_a_wide_table_is_not_listed_in_full(real_data_dir, make, tmp_path, capsys):
    spec = make.real_cohort(real_data_dir, tmp_path / "cohort", ["K0", "K1", "K2"])
    table = tmp_path / "cohort" / "table.csv"
    lines = table.read_text().splitlines()
    extra = [f"Lab{i:03d}" for i in range(300)]
    header = lines[0].replace("TScore", "T_Score_Hip") + "," + ",".join(extra)
    lines = [header, *(line + ",0" * 300 for line in lines[1:])]
    table.write_text("\n".join(lines) + "\n")
    assert main(["cohort", "check", str(spec)]) == 2
    line = _one_line(capsys)
    assert "'TScore'" in line and "(the table has 308: T_Score_Hip, Exam, File," in line and "and 300 more)" in line
    assert len(line) < 300


@pytest.fixture
def key_files(tmp_path):
    (tmp_path / "site.key").write_text("3f1c9a7e5b2d4c6f8a0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a\n")
    (tmp_path / "other.key").write_text("a different key of the same length as the site key, 64 characters\n")
    (tmp_path / "short.key").write_text("tooshort\n")
    return tmp_path


def _predict(folder, image, *options: str) -> list[str]:
    return ["predict", "--model", str(folder), "--image", str(image), "--age", "63", "--sex", "female", *options]


def test_a_signed_bundle_is_used_with_its_key_and_refused_when_edited_or_under_another(saved_bundle, real_data_dir,
                                                                                        key_files, tmp_path, capsys):
    image = sorted((real_data_dir / "normal").iterdir())[0]
    copy = shutil.copytree(saved_bundle[1], tmp_path / "signed")
    signing.sign(copy, signing.read_key(key_files / "site.key"))
    assert main(_predict(copy, image, "--sign-key", str(key_files / "site.key"))) == 0
    capsys.readouterr()

    assert main(_predict(copy, image, "--sign-key", str(key_files / "other.key"))) == 2
    assert "signature.json: does not verify with this --sign-key" in _one_line(capsys)

    facts = json.loads((copy / "bundle.json").read_text())
    facts["screening"]["threshold"] = 0.0  # everyone screen positive, with the seal recomputed: the checksums pass
    facts["seal"] = seal(facts)
    (copy / "bundle.json").write_text(json.dumps(facts, indent=2))
    assert main(_predict(copy, image)) == 0  # without a key only damage is caught, not this edit
    capsys.readouterr()
    assert main(_predict(copy, image, "--sign-key", str(key_files / "site.key"))) == 2
    assert _one_line(capsys) == f"error: --model {copy}: bundle.json changed since the bundle was signed; the bundle " \
                                "is refused"

    assert main(["validate", "--model", str(saved_bundle[1]), "--data-dir", str(real_data_dir), "--out",
                 str(tmp_path / "v"), "--sign-key", str(key_files / "site.key")]) == 2
    assert _one_line(capsys).startswith(f"error: --model {saved_bundle[1]}: not signed (no signature.json)")
    assert not (tmp_path / "v").exists()


def test_train_final_signs_the_bundle_it_writes(synthetic_bundle, key_files, tmp_path, capsys, monkeypatch):
    """train-final with the fitting replaced by the session's fitted bundle (the signing is what is tested)."""
    fitted = synthetic_bundle.bundle
    monkeypatch.setattr(train_final_module, "make_bundle", lambda *a, **k: bundle_module.Bundle(
        json.loads(json.dumps(fitted.facts)), fitted.arms))
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(synthetic_bundle.cache))
    out = tmp_path / "model"
    argv = ["train-final", "--profile", "smoke", *(f"--set={k}={v}" for k, v in BUNDLE_SETTINGS.items()),
            "--data-dir", str(synthetic_bundle.dataset.root), "--out", str(out), "--sign-key"]
    assert main([*argv, str(key_files / "short.key")]) == 2
    assert _one_line(capsys).startswith(f"error: --sign-key {key_files / 'short.key'}: a key of 8 bytes")
    assert not out.exists()
    assert main([*argv, str(key_files / "site.key")]) == 0, capsys.readouterr().err
    signing.verify(out, signing.read_key(key_files / "site.key"))
    with pytest.raises(UsageError, match="does not verify"):
        signing.verify(out, signing.read_key(key_files / "other.key"))
