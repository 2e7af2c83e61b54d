"""The clinical spreadsheet as a tidy, typed table (one row per patient), and its data dictionary.

Free text is reduced to documented categories and flags by the rules below; anything that cannot
be interpreted raises DataValidationError naming the spreadsheet row and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import SPREADSHEET_NAME, resolve_data_dir
from .errors import DataValidationError

#: the outcome and what it is derived from: never a model input
TARGET_COLUMNS = ("t_score", "z_score", "diagnosis")


# raw header (lower-cased, whitespace and trailing ':' stripped) -> tidy name
RAW_COLUMNS: dict[str, str] = {
    "s.no": "row_number",
    "patient id": "patient_id",
    "joint pain": "joint_pain",
    "gender": "sex",
    "age": "age_years",
    "menopause age": "menopause_age_years",
    "height (meter)": "height_m",
    "weight (kg)": "weight_kg",
    "smoker": "smoker",
    "alcoholic": "alcohol",
    "diabetic": "diabetes",
    "hypothyroidism": "hypothyroidism",
    "number of pregnancies": "pregnancies",
    "seizer disorder": "seizure_disorder",
    "estrogen use": "estrogen_use",
    "occupation": "occupation_raw",
    "history of fracture": "fracture_history_raw",
    "dialysis": "dialysis",
    "family history of osteoporosis": "family_history_osteoporosis",
    "maximum walking distance (km)": "max_walking_km",
    "daily eating habits": "eating_habits_raw",
    "medical history": "medical_history_raw",
    "t-score value": "t_score",
    "z-score value": "z_score",
    "bmi": "bmi",
    "site": "site",
    "obesity": "weight_category",
    "diagnosis": "diagnosis",
}
REQUIRED_COLUMNS = ("patient_id", "sex", "age_years", "t_score", "diagnosis")
BOOLEAN_COLUMNS = ("joint_pain", "smoker", "alcohol", "diabetes", "hypothyroidism", "seizure_disorder",
                   "estrogen_use", "dialysis", "family_history_osteoporosis")
NUMERIC_COLUMNS = ("age_years", "menopause_age_years", "height_m", "weight_kg", "pregnancies",
                   "max_walking_km", "t_score", "z_score", "bmi")
YES_NO = {"yes": True, "y": True, "no": False, "n": False}
SEX = {"male": "male", "m": "male", "female": "female", "f": "female"}
DIAGNOSIS = {"normal": "normal", "osteopenia": "osteopenia", "osteoporosis": "osteoporosis",
             "osteopania": "osteopenia", "osteoporsis": "osteoporosis"}
WEIGHT_CATEGORY = {"normal weight": "normal", "normal": "normal", "over weight": "overweight",
                   "overweight": "overweight", "obesity": "obese", "obese": "obese",
                   "under weight": "underweight", "underweight": "underweight"}

# Free text reduced to documented categories/flags. Order matters: the first match wins.
OCCUPATION_GROUPS: list[tuple[str, str]] = [
    (r"^r\.", "retired"),
    (r"h\.?\s*wife|house", "homemaker"),
    (r"farmer|chopan|labour|worker|carpenter|plumber|barber|forest", "manual"),
    (r"teacher|lecturer|clerk|steno|g\.e", "office_or_teaching"),
    (r"bus+ines+man|shopkeeper|parlour|technician", "business_or_trade"),
    (r"nurse|health", "health"),
    (r"student", "student"),
]
FRACTURE_SITES: list[tuple[str, str]] = [
    (r"vertebr|lumbar|spin|neck", "spine"),
    (r"hip", "hip"),
    (r"wrist|arm|elbow|hand|shoulder|collar", "upper_limb"),
    (r"knee|leg|foot|ankle", "lower_limb"),
    (r"head", "other"),
]
MEDICAL_FLAGS: dict[str, str] = {
    "mh_hypertension": r"(?<!low )\bb\.?\s?p\b|hypert",
    "mh_disc_disease": r"\bdisk",
    "mh_hysterectomy": r"uterus",
    "mh_cholecystectomy": r"g\.\s?[bd]\b|g\.b&",
    "mh_caesarean": r"s[cie]{1,3}z[ie]r[ie]?a?n",
    "mh_arthritis": r"arthrit",
    "mh_liver_disease": r"liver|cirhosis|cirrhosis",
    "mh_hypercholesterolaemia": r"cholest|\btg\b",
}
DIET_FLAGS: dict[str, str] = {
    "diet_low_protein": r"prot|peot",
    "diet_low_fat": r"fat",
    "diet_vegetarian": r"veg",
    "diet_other_restriction": r"sugar|salt|sour|red meat|calcium|onion",
}
# Free-text mentions of the outcome itself (e.g. "disk. Osteopenia"): recorded, never an input.
DIAGNOSIS_MENTION = r"osteop"


def _norm_header(name: object) -> str:
    text = re.sub(r"\s+", " ", str(name)).strip().lower()
    return text.rstrip(":").strip()


def _norm_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = re.sub(r"\s+", " ", str(value)).strip().lower()
    return text or None


def _excel_row(index: int) -> int:
    """Spreadsheet row number of a DataFrame index (header is row 1)."""
    return int(index) + 2


def _map_categories(df: pd.DataFrame, column: str, mapping: dict, source: Path, allow_missing: bool) -> pd.Series:
    out = []
    for idx, raw in df[column].items():
        key = _norm_text(raw)
        if key is None:
            if not allow_missing:
                raise DataValidationError(f"{source.name}: row {_excel_row(idx)}, column {column!r}: value is missing")
            out.append(None)
        elif key in mapping:
            out.append(mapping[key])
        else:
            raise DataValidationError(
                f"{source.name}: row {_excel_row(idx)}, column {column!r}: unknown value {raw!r} "
                f"(allowed: {sorted(set(mapping))})"
            )
    return pd.Series(out, index=df.index, dtype="object")


def _first_match(text: str | None, rules: list[tuple[str, str]], default: str) -> str | None:
    if not isinstance(text, str):
        return None
    for pattern, name in rules:
        if re.search(pattern, text):
            return name
    return default


def parse_fracture_history(text: str | None) -> tuple[object, str | None]:
    """Free-text fracture history to (prior_fracture, site). Unparseable text gives (NA, None)."""
    if not isinstance(text, str):
        return pd.NA, None
    if text in {"no", "none", "nil"}:
        return False, "none"
    if text == "yes":
        return True, "unspecified"
    site = _first_match(text, FRACTURE_SITES, default="")
    if site == "" and not re.search(r"fracture|injury|replaced", text):
        return pd.NA, None  # e.g. an occupation typed into this column
    return True, site or "other"


def load_clinical(path: Path | None = None) -> pd.DataFrame:
    """Read `patient details.xlsx` into a tidy, typed table (one row per patient).

    Summary rows (no patient ID, e.g. the min/max/avg rows at the bottom) are dropped;
    any other value that cannot be interpreted raises DataValidationError naming the
    spreadsheet row and column.
    """
    path = Path(path) if path else resolve_data_dir() / SPREADSHEET_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: clinical spreadsheet not found")
    try:
        excel = path.suffix.lower() in {".xlsx", ".xls"}
        raw = pd.read_excel(path, dtype=object) if excel else pd.read_csv(path, dtype=object)
    except Exception as exc:  # openpyxl raises many types for broken files
        raise DataValidationError(f"{path.name}: cannot be read as a spreadsheet ({exc})") from exc
    renamed = {}
    for col in raw.columns:
        key = _norm_header(col)
        if key not in RAW_COLUMNS:
            raise DataValidationError(f"{path.name}: unexpected column {col!r}; known columns: {sorted(RAW_COLUMNS)}")
        renamed[col] = RAW_COLUMNS[key]
    df = raw.rename(columns=renamed)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(f"{path.name}: required column(s) missing: {missing}")
    for col in RAW_COLUMNS.values():
        if col not in df.columns:
            df[col] = None
    ids = df["patient_id"].map(_norm_text)
    df = df[ids.notna()].copy()
    df["patient_id"] = df["patient_id"].map(lambda v: str(v).strip())
    dup = df["patient_id"][df["patient_id"].duplicated(keep=False)]
    if len(dup):
        rows = ", ".join(f"{pid} (row {_excel_row(i)})" for i, pid in dup.items())
        raise DataValidationError(f"{path.name}: duplicated patient IDs: {rows}")

    for col in NUMERIC_COLUMNS:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = df[col].notna() & values.isna()
        if bad.any():
            idx = bad[bad].index[0]
            raise DataValidationError(
                f"{path.name}: row {_excel_row(idx)}, column {col!r}: {df.at[idx, col]!r} is not a number"
            )
        df[col] = values.astype(float)
    for col in BOOLEAN_COLUMNS:
        df[col] = _map_categories(df, col, YES_NO, path, allow_missing=True).astype("boolean")
    df["sex"] = _map_categories(df, "sex", SEX, path, allow_missing=False)
    df["diagnosis"] = _map_categories(df, "diagnosis", DIAGNOSIS, path, allow_missing=False)
    df["weight_category"] = _map_categories(df, "weight_category", WEIGHT_CATEGORY, path, allow_missing=True)
    df["site"] = df["site"].map(_norm_text)

    occupation = df["occupation_raw"].map(_norm_text)
    df["occupation_group"] = occupation.map(lambda t: _first_match(t, OCCUPATION_GROUPS, "other"))
    fracture = df["fracture_history_raw"].map(_norm_text).map(parse_fracture_history)
    df["prior_fracture"] = pd.array([f[0] for f in fracture], dtype="boolean")
    df["fracture_site"] = [f[1] for f in fracture]
    eating = df["eating_habits_raw"].map(_norm_text)
    for flag, pattern in DIET_FLAGS.items():
        df[flag] = eating.map(lambda t, p=pattern: bool(re.search(p, t)) if isinstance(t, str) else pd.NA
                              ).astype("boolean")
    medical = df["medical_history_raw"].map(_norm_text)
    for flag, pattern in MEDICAL_FLAGS.items():
        df[flag] = medical.map(lambda t, p=pattern: isinstance(t, str) and bool(re.search(p, t))).astype("boolean")
    df["mh_mentions_bone_diagnosis"] = medical.map(
        lambda t: isinstance(t, str) and bool(re.search(DIAGNOSIS_MENTION, t))).astype("boolean")
    df["postmenopausal"] = ((df["sex"] == "female") & df["menopause_age_years"].notna()).astype("boolean")
    df["years_since_menopause"] = (df["age_years"] - df["menopause_age_years"]).where(df["postmenopausal"])
    df["source_row"] = [_excel_row(i) for i in df.index]
    return df.reset_index(drop=True)


@dataclass(frozen=True)
class ColumnSpec:
    meaning: str
    unit: str = ""
    role: str = "input"  # input | target | id | excluded


COLUMN_SPECS: dict[str, ColumnSpec] = {
    "row_number": ColumnSpec("row counter of the spreadsheet", role="excluded"),
    "patient_id": ColumnSpec("patient identifier; also the image file stem", role="id"),
    "joint_pain": ColumnSpec("knee joint pain reported"),
    "sex": ColumnSpec("sex"),
    "age_years": ColumnSpec("age at examination", "years"),
    "menopause_age_years": ColumnSpec("age at menopause (missing for men and premenopausal women)", "years"),
    "height_m": ColumnSpec("height", "m"),
    "weight_kg": ColumnSpec("body weight", "kg"),
    "smoker": ColumnSpec("current smoker"),
    "alcohol": ColumnSpec("alcohol use (constant 'no' in this cohort: no information)", role="excluded"),
    "diabetes": ColumnSpec("diabetes mellitus"),
    "hypothyroidism": ColumnSpec("hypothyroidism"),
    "pregnancies": ColumnSpec("number of pregnancies (missing for men and some women)", "count"),
    "seizure_disorder": ColumnSpec("seizure disorder"),
    "estrogen_use": ColumnSpec("oestrogen use"),
    "occupation_raw": ColumnSpec("occupation, free text as entered", role="excluded"),
    "fracture_history_raw": ColumnSpec("fracture history, free text as entered", role="excluded"),
    "dialysis": ColumnSpec("on dialysis"),
    "family_history_osteoporosis": ColumnSpec("family history of osteoporosis"),
    "max_walking_km": ColumnSpec("maximum walking distance", "km"),
    "eating_habits_raw": ColumnSpec("eating habits, free text as entered", role="excluded"),
    "medical_history_raw": ColumnSpec("medical history, free text as entered", role="excluded"),
    "t_score": ColumnSpec("QUS T-score: defines the diagnosis", "SD", role="target"),
    "z_score": ColumnSpec("QUS Z-score: derived from the same measurement", "SD", role="target"),
    "bmi": ColumnSpec("body-mass index", "kg/m^2"),
    "site": ColumnSpec("measurement site (constant 'knee')", role="excluded"),
    "weight_category": ColumnSpec("BMI category as entered (redundant with bmi)", role="excluded"),
    "diagnosis": ColumnSpec("WHO class from the T-score", role="target"),
    "occupation_group": ColumnSpec("occupation grouped: "
                                   + ", ".join(sorted({g for _, g in OCCUPATION_GROUPS} | {"other"}))),
    "prior_fracture": ColumnSpec("any prior fracture (NA where the text is not about fractures)"),
    "fracture_site": ColumnSpec("site of prior fracture: "
                                + ", ".join(sorted({s for _, s in FRACTURE_SITES} | {"none", "unspecified"}))),
    "diet_low_protein": ColumnSpec("eating habits mention low/no protein"),
    "diet_low_fat": ColumnSpec("eating habits mention low/no fat"),
    "diet_vegetarian": ColumnSpec("eating habits mention a vegetarian diet"),
    "diet_other_restriction": ColumnSpec("other dietary restriction (sugar, salt, sour, red meat, calcium, onion)"),
    "mh_hypertension": ColumnSpec("medical history mentions (high) blood pressure"),
    "mh_disc_disease": ColumnSpec("medical history mentions disc disease"),
    "mh_hysterectomy": ColumnSpec("medical history mentions uterus removal"),
    "mh_cholecystectomy": ColumnSpec("medical history mentions gall-bladder removal"),
    "mh_caesarean": ColumnSpec("medical history mentions caesarean section"),
    "mh_arthritis": ColumnSpec("medical history mentions (rheumatoid) arthritis"),
    "mh_liver_disease": ColumnSpec("medical history mentions fatty liver or cirrhosis"),
    "mh_hypercholesterolaemia": ColumnSpec("medical history mentions cholesterol/triglycerides"),
    "mh_mentions_bone_diagnosis": ColumnSpec("medical history names osteopenia/osteoporosis: the outcome itself",
                                             role="excluded"),
    "postmenopausal": ColumnSpec("woman with a recorded menopause age"),
    "years_since_menopause": ColumnSpec("age minus menopause age (women after menopause)", "years"),
    "source_row": ColumnSpec("row of the spreadsheet this patient came from", role="excluded"),
}


def data_dictionary(clinical: pd.DataFrame) -> pd.DataFrame:
    """Every column: meaning, type, unit, allowed values, missing count, model-input role."""
    rows = []
    for col in clinical.columns:
        spec = COLUMN_SPECS.get(col, ColumnSpec("(undocumented)", role="excluded"))
        s = clinical[col]
        if pd.api.types.is_bool_dtype(s) or str(s.dtype) == "boolean":
            kind, allowed = "boolean", "True / False"
        elif pd.api.types.is_numeric_dtype(s):
            kind = "number"
            allowed = f"{s.min():.4g} .. {s.max():.4g}" if s.notna().any() else ""
        else:
            kind = "category" if s.nunique() <= 12 else "text"
            allowed = (", ".join(sorted(map(str, s.dropna().unique()))) if kind == "category"
                       else f"{s.nunique()} distinct")
        rows.append({"column": col, "meaning": spec.meaning, "type": kind, "unit": spec.unit,
                     "values": allowed, "missing": int(s.isna().sum()), "role": spec.role,
                     "model_input": spec.role == "input"})
    return pd.DataFrame(rows)
