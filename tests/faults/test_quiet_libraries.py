"""Nothing but the command's own lines on stderr (issue 31.5): library warnings never reach the terminal
(`library_warnings`: dropped, or kept in the file ``$OSTEO_WARNINGS`` names); what a user needs from
them is in the one line.

Each case runs the command in a new process, as a user does: inside pytest, warnings are caught by
pytest itself and would never show on stderr, warned or not.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from osteo_helpers.data.export import _jpeg_to_dicom
from osteo_helpers.library_warnings import WARNINGS_ENV

ROOT = Path(__file__).resolve().parents[2]


def osteo(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m osteo_helpers ARGS`` in a new process, with ``env`` added to this one's environment."""
    environ = {k: v for k, v in os.environ.items() if k not in (WARNINGS_ENV, "PYTHONWARNINGS")}
    environ.update(TQDM_DISABLE="1", OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "osteo_helpers", *args], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> Path:
    """A 12000 x 12000 PNG (144 megapixels, above the limit of 100 million), mostly black: a small file."""
    path = tmp_path_factory.mktemp("big") / "knee.png"
    image = Image.new("L", (12000, 12000))
    image.paste(200, (4000, 4000, 8000, 8000))
    image.save(path)
    assert path.stat().st_size < 1_000_000
    return path


def test_a_truncated_dicom_is_one_line_saying_truncated(real_data_dir, make, tmp_path, private_env):
    spec = make.real_cohort(real_data_dir, tmp_path / "cohort", [f"K{i}" for i in range(6)])
    images = tmp_path / "cohort" / "img"
    _jpeg_to_dicom(images / "knee0.jpg", images / "knee0.dcm", "K0")
    whole = (images / "knee0.dcm").read_bytes()
    (images / "knee0.dcm").write_bytes(whole[:len(whole) // 2])
    (images / "knee0.jpg").unlink()
    table = tmp_path / "cohort" / "table.csv"
    table.write_text(table.read_text().replace("img/knee0.jpg", "img/knee0.dcm"))
    done = osteo("cohort", "check", str(spec))
    lines = done.stderr.splitlines()
    assert done.returncode in (1, 2) and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and ("img/knee0.dcm: DICOM file is truncated: End of file reached before "
                                               "delimiter (FFFE,E0DD) found") in lines[0]


def test_a_pickle_given_as_weights_is_one_line(real_data_dir, tmp_path, private_env):
    weights = tmp_path / "weights.pkl"
    weights.write_bytes(pickle.dumps({"features.0.weight": [[0.0] * 5] * 5}, protocol=4))
    done = osteo("train-final", "--profile", "smoke", "--set", f"weights={weights}", "--data-dir", str(real_data_dir),
                 "--out", str(tmp_path / "model"))
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: weights {weights}") and "checkpoint" in lines[0]


@pytest.mark.parametrize("command", ["predict", "data check"])
def test_a_144_megapixel_png_is_one_line(command, big_png, cohort, saved_bundle, tmp_path, private_env):
    if command == "predict":
        png = big_png
        done = osteo("predict", "--model", str(saved_bundle[1]), "--image", str(png), "--age", "60", "--sex", "female")
        expected = f"error: patient knee: image: {png}: "
    else:
        root = shutil.copytree(cohort[2].root, tmp_path / "knee-osteoporosis")
        image = root / cohort[2].images["OP4"].relative_to(cohort[2].root)
        image.unlink()
        png = shutil.copyfile(big_png, image.with_suffix(".png"))
        done = osteo("data", "check", "--data-dir", str(root))
        expected = f"{png.relative_to(root).as_posix()}: "
    lines = done.stderr.splitlines()
    assert done.returncode in (1, 2) and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert f"{expected}12000 x 12000 pixels is above the limit of 100,000,000 pixels; not decoded" in lines[0]


def test_a_successful_validate_prints_nothing_on_stderr_and_the_warning_goes_to_the_log(saved_bundle, real_data_dir,
                                                                                        make, tmp_path, private_env):
    """Matplotlib warns, through logging, when its configuration folder cannot be used (a read-only home)."""
    spec = make.real_cohort(real_data_dir, tmp_path / "cohort", [f"K{i}" for i in range(9)])
    (tmp_path / "not-a-folder").write_text("")
    log = tmp_path / "warnings.log"
    done = osteo("validate", "--model", str(saved_bundle[1]), "--cohort", str(spec), "--out", str(tmp_path / "v"),
                 "--n-boot", "10", MPLCONFIGDIR=str(tmp_path / "not-a-folder"), **{WARNINGS_ENV: str(log)})
    assert done.returncode == 0 and done.stderr == ""
    assert "scored 9 patients" in done.stdout
    assert "matplotlib WARNING: Matplotlib created a temporary cache directory" in log.read_text()

