"""Checks on the real Knee X-ray Osteoporosis dataset (fail, never skip, when it is absent).

Expected values are found by code (from the files), not copied from a report; the few
fixed numbers (240 patients, 239 images, N37 without an image) are facts of the
published version 2 of the dataset, which the checksum registry pins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from osteo_helpers import config, data, fileio
from osteo_helpers.data import location

pytestmark = pytest.mark.realdata

FINDING_KEYS = ("patients", "images", "rows_without_image", "images_without_row", "duplicate_groups",
                "cross_class_duplicate_groups", "label_tscore_mismatches")
MANIFEST_COLUMNS = ("patient_id", "diagnosis", "label_3class", "label_binary", "t_score", "image_path",
                    "image_sha256", "width", "height", "mode", "batch")


def _stat_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, location.DATA_ENV_VAR: str(root)}
    return subprocess.run([sys.executable, "-m", "osteo_helpers", "data", "check", *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=config.PROJECT_ROOT)


def _in_process(*args: str) -> subprocess.CompletedProcess:
    """The text mode in this process (the JSON mode above runs as its own process: nothing but JSON on stdout)."""
    import contextlib
    import io

    from osteo_helpers.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["data", "check", *args])
    return subprocess.CompletedProcess(["data", "check", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def runs(real_data_dir):
    """Registry check and file stats before, both CLI modes, then the registry check and stats after."""
    before = data.verify_files(real_data_dir)
    stats_before = _stat_snapshot(real_data_dir)
    as_json = _cli(real_data_dir, "--json")
    as_text = _in_process("--data-dir", str(real_data_dir))
    clinical = data.load_clinical(real_data_dir / config.SPREADSHEET_NAME)
    manifest = data.build_manifest(real_data_dir, clinical)
    findings = data.validate(manifest, clinical, real_data_dir)
    after = data.verify_files(real_data_dir)
    stats_after = _stat_snapshot(real_data_dir)
    return {"before": before, "after": after, "stats_before": stats_before, "stats_after": stats_after,
            "json": as_json, "text": as_text, "clinical": clinical, "manifest": manifest, "findings": findings}


@pytest.fixture(scope="module")
def cli_findings(runs):
    proc = runs["json"]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip()
    obj, end = json.JSONDecoder().raw_decode(out)
    assert out[end:].strip() == "", f"more than one JSON value on stdout: {out[end:end + 200]!r}"
    assert isinstance(obj, dict)
    return obj


def test_cli_json_has_every_key(cli_findings):
    for key in FINDING_KEYS:
        assert key in cli_findings, key


def test_cli_json_values(cli_findings, real_data_dir):
    f = cli_findings
    assert f["patients"] == 240
    assert f["images"] == 239
    assert f["rows"] == f["people"] == 240 and f["fatal_problems"] == [] and f["image_formats"] == {".jpeg": 63,
                                                                                                  ".jpg": 176}
    assert "N37" in f["rows_without_image"]
    assert f["images_without_row"] == []
    assert len(f["cross_class_duplicate_groups"]) >= 1
    for group in f["cross_class_duplicate_groups"]:
        assert group in f["duplicate_groups"]
    # the values agree with what the files say
    images = data.find_images(real_data_dir)
    assert len(images) == f["images"]
    assert sorted(set(data.load_clinical(real_data_dir / config.SPREADSHEET_NAME)["patient_id"]) - set(images)) \
        == f["rows_without_image"]
    by_hash: dict[str, list[str]] = {}
    for pid, path in images.items():
        by_hash.setdefault(fileio.sha256_file(path), []).append(pid)
    expected_groups = sorted(sorted(g) for g in by_hash.values() if len(g) > 1)
    assert sorted(sorted(g) for g in f["duplicate_groups"]) == expected_groups
    folder_class = {pid: path.parent.name.lower() for pid, path in images.items()}
    expected_cross = sorted(sorted(g) for g in expected_groups if len({folder_class[p] for p in g}) > 1)
    assert sorted(sorted(g) for g in f["cross_class_duplicate_groups"]) == expected_cross
    assert f["label_tscore_mismatches"] == []


def test_cli_json_matches_library(cli_findings, runs):
    assert json.loads(json.dumps(runs["findings"])) == cli_findings


def test_cli_human_readable_reports_the_same(cli_findings, runs):
    proc = runs["text"]
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert f"table: patient details.xlsx, {cli_findings['rows']} rows\npeople: {cli_findings['people']} " in text
    assert f"images: {cli_findings['images']} found" in text
    assert "N37 (row " in text and "/{class_folder}/**/N37.*" in text  # the row without image and where it was sought
    assert f"duplicate image groups (identical file bytes): {len(cli_findings['duplicate_groups'])}" in text
    assert f"of which {len(cli_findings['cross_class_duplicate_groups'])} span more than one class" in text
    for group in cli_findings["duplicate_groups"]:
        line = " = ".join(group)
        assert line in text
        marked = [ln for ln in text.splitlines() if ln.strip().startswith(line)]
        assert marked
        assert ("crosses classes" in marked[0]) == (group in cli_findings["cross_class_duplicate_groups"])


def test_manifest_one_row_per_patient(runs):
    man, clin = runs["manifest"], runs["clinical"]
    assert len(man) == 240 and man["patient_id"].is_unique
    assert set(man["patient_id"]) == set(clin["patient_id"])
    for col in MANIFEST_COLUMNS:
        assert col in man.columns, col
    with_image = man[man["has_image"]]
    assert len(with_image) == 239
    assert with_image["image_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert (with_image["width"] > 0).all() and (with_image["height"] > 0).all()
    assert with_image["batch"].notna().all()
    assert set(man["diagnosis"]) == {"normal", "osteopenia", "osteoporosis"}
    assert (man["label_binary"] == (man["diagnosis"] != "normal").astype(int)).all()
    # every duplicate group shares one split group
    for group in runs["findings"]["duplicate_groups"]:
        assert man.set_index("patient_id").loc[group, "split_group"].nunique() == 1


def test_raw_files_match_registry_before_and_after(runs):
    registry = data.read_registry()
    assert len(registry) == 240  # 239 images + the spreadsheet
    for key in ("before", "after"):
        assert runs[key]["missing"] == [], key
        assert runs[key]["mismatched"] == [], key
    assert runs["stats_after"] == runs["stats_before"]
