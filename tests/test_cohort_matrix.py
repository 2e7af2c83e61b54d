"""The whole report on cohorts shaped unlike the published one (issue 28, point 1): every notebook, the summary,
the answer, provenance and the book, or a sentence saying what cannot be estimated and why.

Two cohorts are written from the real data (its DICOM export, `osteo cohort export`) into a temporary folder, each
combining shapes that do not interfere:

- ``forty``: 40 patients, DICOM only, one site, only the required inputs (age and sex), a class column and no
  T-score, two classes of the three (normal and osteoporosis) whose ages do not overlap;
- ``people``: one to three images per person, five sites of very unequal size, a T-score and no class column.

Both run in this process, one after another in one notebook kernel, at toy sizes (`SETTINGS`); ``forty``'s book is
built by re-running one of its notebooks with `--notebook`, which is how that path is tested. The module takes
about 75 s on the 2-core machine (2026-12-07: 72-81 s wall, 66-69 s of CPU; each cohort's notebooks about 27 s, a
book build 4-5 s, the export 2.5 s), hence `slow`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from osteo_helpers.__main__ import main
from osteo_helpers.data.export import SPEC_NAME, TABLE_NAME
from osteo_helpers.pipeline import NOTEBOOKS, Kernel, run
from tests.conftest import TOY_SETTINGS as SETTINGS


def _write(folder: Path, export: Path, table: pd.DataFrame, spec: str) -> Path:
    """A cohort folder: ``table`` (the export's columns, edited) as its CSV, its images linked from the export,
    and ``spec``; returns the spec's path."""
    (folder / "images").mkdir(parents=True)
    for image in table["ImageFile"].unique():
        os.link(export / image, folder / image)
    table.to_csv(folder / TABLE_NAME, index=False)
    (folder / SPEC_NAME).write_text(spec)
    return folder / SPEC_NAME


def _spec(export: Path, name: str, inputs: tuple[str, ...] | None = None, drop: tuple[str, ...] = (),
          table_extra: str = "") -> str:
    """The export's spec renamed, without the outcome keys in ``drop`` and with only ``inputs`` (None: all)."""
    head, body = (export / SPEC_NAME).read_text().split("[inputs]\n")
    head = head.replace('name = "knee-osteoporosis-v2-export"', f'name = "{name}"')
    head = "\n".join(line for line in head.splitlines() if not line.startswith(drop)) + "\n"
    head = head.replace('site = "Site"', 'site = "Site"' + table_extra)
    keep = [line for line in body.splitlines() if inputs is None or line.split(" = ", 1)[0] in inputs]
    return head + "[inputs]\n" + "\n".join(keep) + "\n"


def forty(export: Path, folder: Path, table: pd.DataFrame) -> Path:
    """20 normal patients under 45 and 20 osteoporotic ones of 55 or more (no age holds both classes, no
    osteopenia), DICOM, one site, age and sex only, a class column and no T-score."""
    normal = table[(table["WHO_Class"] == "Normal") & (table["AgeYears"] < 45)].head(20)
    osteoporosis = table[(table["WHO_Class"] == "Osteoporosis") & (table["AgeYears"] >= 55)].head(20)
    rows = pd.concat([normal, osteoporosis]).drop(columns=["T_Score", "Z_Score"]).assign(Site="the-only-site")
    spec = _spec(export, "matrix-forty", inputs=("age_years", "sex"), drop=("t_score", "z_score"))
    return _write(folder, export, rows, spec)


def people(export: Path, folder: Path, table: pd.DataFrame) -> Path:
    """12 people (4 of each class, the oldest normal ones and osteopenic ones under 48, so that the classes overlap
    in age) with 1, 2 or 3 images each (24 images: a person's other images are other patients' radiographs under
    the person's record), five sites of 6, 3, 1, 1 and 1 people, a T-score and no class column."""
    of = {c: table[table["WHO_Class"] == c] for c in ("Normal", "Osteopenia", "Osteoporosis")}
    first = pd.concat([of["Normal"].nlargest(4, "AgeYears"), of["Osteopenia"].query("AgeYears < 48").head(4),
                       of["Osteoporosis"].head(4)]).sample(frac=1.0, random_state=1)
    other = iter(table.drop(first.index)["ImageFile"])
    sizes, sites = [1, 2, 3] * 4, ["S1"] * 6 + ["S2"] * 3 + ["S3", "S4", "S5"]
    rows = []
    for p, (record, n, site) in enumerate(zip(first.to_dict("records"), sizes, sites, strict=True)):
        images = [record["ImageFile"], *(next(other) for _ in range(n - 1))]
        rows += [{**record, "ImageFile": image, "Site": site, "PersonID": f"P{p:02d}", "StudyID": f"P{p:02d}-{knee}"}
                 for knee, image in zip("LRX", images, strict=False)]
    spec = _spec(export, "matrix-people", drop=("class = ", "class_values"), table_extra='\nperson = "PersonID"')
    return _write(folder, export, pd.DataFrame(rows).drop(columns="WHO_Class"), spec)


COHORTS = {"forty": forty, "people": people}


#: the notebook the ``forty`` run executes again with `--notebook`, which builds its book from the run's files
RERUN = "notebooks/08_site_validation.ipynb"


@pytest.fixture(scope="module")
def matrix(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each cohort's run folder, made by `osteo run --profile smoke` with `SETTINGS`, all in one notebook kernel:
    ``people`` runs every notebook and builds its book; ``forty`` runs every notebook without the book (``--no-book``),
    then notebook 8 alone with the book (``--notebook``), which builds it from the first run's executed notebooks."""
    base = tmp_path_factory.mktemp("matrix")
    export = base / "export"
    assert main(["cohort", "export", "--to", str(export), "--data-dir", str(real_data_dir)]) == 0
    table = pd.read_csv(export / TABLE_NAME, dtype={"StudyID": str}).dropna(subset=["ImageFile"])
    folders = {name: base / f"run-{name}" for name in COHORTS}
    with pytest.MonkeyPatch.context() as mp, Kernel() as kernel:
        mp.setenv("TQDM_DISABLE", "1")
        for name, write in COHORTS.items():
            spec = write(export, base / name, table)
            run("smoke", folders[name], overrides=SETTINGS, cohort=spec, kernel=kernel, build=name != "forty")
        assert not (folders["forty"] / "_build").exists()
        run("smoke", folders["forty"], overrides=SETTINGS, cohort=base / "forty" / SPEC_NAME, kernel=kernel,
            notebooks=(RERUN,))
    return folders


def _page(run_dir: Path, notebook: str) -> str:
    """The text of a notebook's page in the built book (tags stripped)."""
    html = (run_dir / "_build" / "html" / f"{notebook}.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#8217;", "'")
    return re.sub(r" ([,.:;)])", r"\1", text)  # where a tag ended before punctuation


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", COHORTS)
def test_every_cohort_gets_the_whole_book(matrix, name):
    folder = matrix[name]
    record = json.loads((folder / "provenance.json").read_text())
    assert record["status"] == "finished", record.get("failure")
    steps = [RERUN, "book/results_summary.ipynb", "book/provenance.ipynb"] if name == "forty" else NOTEBOOKS
    assert [s["name"] for s in record["steps"]] == [*steps, "jupyter-book build"]
    html = folder / "_build" / "html"
    for notebook in NOTEBOOKS:
        assert (html / notebook).with_suffix(".html").is_file(), notebook
    for page in ("index", "book/tripod_ai", "book/data"):
        assert (html / f"{page}.html").is_file(), page
    answer = _page(folder, "book/results_summary")
    assert "What this cohort can say." in answer and "nan" not in answer.split()
    for page in html.rglob("*.html"):  # an empty Markdown shows as its object's name
        assert "IPython.core.display" not in page.read_text(encoding="utf-8"), page


@pytest.mark.realdata
@pytest.mark.slow
def test_forty_patients_of_two_classes_apart_in_age_with_age_and_sex_at_one_site(matrix):
    """What the ``forty`` cohort cannot estimate, each said in a sentence on its page."""
    folder = matrix["forty"]
    assert "The ages of the classes do not overlap (every normal patient is at most 44" in _page(
        folder, "notebooks/01_eda_manifest")
    binary = _page(folder, "notebooks/03_binary_fusion")
    for sentence in ("The arm OST index is not estimable on this cohort: the cohort has no weight.",
                     "The arm fusion (T-score model) is not estimable on this cohort: the cohort has no T-score.",
                     "The clinical model fitted on all 40 patients has no coefficients: not estimable on this cohort, "
                     "because no age holds both normal and low-BMD patients",
                     "calibration slope not estimable on this cohort"):
        assert sentence in binary, sentence
    three = _page(folder, "notebooks/04_three_class")
    assert ("The three-class task is not estimable on this cohort: no patient of this cohort is in the class "
            "osteopenia.") in three
    assert "The T-score regression is not estimable on this cohort: the cohort has no T-score." in three
    ablation = _page(folder, "notebooks/05_ablation")
    assert ("The comparison of clinical (age, sex) with OST index is not estimable on this cohort: the cohort has "
            "no weight.") in ablation
    assert ("The AUROC within an age band is not estimable on this cohort: the ages of normal and low-BMD patients "
            "do not overlap") in ablation
    assert "Batch predicted from the biomarkers: not estimable" in _page(folder, "notebooks/07_image_biomarkers")
    assert ("This cohort holds 1 site (the-only-site): with fewer than two, no site can be left out and the "
            "validation across sites is not estimable on this cohort.") in _page(folder, "notebooks/08_site_validation")
    assert not (folder / "oof" / "ost_binary.csv").exists() and not (folder / "oof" / "clinical_3class.csv").exists()


@pytest.mark.realdata
@pytest.mark.slow
def test_several_images_per_person_are_scored_explained_and_permuted_per_person(matrix):
    folder = matrix["people"]
    table = pd.read_csv(folder / "tables" / "manifest.csv", dtype=str)
    persons = set(table["person_id"])
    assert len(table) == 24 and len(persons) == 12
    for arm in ("clinical_binary", "fusion_binary", "image_3class", "fusion_tscore_tscore", "roi_cnn_binary"):
        oof = pd.read_csv(folder / "oof" / f"{arm}.csv", dtype={"patient_id": str})
        assert set(oof["patient_id"]) <= persons and not oof.duplicated(["patient_id", "seed"]).any(), arm
    assert len(pd.read_csv(folder / "tables" / "where_it_looks.csv")) == 24  # Grad-CAM: every image
    null = pd.read_csv(folder / "tables" / "permutation_null.csv")
    assert set(null["permutation"]) == {1, 2}
    by_site = pd.read_csv(folder / "tables" / "leave_one_site_out.csv")
    counts = by_site[by_site["site"].isin(["S1", "S2", "S3", "S4", "S5"])].drop_duplicates("site")
    assert counts["n_patients"].sum() <= 12  # people, not images
    sites = _page(folder, "notebooks/08_site_validation")
    assert re.search(r"Site S[45] holds no (normal|low-BMD) patient \(1 patient\)", sites), sites[:2000]


@pytest.mark.realdata
@pytest.mark.slow
def test_rerunning_one_notebook_builds_the_book_from_the_runs_files(matrix):
    """`--notebook` with the book (it used to fail unless --no-book was given): notebook 8 and the summary pages run
    again, and the book holds them with the first run's notebooks 1-7 as they were executed then."""
    folder = matrix["forty"]
    rerun = (folder / "notebooks" / Path(RERUN).name).stat().st_mtime
    for notebook in NOTEBOOKS:
        executed = (folder / "notebooks" / Path(notebook).name).stat().st_mtime
        assert (executed >= rerun) == (notebook in (RERUN, *NOTEBOOKS[-2:])), notebook
    assert "This cohort holds 1 site" in _page(folder, "notebooks/08_site_validation")
    assert "The ages of the classes do not overlap" in _page(folder, "notebooks/01_eda_manifest")
