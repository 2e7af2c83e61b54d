"""Shared fixtures: a small, messy synthetic copy of the Knee X-ray Osteoporosis dataset.

The synthetic spreadsheet uses the real header row (including its stray spaces and
colons), summary rows at the bottom and the real dataset's inconsistent spellings; the
images are small grayscale JPEGs in normal/, osteopenia/ and osteoporosis/ with mixed
extension case and one nested folder. `make_dataset` builds variants (a missing image,
an extra image, duplicated bytes, a wrong label, a broken cell) for the tests that need
them; `real_data_dir` points at the real dataset and fails (never skips) without it.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteo_helpers import config, errors, folders
from osteo_helpers.data import location

# The header row exactly as in the published `patient details.xlsx` (stray spaces and colons included).
REAL_HEADER: list[str] = [
    "S.No", "Patient Id", "Joint Pain:", "Gender", "Age", "Menopause Age", "height  (meter)", "Weight (KG) ",
    "Smoker", "Alcoholic", "Diabetic", "Hypothyroidism", "Number of Pregnancies", "Seizer Disorder",
    "Estrogen Use", "Occupation ", "History of Fracture", "Dialysis:", "Family History of Osteoporosis",
    "Maximum Walking distance (km)", "Daily Eating habits", "Medical History", "T-score Value",
    "Z-Score Value", "BMI: ", "Site", "Obesity", "Diagnosis",
]

CLASS_PREFIX = {"normal": "N", "osteopenia": "OP", "osteoporosis": "OS"}

# Messy spellings cycled through the rows, as found in the real spreadsheet.
GENDERS = ["female", "male", "Female ", "male", "F", "female"]
OCCUPATIONS = ["h.wife", "farmer", "teacher", "R.G.E", "businesman", "h.wife", "student", "mobile technician"]
WEIGHT_CATEGORIES = ["over weight", "obesity ", "normal weight", "overweight", "over weight", "under weight"]
EATING = ["normal", "low protiens", "low fats", "Normal", "veg diet", "no red meat", None]
MEDICAL = ["normal", "G.B rem, B.P", "no", "disk. Osteopenia", "fatty liver", "high BP", None]
FRACTURES = ["no", "no", "R.arm", "yes", "no", "vertebral fracture", "lab technician", "L.knee", None, "no"]


def t_score_for(diagnosis: str, rng: np.random.Generator) -> float:
    """A T-score consistent with the WHO thresholds (normal >= -1, osteoporosis <= -2.5)."""
    lo, hi = {"normal": (-0.9, 1.5), "osteopenia": (-2.4, -1.1), "osteoporosis": (-4.5, -2.6)}[diagnosis]
    return round(float(rng.uniform(lo, hi)), 2)


def patient_ids(counts: dict[str, int]) -> list[tuple[str, str]]:
    """(patient ID, diagnosis) for N1.., OP1.., OS1.."""
    return [(f"{CLASS_PREFIX[d]}{k}", d) for d, n in counts.items() for k in range(1, n + 1)]


def synthetic_rows(counts: dict[str, int], seed: int = 0) -> list[dict[str, Any]]:
    """Spreadsheet rows keyed by the real header names."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, (pid, diag) in enumerate(patient_ids(counts)):
        gender = GENDERS[i % len(GENDERS)]
        female = gender.strip().lower() in {"female", "f"}
        age = int(rng.integers(40, 80))
        height = round(float(rng.uniform(1.45, 1.8)), 3)
        weight = round(float(rng.uniform(50, 95)), 1)
        menopause = min(int(rng.integers(42, 52)), age - 1) if female and i % 4 != 1 else None
        pregnancies = int(rng.integers(0, 6)) if female else None
        diag_text = diag
        if diag == "osteopenia" and i % 5 == 0:
            diag_text = "osteopania"  # typo present in the real data
        elif i % 7 == 3:
            diag_text = diag.capitalize() + " "
        rows.append({
            "S.No": i + 1, "Patient Id": pid, "Joint Pain:": "yes" if i % 9 else "no", "Gender": gender,
            "Age": age, "Menopause Age": menopause, "height  (meter)": height, "Weight (KG) ": weight,
            "Smoker": ["no", "yes", "No"][i % 3], "Alcoholic": "no", "Diabetic": ["no", "yes"][i % 2],
            "Hypothyroidism": ["no", "no", "yes"][i % 3], "Number of Pregnancies": pregnancies,
            "Seizer Disorder": "no", "Estrogen Use": ["no", "yes"][(i // 2) % 2],
            "Occupation ": OCCUPATIONS[i % len(OCCUPATIONS)], "History of Fracture": FRACTURES[i % len(FRACTURES)],
            "Dialysis:": "no", "Family History of Osteoporosis": ["no", "yes"][(i // 3) % 2],
            "Maximum Walking distance (km)": [0.2, 1, 2, 0.5][i % 4], "Daily Eating habits": EATING[i % len(EATING)],
            "Medical History": MEDICAL[i % len(MEDICAL)], "T-score Value": t_score_for(diag, rng),
            "Z-Score Value": round(float(rng.uniform(-3, 1)), 2), "BMI: ": round(weight / height**2, 4),
            "Site": "knee", "Obesity": WEIGHT_CATEGORIES[i % len(WEIGHT_CATEGORIES)], "Diagnosis": diag_text,
        })
    return rows


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The max / min / avg rows found below the patients in the real spreadsheet (no patient ID)."""
    ages = [r["Age"] for r in rows if isinstance(r["Age"], (int, float))]
    out = []
    for label, fn in (("max", max), ("min", min), ("avg", lambda v: sum(v) / len(v))):
        row = {h: None for h in REAL_HEADER}
        row.update({"Age": fn(ages), "Menopause Age": label})
        out.append(row)
    return out


def write_spreadsheet(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None,
                      summary: bool = True) -> Path:
    header = REAL_HEADER if header is None else header
    all_rows = rows + (summary_rows(rows) if summary else [])
    frame = pd.DataFrame([{h: r.get(h) for h in header} for r in all_rows], columns=header)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_excel(path, index=False, engine="openpyxl")
    return path


def jpeg_bytes(seed: int, size: tuple[int, int] = (40, 32)) -> bytes:
    """A small grayscale JPEG whose pixels depend on the seed (so bytes differ per patient)."""
    rng = np.random.default_rng(1000 + seed)
    w, h = size
    ramp = np.linspace(0, 200, w)[None, :] + np.linspace(0, 40, h)[:, None]
    pixels = np.clip(ramp + rng.normal(0, 25, (h, w)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def image_relpath(pid: str, diagnosis: str, index: int) -> str:
    """Mixed extension case and one nesting level, as in real downloads."""
    ext = ".JPEG" if index % 2 == 0 else ".jpg"
    nested = "batch2/" if index % 5 == 4 else ""
    return f"{diagnosis}/{nested}{pid}{ext}"


@dataclass
class SyntheticDataset:
    root: Path
    rows: list[dict[str, Any]]
    images: dict[str, Path] = field(default_factory=dict)  # patient ID -> image path

    @property
    def spreadsheet(self) -> Path:
        return self.root / config.SPREADSHEET_NAME

    @property
    def patient_ids(self) -> list[str]:
        return [r["Patient Id"] for r in self.rows]

    def diagnosis_of(self, pid: str) -> str:
        prefix = pid.rstrip("0123456789")
        return {v: k for k, v in CLASS_PREFIX.items()}[prefix]


def make_dataset(root: Path, counts: dict[str, int] | None = None, seed: int = 0,
                 edit_rows: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None] | None = None,
                 header: list[str] | None = None, without_image: tuple[str, ...] = (),
                 extra_images: dict[str, str] | None = None,
                 identical_images: tuple[tuple[str, ...], ...] = (), image_size: tuple[int, int] = (40, 32),
                 summary: bool = True) -> SyntheticDataset:
    """Write a synthetic dataset under root.

    edit_rows: change the spreadsheet rows in place (or return new ones) before writing.
    without_image: patients whose image is not written (a row without an image).
    extra_images: {patient ID: class folder} images without a spreadsheet row.
    identical_images: groups of patients whose image files get the first one's bytes.
    """
    counts = counts or {"normal": 6, "osteopenia": 8, "osteoporosis": 6}
    rows = synthetic_rows(counts, seed)
    if edit_rows is not None:
        rows = edit_rows(rows) or rows
    root.mkdir(parents=True, exist_ok=True)
    write_spreadsheet(root / config.SPREADSHEET_NAME, rows, header=header, summary=summary)
    ds = SyntheticDataset(root=root, rows=rows)
    for d in CLASS_PREFIX:
        (root / d).mkdir(exist_ok=True)
    payload: dict[str, bytes] = {}
    for i, (pid, _) in enumerate(patient_ids(counts)):
        payload[pid] = jpeg_bytes(seed * 10_000 + i, image_size)
    for group in identical_images:
        for pid in group[1:]:
            payload[pid] = payload[group[0]]
    for i, (pid, diag) in enumerate(patient_ids(counts)):
        if pid in without_image:
            continue
        path = root / image_relpath(pid, diag, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload[pid])
        ds.images[pid] = path
    for j, (pid, folder) in enumerate((extra_images or {}).items()):
        path = root / folder / f"{pid}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(90_000 + j, image_size))
        ds.images[pid] = path
    return ds


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """relative path -> (size, mtime_ns, sha256) of every file under root."""
    import hashlib

    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            st = p.stat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns, digest)
    return out


def shared_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder that every pytest-xdist worker of the session shares."""
    session = tmp_path_factory.getbasetemp()
    return session.parent if os.environ.get("PYTEST_XDIST_WORKER") else session


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One image and feature cache for the whole session, shared by its workers and the commands it starts, in
    the session's temporary folder: a test run never writes into the checkout's `data/cache` nor reads a
    developer's cache made by other code."""
    cache = shared_session_dir(tmp_path_factory) / "osteo-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(folders.CACHE_ENV_VAR, str(cache))
        yield cache


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """One intra-op thread: the tiny tensors here gain nothing from more, and on a shared
    2-core machine thread contention makes a 64 px forward pass 40x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def synthetic_dataset(tmp_path: Path) -> SyntheticDataset:
    """The default synthetic dataset (20 patients, every row with a unique image)."""
    return make_dataset(tmp_path / "knee-osteoporosis")


@pytest.fixture
def synthetic_dataset_factory(tmp_path: Path) -> Callable[..., SyntheticDataset]:
    """Build variants: factory(name, **make_dataset options)."""

    def build(name: str = "variant", **kwargs: Any) -> SyntheticDataset:
        return make_dataset(tmp_path / name, **kwargs)

    return build


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(location.DATA_ENV_VAR, raising=False)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real dataset, found the documented way; fails (never skips) when it is absent."""
    try:
        return location.resolve_data_dir()
    except errors.DataNotFoundError as exc:
        pytest.fail(f"the real dataset is required for this test:\n{exc}", pytrace=False)


@pytest.fixture
def copy_tree() -> Callable[[Path, Path], Path]:
    def copy(src: Path, dst: Path) -> Path:
        shutil.copytree(src, dst)
        return dst

    return copy


#: the pretrained features of the synthetic cohorts' rows: the shipped encoder at a small size (fast)
TEST_RECIPE_SIZE = 64


def model_rows(ds: SyntheticDataset, cache: Path, image_size: int = 32) -> pd.DataFrame:
    """What the arms fit on, through the real data path: load_clinical -> build_manifest -> modelling_table,
    letterboxed images (``image``, ``image_size`` px) and the frozen encoder's features (``features``)."""
    from osteo_helpers import data
    from osteo_helpers.features import FeatureRecipe, with_features
    from osteo_helpers.images import ImageCache

    clinical = data.load_clinical(ds.spreadsheet)
    table = data.modelling_table(data.build_manifest(ds.root, clinical), clinical).reset_index(drop=True)
    images = ImageCache(cache, image_size).load_all(table, ds.root, progress=False)
    return with_features(table.assign(image=list(images)), FeatureRecipe(size=TEST_RECIPE_SIZE), ds.root, cache)


@pytest.fixture(scope="session")
def synth():
    """The builders above, for tests that need them directly (tests/ may or may not be a package)."""
    import types

    return types.SimpleNamespace(REAL_HEADER=REAL_HEADER, jpeg_bytes=jpeg_bytes, snapshot=snapshot,
                                 make_dataset=make_dataset, synthetic_rows=synthetic_rows,
                                 write_spreadsheet=write_spreadsheet, patient_ids=patient_ids, model_rows=model_rows)


#: the smoke profile at its smallest, for the tests that run the study end to end on the real data: one epoch,
#: two folds, few resamples, permutations and biomarker images, tiny networks and features
TOY_SETTINGS = {"image_size": 32, "feature_size": 64, "n_folds": 2, "n_boot": 10, "n_permutations": 2,
                "biomarker_limit": 8, "roi_size": 32, "cnn_width": 4, "feature_components": 8, "gbm_estimators": 5,
                "explain_patients": 1, "shap_samples": 3, "shap_background": 5, "num_threads": 1}


# ----------------------------------------------------------------------------- one saved model bundle
#: the synthetic cohort and settings of the bundle every scoring test shares (30 patients, 32 px, smoke)
BUNDLE_COUNTS = {"normal": 10, "osteopenia": 10, "osteoporosis": 10}
BUNDLE_SETTINGS = {"image_size": "32", "feature_size": "32", "num_threads": "1", "batch_size": "8"}


@dataclass
class SyntheticBundle:
    bundle: Any  # osteo_helpers.bundle.Bundle, as fitted in memory
    folder: Path
    dataset: SyntheticDataset
    cache: Path  # the image cache it was fitted with (set CACHE_ENV_VAR to it to read the same rows)


@pytest.fixture(scope="session")
def synthetic_bundle(tmp_path_factory: pytest.TempPathFactory) -> SyntheticBundle:
    """`train-final` (smoke, `BUNDLE_SETTINGS`) on a synthetic cohort, once per session (4 s): the bundle
    of the bundle, predict and validate tests."""
    from osteo_helpers.train_final import train_final

    cache = tmp_path_factory.mktemp("bundle-cache")
    dataset = make_dataset(tmp_path_factory.mktemp("bundle-data") / "knee-osteoporosis", counts=BUNDLE_COUNTS, seed=4)
    folder = tmp_path_factory.mktemp("bundles") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(folders.CACHE_ENV_VAR, str(cache))
        mp.setenv("TQDM_DISABLE", "1")
        bundle = train_final("smoke", folder, dataset.root, BUNDLE_SETTINGS, progress=False)
    return SyntheticBundle(bundle, folder, dataset, cache)


@pytest.fixture(scope="module")
def bundle_env(synthetic_bundle: SyntheticBundle):
    """For a module: the shared bundle's image cache and no progress bars."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(folders.CACHE_ENV_VAR, str(synthetic_bundle.cache))
        mp.setenv("TQDM_DISABLE", "1")
        yield mp


# ----------------------------------------------------------------------------- one local Ray instance
@pytest.fixture(scope="session")
def local_ray():
    """A local 2-CPU Ray instance for every Ray test of the session (starting one takes 15-20 s); Ray is a
    dependency of the test extra, so a test using it fails, never skips, without it."""
    import ray

    from osteo_helpers import executor

    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, configure_logging=False,
             runtime_env={"py_modules": [str(Path(executor.__file__).parent)]})
    yield ray
    ray.shutdown()


# ----------------------------------------------------------------------------- notebooks written by tests
def write_notebook(path: Path, *cells: Any) -> Path:
    """A notebook for the python3 kernel written to ``path``: each cell a code cell's source, or a cell
    already made (a markdown cell, a tagged one)."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}, "language_info": {"name": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(cell) if isinstance(cell, str) else cell for cell in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# ----------------------------------------------------------------------------- the smoke run
ARTIFACTS = config.PROJECT_ROOT / "test-artifacts"
#: the smoke profile at its smallest (`TOY_SETTINGS`), one torch thread per fit: `make test` runs two pytest
#: workers on two cores, and more threads than cores make every one of them several times slower
SMOKE_SETTINGS = tuple(arg for name, value in TOY_SETTINGS.items() for arg in ("--set", f"{name}={value}"))
#: the file that makes the smoke run (its checks of the book and tables need nothing else)
SMOKE_MAKER = "test_pipeline.py"
#: the other file that takes more than a minute (every notebook on two cohorts): it starts at once on the other
#: worker, so that neither worker is left with a long file while the other has finished
LONG_FILE = "test_cohort_matrix.py"


@pytest.fixture(scope="session")
def smoke_run(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`osteo run --profile smoke` at its smallest (`SMOKE_SETTINGS`) on the real data into test-artifacts/smoke-run,
    once per session (about 55 s; 75 s at the profile's own settings): under
    pytest-xdist the first worker to ask makes it while a file lock holds the others, which then read it."""
    import subprocess
    import sys

    from filelock import FileLock

    run_dir = ARTIFACTS / "smoke-run"
    session = shared_session_dir(tmp_path_factory)
    outcome = session / "smoke-run.outcome"
    with FileLock(session / "smoke-run.lock"):
        if not outcome.is_file():
            proc = subprocess.run([sys.executable, "-m", "osteo_helpers", "run", "--profile", "smoke", "--out",
                                   str(run_dir), "--data-dir", str(real_data_dir), *SMOKE_SETTINGS],
                                  capture_output=True, text=True, cwd=config.PROJECT_ROOT)
            failure = f"smoke pipeline failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            outcome.write_text("" if proc.returncode == 0 else failure, encoding="utf-8")
    failure = outcome.read_text(encoding="utf-8")
    assert not failure, failure
    return run_dir


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The smoke run's maker first, the other long file second and the other files that read the run last:
    with `--dist loadfile --no-loadscope-reorder` (`make test`) one worker starts the run at once while the other
    starts the long file, then both share the rest, and the readers find the run made."""
    readers = {item.path for item in items if "smoke_run" in getattr(item, "fixturenames", ())}
    first = {SMOKE_MAKER: 0, LONG_FILE: 1}

    def rank(item: pytest.Item) -> int:  # whole files move: xdist's unit of work is the file
        return first.get(item.path.name, 3 if item.path in readers else 2)

    items.sort(key=rank)  # stable: the order within each rank is kept


# ----------------------------------------------------------------------------- pytest-playwright
# Debian's Chromium (scripts/ensure_chromium.sh installs it): Playwright cannot download its own browsers
# here, so every browser fixture of pytest-playwright (`browser`, `context`, `page`) launches this one.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch options (--headed, --slowmo) plus the system Chromium, headless by default."""
    return {"headless": True, **browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}
