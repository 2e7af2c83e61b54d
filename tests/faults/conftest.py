"""Fixtures of the fault tests: a small synthetic cohort, one saved bundle, planted files.

The fault families, one module each (issue 21 and point 3 of issue 20):

- `test_verified_files`: cached and saved files are used only when their SHA-256 matches;
- `test_no_pickle`: nothing on the load path unpickles; planted pickles never run;
- `test_run_folders`: a run folder holds one run; `train-final --run` takes only a matching, finished run;
- `test_impossible_inputs`: values and images outside the hard limits never train and are refused by predict;
- `test_one_line`: bad input and Ctrl-C end in one line, never a traceback;
- `test_leftovers`: nothing half-built or empty stays behind; each wrong data folder has its own message;
- `test_formula_injection`: no CSV cell a spreadsheet would run as a formula; the project's tables read back exactly;
- `test_dying_workers`: a killed worker ends the command in seconds, alone, in one line;
- `test_quiet_libraries`: library warnings never reach stderr; what a user needs is in the one line;
- `test_tables_and_seals`: header-only and semicolon tables, wide tables, signed bundles.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import pytest
from PIL import Image

from osteo_helpers import config, folders, splits
from tests.test_cohort import BASE_SPEC

COUNTS = {"normal": 10, "osteopenia": 10, "osteoporosis": 10}


@pytest.fixture
def private_env(monkeypatch, tmp_path):
    """A private image cache and output root; no progress bars."""
    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(tmp_path / "image-cache"))
    monkeypatch.setenv(folders.OUTPUT_ENV_VAR, str(tmp_path / "outputs"))
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="package")
def cohort(tmp_path_factory, synth):
    """(rows with images at 32 px, two repeats of three folds, the dataset) of 30 synthetic patients."""
    ds = synth.make_dataset(tmp_path_factory.mktemp("faults") / "knee-osteoporosis", counts=COUNTS, seed=3)
    rows = synth.model_rows(ds, tmp_path_factory.mktemp("cache"))
    return rows, splits.make_folds(rows, "label_3class", 3, 2, seed=5), ds


@pytest.fixture
def profile():
    return config.get_profile("smoke", image_size=32, epochs=2, patience=1, batch_size=8, n_folds=3, n_repeats=2,
                              num_threads=1, seed=5)


@pytest.fixture(scope="package")
def saved_bundle(synthetic_bundle):
    """(the bundle as fitted in memory, its folder): the session's bundle (tests/conftest.py)."""
    return synthetic_bundle.bundle, synthetic_bundle.folder


class _Planted:
    """Unpickling this runs a shell command that writes the marker file: what a hostile file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo ran > '{self.marker}'",)


def planted_pickle(path: Path, marker: Path) -> Path:
    """Write at ``path`` a pickle that would create ``marker`` if anything unpickled it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Planted(marker)))
    return path


def image_bytes(array, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def bomb_jpeg(path: Path, width: int = 65500, height: int = 65500) -> Path:
    """A small JPEG whose header claims width x height pixels (a decompression bomb)."""
    import numpy as np

    raw = bytearray(image_bytes(np.full((16, 16), 128, np.uint8), "JPEG"))
    sof = next(i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] in (0xC0, 0xC2))
    raw[sof + 5:sof + 7] = height.to_bytes(2, "big")
    raw[sof + 7:sof + 9] = width.to_bytes(2, "big")
    path.write_bytes(bytes(raw))
    return path


def real_cohort(data_dir: Path, root: Path, ids: list[str], sites: list[str] | None = None) -> Path:
    """A CSV cohort of real knee radiographs (one per ID, copied from the published dataset, every class
    in turn) with invented ages, sexes, heights (cm), weights (lb) and T-scores and a site column under
    ``root``, described by the spec of tests/test_cohort.py; the path of its spec."""
    images = {c: sorted(p for p in (data_dir / c).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
              for c in ("normal", "osteopenia", "osteoporosis")}
    (root / "img").mkdir(parents=True)
    lines = ["Exam,File,Age,Sex,Height,Weight,TScore,Hospital"]
    for i, pid in enumerate(ids):
        source = images[("normal", "osteopenia", "osteoporosis")[i % 3]][i // 3]
        shutil.copyfile(source, root / "img" / f"knee{i}.jpg")
        site = (sites or ["A"])[i % len(sites or ["A"])]
        cells = [pid, f"img/knee{i}.jpg", str(50 + i), "FM"[i % 2], str(150 + i), str(130 + 3 * i),
                 ("0.2", "-1.8", "-3.0")[i % 3], site]
        lines.append(",".join('"' + c.replace('"', '""') + '"' for c in cells))
    (root / "table.csv").write_text("\n".join(lines) + "\n", newline="")
    (root / "cohort.toml").write_text(BASE_SPEC.format(table_extra='site = "Hospital"', inputs_extra=""))
    return root / "cohort.toml"


@pytest.fixture(scope="session")
def make():
    """The builders above, for the tests (a module of a test folder is not imported by name)."""
    import types

    return types.SimpleNamespace(planted_pickle=planted_pickle, image_bytes=image_bytes, bomb_jpeg=bomb_jpeg,
                                 real_cohort=real_cohort)
