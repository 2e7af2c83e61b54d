"""Impossible data does not train, and predict refuses what cannot be a patient or a knee radiograph
(issue 21.4, issue 20.3): the hard limits of `data.plausibility`, declared once, used everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import bundle as bundle_mod
from osteo_helpers.bundle import FACTS_NAME
from osteo_helpers.cli import main
from osteo_helpers.data import plausibility
from osteo_helpers.model_card import model_card
from osteo_helpers.radiograph_check import radiograph_problems
from osteo_helpers.study import Study
from osteo_helpers.train_final import cohort_facts

COUNTS = {"normal": 10, "osteopenia": 10, "osteoporosis": 10}


def test_limits_are_declared_once_with_units():
    from osteo_helpers.data import PLAUSIBLE_RANGES, validation

    assert PLAUSIBLE_RANGES is plausibility.PLAUSIBLE_RANGES is validation.PLAUSIBLE_RANGES
    assert plausibility.HARD_LIMITS["age_years"].describe() == "0-120 years"
    for name, limit in plausibility.HARD_LIMITS.items():  # every usual range lies inside its hard limit
        low, high = PLAUSIBLE_RANGES.get(name, (limit.low, limit.high))
        assert limit.unit and limit.low <= low <= high <= limit.high, name
    assert plausibility.value_problem("age_years", 300) == "300 is outside the possible range 0-120 years"
    assert plausibility.value_problem("age_years", 107) is None  # unusual (a finding), not impossible
    for size, mode, words in [((1, 1), "L", "below the minimum of 32"), ((65500, 65500), "L", "not decoded"),
                              ((400, 40), "L", "aspect 10.0"), ((512, 512), "RGBA", "colour mode RGBA")]:
        assert words in plausibility.image_header_problem(*size, mode)
    assert plausibility.image_header_problem(2660, 2048, "RGB") is None


@pytest.fixture
def impossible_dataset(synth, tmp_path, make):
    """The synthetic cohort with an age of 300 (N2) and a 1 x 1 pixel image (OP3)."""
    def edit(rows):
        next(r for r in rows if r["Patient Id"] == "N2")["Age"] = 300

    ds = synth.make_dataset(tmp_path / "knee-osteoporosis", counts=COUNTS, seed=4, edit_rows=edit)
    ds.images["OP3"].write_bytes(make.image_bytes(np.full((1, 1), 90, np.uint8), "JPEG"))
    return ds


def test_data_check_lists_impossible_values_and_images(impossible_dataset, capsys):
    assert main(["data", "check", "--json", "--data-dir", str(impossible_dataset.root)]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert findings["impossible_values"] == [{"patient_id": "N2", "column": "age_years", "value": 300.0,
                                              "possible": "0-120 years"}]
    assert [(f["patient_id"], "below the minimum" in f["problem"]) for f in findings["impossible_images"]] == [
        ("OP3", True)]
    assert main(["data", "check", "--data-dir", str(impossible_dataset.root)]) == 0
    text = capsys.readouterr().out
    assert "impossible values and images (outside the hard limits; not used for training): 2" in text


def test_rows_outside_the_hard_limits_never_train(impossible_dataset, saved_bundle, tmp_path, private_env, capsys):
    study = Study.open("smoke", tmp_path / "run", impossible_dataset.root, image_size=32)
    cohort = study.cohort
    said = capsys.readouterr().out.strip().splitlines()
    assert len(said) == 1 and "left out of training" in said[0] and "N2: age_years 300" in said[0] and "OP3" in said[0]
    assert not {"N2", "OP3"} & set(cohort["patient_id"]) and len(cohort) == 28
    assert bundle_mod.training_ranges(cohort)["numeric"]["age_years"][1] < 120  # the saved range stays possible
    assert len(study.images(progress=False)) == 28  # the 1 x 1 image is never decoded for a model
    facts = cohort_facts(study)  # what a bundle says of them: why, never who (a bundle leaves the site)
    assert "N2" not in json.dumps(facts) and "OP3" not in json.dumps(facts)
    assert facts["excluded_impossible"][0].startswith("age_years 300")
    saved = json.loads((saved_bundle[1] / FACTS_NAME).read_text())
    card = model_card({**saved, "cohort": {**saved["cohort"], **facts}})
    assert "2 patients: age_years 300" in card and "N2" not in card


@pytest.mark.parametrize("age", ["300", "-5"])
def test_predict_refuses_an_impossible_value(age, saved_bundle, cohort, capsys):
    _, folder = saved_bundle
    rc = main(["predict", "--model", str(folder), "--image", str(cohort[2].images["N1"]), "--age", age,
               "--sex", "female"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2 and captured.out == "" and lines == [
        f"error: patient N1: age_years: {float(age):g} is outside the possible range 0-120 years"]


def _figure(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 3), dpi=80)
    ax.plot([0, 1, 2], [0.2, 0.9, 0.4], color="tab:blue")
    ax.bar([0, 1, 2], [0.3, 0.5, 0.2], color="tab:orange")
    fig.savefig(path)
    plt.close(fig)
    return path


def _not_knees(tmp_path: Path, make) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {"plot (PNG)": _figure(tmp_path / "chart.png"), "plot (JPEG)": _figure(tmp_path / "chart.jpg")}
    photo = np.clip(rng.normal([120, 90, 60], 40, (120, 160, 3)), 0, 255).astype(np.uint8)
    for name, array, mode, fmt in [("photo", photo, "RGB", "JPEG"),
                                   ("blank page", np.full((300, 200), 255, np.uint8), "L", "PNG"),
                                   ("wrong size", np.full((1, 1), 128, np.uint8), "L", "PNG"),
                                   ("wrong channel count", np.dstack([photo[..., 0]] * 3 + [photo[..., 1]]), "RGBA",
                                    "PNG")]:
        files[name] = tmp_path / f"{name.replace(' ', '_')}.{fmt.lower()}"
        files[name].write_bytes(make.image_bytes(array, fmt, mode))
    files["decompression bomb"] = make.bomb_jpeg(tmp_path / "bomb.jpg")
    return files


@pytest.mark.parametrize("kind", ["plot (PNG)", "plot (JPEG)", "photo", "blank page", "wrong size",
                                  "wrong channel count", "decompression bomb"])
def test_predict_refuses_what_is_not_a_knee_radiograph(kind, saved_bundle, tmp_path, make, capsys):
    _, folder = saved_bundle
    image = _not_knees(tmp_path, make)[kind]
    rc = main(["predict", "--model", str(folder), "--image", str(image), "--age", "60", "--sex", "female"])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert rc == 2 and captured.out == "" and len(lines) == 1, captured
    expected = {"plot (PNG)": "colour mode RGBA", "plot (JPEG)": "a colour picture", "photo": "a colour picture",
                "blank page": "blank",
                "wrong size": "below the minimum", "wrong channel count": "colour mode RGBA",
                "decompression bomb": "decompression bomb"}[kind]
    assert lines[0].startswith(f"error: patient {image.stem}: image: {image}: ") and expected in lines[0], lines[0]


def test_predict_flags_a_gray_image_without_a_knee_joint(saved_bundle, tmp_path, make, capsys):
    _, folder = saved_bundle
    rng = np.random.default_rng(1)
    gray = np.clip(np.linspace(30, 220, 256)[None, :] + rng.normal(0, 20, (256, 256)), 0, 255).astype(np.uint8)
    image = tmp_path / "gradient.png"
    image.write_bytes(make.image_bytes(gray))
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(folder), "--image", str(image), "--age", "60", "--sex", "female",
                 "--out", str(out)]) == 0
    warning = pd.read_csv(out, keep_default_na=False).loc[0, "warnings"]
    assert "image: not recognised as a knee radiograph (no knee joint found" in warning


@pytest.mark.realdata
def test_real_knees_are_neither_refused_nor_excluded(real_data_dir, tmp_path, private_env):
    """Every 24th real image passes the knee check unflagged (the slow test below checks all 239), and no
    real row lies outside the hard limits."""
    paths = sorted(p for p in real_data_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert len(paths) == 239
    assert [(p.name, radiograph_problems(p)) for p in paths[::24]] == [(p.name, (None, None)) for p in paths[::24]]
    assert Study.open("smoke", tmp_path / "run", real_data_dir).excluded == {}


@pytest.mark.realdata
@pytest.mark.slow
def test_no_real_knee_is_refused_or_flagged(real_data_dir):
    """All 239 real images through predict's knee check (11 s on a quiet core)."""
    paths = sorted(p for p in real_data_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert [p.name for p in paths if radiograph_problems(p) != (None, None)] == []


@pytest.mark.parametrize("option,value,expected", [
    ("--height-m", "162", "height_m: 162 is outside the possible range 0.5-2.5 m; did you mean centimetres "
                          "(--height-cm 162)?"),
    ("--height-cm", "1.62", "height_cm: 1.62 cm (0.0162 m) is outside the possible range 0.5-2.5 m; did you mean "
                            "metres (--height-m 1.62)?"),
    ("--weight-kg", "3.5", "weight_kg: 3.5 is outside the possible range 10-400 kg"),
    ("--max-walking-km", "2000", "max_walking_km: 2000 is outside the possible range 0-200 km; did you mean metres "
                                 "(--max-walking-m 2000)?"),
])
def test_an_impossible_value_says_which_unit_was_meant(option, value, expected, saved_bundle, cohort, capsys):
    """Impossible in the unit given, plausible in another unit of the same input (`tabular.UNITS`): one line
    that names the option to use; with no such unit, the hard limit alone."""
    _, folder = saved_bundle
    rc = main(["predict", "--model", str(folder), "--image", str(cohort[2].images["N1"]), "--age", "60",
               "--sex", "female", option, value])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and captured.err.strip().splitlines() == [f"error: patient N1: {expected}"]


def test_a_batch_column_in_the_wrong_unit_names_the_column_to_use(saved_bundle, cohort, tmp_path, capsys):
    _, folder = saved_bundle
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"patient_id": ["N1", "N2"], "age_years": [60, 61], "sex": ["f", "m"],
                  "height_m": [1.6, 171], "weight_lb": [70, 150]}).to_csv(rows, index=False)
    rc = main(["predict", "--model", str(folder), "--clinical", str(rows), "--images", str(cohort[2].root)])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == "" and captured.err.strip().splitlines() == [
        "error: patient N2: height_m: 171 is outside the possible range 0.5-2.5 m; did you mean centimetres "
        "(column height_cm)?"]


def test_one_input_in_two_units_is_refused(saved_bundle, cohort, tmp_path, capsys):
    _, folder = saved_bundle
    rc = main(["predict", "--model", str(folder), "--image", str(cohort[2].images["N1"]), "--age", "60",
               "--sex", "female", "--height-m", "1.6", "--height-cm", "160"])
    captured = capsys.readouterr()
    assert rc == 2 and captured.err.strip().splitlines() == [
        "error: patient N1: height_m: given twice, as --height-m and --height-cm; give one"]
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"patient_id": ["N1"], "age_years": [60], "sex": ["f"], "weight_kg": [60], "weight_lb": [""]}).to_csv(
        rows, index=False)
    rc = main(["predict", "--model", str(folder), "--clinical", str(rows), "--images", str(cohort[2].root)])
    captured = capsys.readouterr()
    assert rc == 2 and captured.err.strip().splitlines() == [
        f"error: --clinical {rows}: columns weight_kg and weight_lb both give weight_kg; keep one"]


def _noise(path: Path, seed: int, shape: tuple[int, int], kind: str, make) -> Path:
    rng = np.random.default_rng(seed)
    pixels = (rng.integers(0, 256, shape, dtype=np.uint8) if kind == "uniform" else
              np.clip(rng.normal(128, 50, shape), 0, 255).astype(np.uint8))
    path.write_bytes(make.image_bytes(pixels, path.suffix.lstrip(".").upper().replace("JPG", "JPEG")))
    return path


@pytest.mark.parametrize("seed,shape,kind,fmt", [(0, (512, 512), "gaussian", "png"), (0, (512, 512), "gaussian", "jpg"),
                                                 (2, (512, 512), "uniform", "png"), (3, (400, 600), "gaussian", "png"),
                                                 (1, (256, 256), "gaussian", "jpg"), (0, (96, 96), "uniform", "png")])
def test_noise_is_flagged_as_not_a_radiograph(seed, shape, kind, fmt, tmp_path, make):
    """Random noise (uniform or Gaussian, PNG or JPEG): its neighbouring pixels do not correlate, a radiograph's do."""
    image = _noise(tmp_path / f"noise.{fmt}", seed, shape, kind, make)
    refused, flag = radiograph_problems(image)
    assert refused is None and flag is not None and "noise" in flag, flag


def test_predict_says_noise_is_not_a_radiograph(saved_bundle, tmp_path, make, capsys):
    _, folder = saved_bundle
    image = _noise(tmp_path / "noise.png", 2, (512, 512), "uniform", make)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(folder), "--image", str(image), "--age", "60", "--sex", "female",
                 "--out", str(out)]) == 0
    warning = pd.read_csv(out, keep_default_na=False).loc[0, "warnings"]
    assert warning.startswith("image: not recognised as a knee radiograph (random noise: neighbouring pixels "), warning
