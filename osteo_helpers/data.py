"""Dataset location and import, the clinical table, the manifest and its validation.

Raw files are only ever read. Everything here returns plain DataFrames so that the
notebooks, the tests and the command line call the same code.
"""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .config import PROJECT_ROOT, SPREADSHEET_NAME, UsageError, resolve_data_dir
from .runfolder import check_output_folder, exclusive
from .tabular import INPUT_FEATURES

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}
CLASSES_3 = ("normal", "osteopenia", "osteoporosis")
CLASSES_BINARY = ("normal", "low_bmd")
TARGET_COLUMNS = ("t_score", "z_score", "diagnosis")
REGISTRY_NAME = "knee-osteoporosis-v2.csv"
IMPORT_PREFIX = ".import-"  # staging folders of `import_dataset`, beside the destination


class DataValidationError(ValueError):
    """Raw data that cannot be interpreted; the message names the file, row and column."""


class ImageReadError(DataValidationError):
    """An image file that cannot be decoded."""


class DatasetLayoutError(DataValidationError, UsageError):
    """A dataset folder without its class folders or without images: nothing to analyse (exit 2)."""


# ----------------------------------------------------------------------------- files


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_images(data_dir: Path) -> dict[str, Path]:
    """Map patient ID (file stem) to image path, whatever the extension's case or nesting."""
    found: dict[str, Path] = {}
    for path in sorted(Path(data_dir).rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
            continue
        pid = path.stem.strip()
        if pid in found:
            raise DataValidationError(
                f"two image files claim patient {pid!r}: {found[pid]} and {path}; remove one"
            )
        found[pid] = path
    return found


def check_layout(data_dir: Path, images: dict[str, Path] | None = None) -> None:
    """Refuse a dataset folder that lacks a class folder or holds no image, before anything reads it.

    Otherwise a folder with only the spreadsheet passes every check and fails deep inside a model fit.
    """
    data_dir = Path(data_dir)
    present = {p.name.lower() for p in data_dir.iterdir() if p.is_dir()}
    missing = [f"{c}/" for c in CLASSES_3 if c not in present]
    if missing:
        raise DatasetLayoutError(f"{data_dir}: class folder(s) missing: {', '.join(missing)} "
                                 f"(expected {', '.join(c + '/' for c in CLASSES_3)} beside '{SPREADSHEET_NAME}')")
    if not (find_images(data_dir) if images is None else images):
        raise DatasetLayoutError(f"{data_dir}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} "
                                 f"under {', '.join(c + '/' for c in CLASSES_3)})")


def registry_path() -> Path:
    return Path(str(resources.files("osteo_helpers") / "registry" / REGISTRY_NAME))


def read_registry(path: Path | None = None) -> pd.DataFrame:
    """The shipped checksum registry: relative path, byte size and SHA-256 of every file."""
    return pd.read_csv(path or registry_path(), dtype={"path": str, "bytes": int, "sha256": str})


def write_registry(data_dir: Path, out: Path) -> pd.DataFrame:
    """Hash every dataset file (used once, by maintainers, to make the registry)."""
    rows = []
    for p in sorted(Path(data_dir).rglob("*")):
        if p.is_file() and (p.suffix.lower() in IMAGE_EXTENSIONS or p.name == SPREADSHEET_NAME):
            rows.append({"path": p.relative_to(data_dir).as_posix(), "bytes": p.stat().st_size,
                         "sha256": sha256_file(p)})
    table = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    return table


def verify_files(data_dir: Path, registry: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Compare a dataset folder with the registry: missing, mismatched and unexpected files."""
    registry = read_registry() if registry is None else registry
    by_name = _index_by_name(Path(data_dir))
    missing, mismatched = [], []
    for row in registry.itertuples():
        src = by_name.get(Path(row.path).name)
        if src is None:
            missing.append(row.path)
        elif src.stat().st_size != row.bytes or sha256_file(src) != row.sha256:
            mismatched.append(row.path)
    expected = {Path(p).name for p in registry["path"]}
    unexpected = sorted(n for n in by_name if n not in expected)
    return {"missing": missing, "mismatched": mismatched, "unexpected": unexpected}


def _index_by_name(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.rglob("*")) if p.is_file() and "__MACOSX" not in p.parts}


def _unzip(archive: Path, into: Path, name: str) -> None:
    """Extract every member; a member failing its CRC (or not inflatable) is named, not a BadZipFile traceback."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"{name}: not a readable zip file ({exc}); nothing was installed") from exc
    with zf:
        for member in zf.infolist():
            try:
                zf.extract(member, into)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise DataValidationError(f"{name}: member {member.filename!r} is damaged ({exc}); "
                                          "nothing was installed") from exc


def import_dataset(source: Path, dest: Path | None = None, registry: pd.DataFrame | None = None) -> Path:
    """Install a downloaded copy (folder or zip) under data/raw after verifying every file.

    Files are staged in a temporary folder beside the destination and moved into place
    only when all of them match, so a failed import leaves nothing half-copied: the staging
    folder goes however the import ends (error, Ctrl-C), and one left by a killed import is
    removed by the next (imports into one place take turns, so none is removed while in use).
    """
    source = Path(source)
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    if not (source.is_dir() or zipfile.is_zipfile(source)):
        raise UsageError(f"{source}: expected a folder or a .zip file")
    dest = check_output_folder(dest or PROJECT_ROOT / "data" / "raw", "import destination",
                               data_dir=source if source.is_dir() else None)
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"import destination {dest} already holds files; move them away before importing again")
    registry = read_registry() if registry is None else registry
    with exclusive(dest.parent, command=f"data import {source}", lock_name=".import.lock"), \
            tempfile.TemporaryDirectory(dir=dest.parent, prefix=IMPORT_PREFIX) as tmp:
        for stale in dest.parent.glob(IMPORT_PREFIX + "*"):
            if stale != Path(tmp):
                shutil.rmtree(stale, ignore_errors=True)
        tmp_path = Path(tmp)
        root = source
        if not source.is_dir():
            root = tmp_path / "unpacked"
            _unzip(source, root, str(source))
            for inner in list(root.rglob("*.zip")):
                _unzip(inner, inner.with_suffix(""), f"{source} > {inner.relative_to(root).as_posix()}")
        problems = verify_files(root, registry)
        if problems["missing"] or problems["mismatched"]:
            lines = [f"  checksum mismatch: {p}" for p in problems["mismatched"]]
            lines += [f"  missing: {p}" for p in problems["missing"]]
            raise DataValidationError(
                f"{source} does not match the registry ({len(lines)} problem(s)); nothing was installed:\n"
                + "\n".join(lines)
            )
        by_name = _index_by_name(root)
        staged = tmp_path / "staged"
        for row in registry.itertuples():
            target = staged / row.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(by_name[Path(row.path).name], target)
        if dest.exists():
            dest.rmdir()
        staged.rename(dest)
    return dest


# ----------------------------------------------------------------------------- clinical table

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
        raw = pd.read_excel(path, dtype=object) if path.suffix.lower() in {".xlsx", ".xls"} else pd.read_csv(path, dtype=object)
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
        df[flag] = eating.map(lambda t, p=pattern: bool(re.search(p, t)) if isinstance(t, str) else pd.NA).astype("boolean")
    medical = df["medical_history_raw"].map(_norm_text)
    for flag, pattern in MEDICAL_FLAGS.items():
        df[flag] = medical.map(lambda t, p=pattern: isinstance(t, str) and bool(re.search(p, t))).astype("boolean")
    df["mh_mentions_bone_diagnosis"] = medical.map(lambda t: isinstance(t, str) and bool(re.search(DIAGNOSIS_MENTION, t))).astype("boolean")
    df["postmenopausal"] = ((df["sex"] == "female") & df["menopause_age_years"].notna()).astype("boolean")
    df["years_since_menopause"] = (df["age_years"] - df["menopause_age_years"]).where(df["postmenopausal"])
    df["source_row"] = [_excel_row(i) for i in df.index]
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------- data dictionary


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
    "occupation_group": ColumnSpec("occupation grouped: " + ", ".join(sorted({g for _, g in OCCUPATION_GROUPS} | {"other"}))),
    "prior_fracture": ColumnSpec("any prior fracture (NA where the text is not about fractures)"),
    "fracture_site": ColumnSpec("site of prior fracture: " + ", ".join(sorted({s for _, s in FRACTURE_SITES} | {"none", "unspecified"}))),
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
    "mh_mentions_bone_diagnosis": ColumnSpec("medical history names osteopenia/osteoporosis: the outcome itself", role="excluded"),
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
            allowed = ", ".join(sorted(map(str, s.dropna().unique()))) if kind == "category" else f"{s.nunique()} distinct"
        rows.append({"column": col, "meaning": spec.meaning, "type": kind, "unit": spec.unit,
                     "values": allowed, "missing": int(s.isna().sum()), "role": spec.role,
                     "model_input": spec.role == "input"})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- manifest


def image_batch(mode: str, width: int, height: int) -> str:
    """Acquisition batch from file attributes: colour mode and size class differ per source."""
    long_side = max(width, height)
    colour = "gray" if mode in {"L", "I;16", "I", "F"} else "rgb"
    size = "1k" if long_side < 1500 else "2k+"
    return f"{colour}-{size}"


def image_header(path: Path) -> dict[str, object]:
    """Size and colour mode from the file header (no full decode)."""
    try:
        with Image.open(path) as im:
            return {"width": im.width, "height": im.height, "mode": im.mode, "format": im.format}
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def image_error(path: Path) -> str | None:
    """Why an image cannot be decoded to its last byte, or None. A truncated JPEG has a readable header."""
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


#: One person entered twice has the same clinical record: every cleaned model input, T- and Z-score.
CLINICAL_RECORD_COLUMNS: tuple[str, ...] = INPUT_FEATURES + ("t_score", "z_score")


def _record_ids(clinical: pd.DataFrame) -> pd.Series:
    """Patient ID -> an id shared by identical clinical records (NaN equals NaN)."""
    codes = clinical.groupby(list(CLINICAL_RECORD_COLUMNS), dropna=False, sort=False).ngroup()
    return pd.Series(codes.to_numpy(), index=clinical["patient_id"].to_numpy())


def clinical_duplicate_groups(clinical: pd.DataFrame) -> list[list[str]]:
    """Patients whose clinical records are identical (only free-text spelling may differ), sorted."""
    ids = _record_ids(clinical)
    groups = ids.index.to_series().groupby(ids.to_numpy()).agg(sorted)
    return sorted(g for g in groups if len(g) > 1)


def person_groups(manifest: pd.DataFrame, clinical: pd.DataFrame) -> pd.Series:
    """The split group of every manifest row: one person, one group.

    Connected components over "byte-identical image" or "identical clinical record", so chains
    join (A = B by image, B = C by record puts A, B and C together) and no person is ever on
    both sides of a split. A patient alone keeps its ID; a group is named by its members.
    """
    n = len(manifest)
    rows = np.arange(n)
    keys = (manifest["image_sha256"].to_numpy(), _record_ids(clinical).reindex(manifest["patient_id"]).to_numpy())
    src, dst = [], []
    for key in keys:
        codes, _ = pd.factorize(key)  # missing (no image) -> -1: links nothing
        known = codes >= 0
        src.append(rows[known])
        dst.append(pd.Series(rows[known]).groupby(codes[known]).transform("min").to_numpy())
    src, dst = np.concatenate(src), np.concatenate(dst)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    names = pd.Series(manifest["patient_id"].to_numpy(), dtype=object).groupby(component).transform(
        lambda ids: "+".join(sorted(ids)))
    return pd.Series(names.to_numpy(), index=manifest.index, dtype=object, name="split_group")


def build_manifest(data_dir: Path | None = None, clinical: pd.DataFrame | None = None,
                   strict: bool = True) -> pd.DataFrame:
    """One row per patient: labels, T-score, image path (relative), checksum, size, mode, batch.

    Patients without an image keep their row (image_path empty); images without a row
    are reported by `validate`, not added, because they have no label. `split_group` joins
    one person's rows (`person_groups`). An image whose header cannot be read raises
    ImageReadError, unless strict=False (`data check`), which keeps the row without size and
    mode so that `validate` reports it with every other problem.
    """
    data_dir = resolve_data_dir(data_dir)
    images = find_images(data_dir)
    check_layout(data_dir, images)
    clinical = load_clinical(data_dir / SPREADSHEET_NAME) if clinical is None else clinical
    rows = []
    for rec in clinical.itertuples():
        path = images.get(rec.patient_id)
        row = {"patient_id": rec.patient_id, "diagnosis": rec.diagnosis,
               "label_3class": CLASSES_3.index(rec.diagnosis),
               "label_binary": int(rec.diagnosis != "normal"), "t_score": rec.t_score,
               "image_path": None, "image_sha256": None, "width": np.nan, "height": np.nan,
               "mode": None, "image_folder": None, "batch": None}
        if path is not None:
            row.update(image_path=path.relative_to(data_dir).as_posix(), image_sha256=sha256_file(path),
                       image_folder=path.parent.name)
            try:
                header = image_header(path)
            except ImageReadError:
                if strict:
                    raise
            else:
                row.update(width=header["width"], height=header["height"], mode=header["mode"],
                           batch=image_batch(str(header["mode"]), int(header["width"]), int(header["height"])))
        rows.append(row)
    manifest = pd.DataFrame(rows)
    manifest["has_image"] = manifest["image_path"].notna()
    sha = manifest["image_sha256"]
    group_ids = {h: f"dup{i:02d}" for i, h in enumerate(sorted(sha[sha.duplicated(keep=False) & sha.notna()].unique()))}
    manifest["duplicate_group"] = sha.map(group_ids)
    manifest["split_group"] = person_groups(manifest, clinical)
    manifest["age_years"] = clinical.set_index("patient_id").loc[manifest["patient_id"], "age_years"].to_numpy()
    manifest["sex"] = clinical.set_index("patient_id").loc[manifest["patient_id"], "sex"].to_numpy()
    return manifest


def who_diagnosis(t_score: float) -> str:
    """WHO class from a T-score: normal >= -1.0, osteoporosis <= -2.5, osteopenia between."""
    if t_score >= -1.0:
        return "normal"
    if t_score <= -2.5:
        return "osteoporosis"
    return "osteopenia"


# Plausibility limits for an adult clinical cohort; values outside are reported, not changed.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "age_years": (18, 100), "height_m": (1.2, 2.1), "weight_kg": (30, 200), "bmi": (15, 50),
    "menopause_age_years": (35, 60), "pregnancies": (0, 15), "max_walking_km": (0, 30),
    "t_score": (-6, 4), "z_score": (-6, 4),
}


def implausible_values(clinical: pd.DataFrame) -> list[dict[str, object]]:
    """Values outside physiological ranges or inconsistent with each other."""
    out: list[dict[str, object]] = []
    for col, (lo, hi) in PLAUSIBLE_RANGES.items():
        for rec in clinical.loc[(clinical[col] < lo) | (clinical[col] > hi), ["patient_id", col]].itertuples(index=False):
            out.append({"patient_id": rec[0], "column": col, "value": float(rec[1]), "expected": f"{lo}..{hi}"})
    bad_bmi = (clinical["weight_kg"] / clinical["height_m"] ** 2 - clinical["bmi"]).abs() > 0.5
    for pid in clinical.loc[bad_bmi, "patient_id"]:
        out.append({"patient_id": pid, "column": "bmi", "value": None, "expected": "weight/height^2"})
    late = clinical["menopause_age_years"] > clinical["age_years"]
    for pid in clinical.loc[late, "patient_id"]:
        out.append({"patient_id": pid, "column": "menopause_age_years", "value": None, "expected": "<= age"})
    male_meno = (clinical["sex"] == "male") & clinical["menopause_age_years"].notna()
    for pid in clinical.loc[male_meno, "patient_id"]:
        out.append({"patient_id": pid, "column": "menopause_age_years", "value": None, "expected": "empty for men"})
    return out


def validate(manifest: pd.DataFrame, clinical: pd.DataFrame, data_dir: Path | None = None) -> dict[str, object]:
    """Every problem found in the raw data, as plain JSON-ready values. Nothing is modified.

    Every image is decoded to its last byte (a few seconds for the real data): a truncated or
    corrupt file is listed under `unreadable_images`.
    """
    data_dir = resolve_data_dir(data_dir)
    images = find_images(data_dir)
    unreadable = [{"patient_id": pid, "path": path.relative_to(data_dir).as_posix(), "error": error}
                  for pid, path in sorted(images.items()) if (error := image_error(path)) is not None]
    ids = set(manifest["patient_id"])
    dup_groups = [sorted(g["patient_id"]) for _, g in manifest.dropna(subset=["duplicate_group"]).groupby("duplicate_group")]
    label_of = manifest.set_index("patient_id")["diagnosis"]
    cross = [g for g in dup_groups if label_of.loc[g].nunique() > 1]
    mismatch = [pid for pid, t, d in manifest[["patient_id", "t_score", "diagnosis"]].itertuples(index=False)
                if who_diagnosis(t) != d]
    folder_mismatch = [pid for pid, folder, d in manifest[["patient_id", "image_folder", "diagnosis"]].itertuples(index=False)
                       if isinstance(folder, str) and folder.lower() in CLASSES_3 and folder.lower() != d]
    unparsed_fracture = clinical.loc[clinical["prior_fracture"].isna() & clinical["fracture_history_raw"].notna(),
                                     ["patient_id", "fracture_history_raw"]]
    constant = [c for c in clinical.columns if clinical[c].nunique(dropna=True) <= 1]
    return {
        "patients": int(len(manifest)),
        "images": int(len(images)),
        "rows_without_image": sorted(manifest.loc[~manifest["has_image"], "patient_id"]),
        "images_without_row": sorted(set(images) - ids),
        "duplicate_groups": dup_groups,
        "cross_class_duplicate_groups": cross,
        "label_tscore_mismatches": sorted(mismatch),
        "duplicate_clinical_records": clinical_duplicate_groups(clinical),
        "unreadable_images": unreadable,
        "folder_label_mismatches": sorted(folder_mismatch),
        "implausible_values": implausible_values(clinical),
        "unparsed_free_text": [{"patient_id": r[0], "column": "fracture_history_raw", "value": r[1]}
                               for r in unparsed_fracture.itertuples(index=False)],
        "outcome_mentioned_in_inputs": sorted(clinical.loc[clinical["mh_mentions_bone_diagnosis"].fillna(False), "patient_id"]),
        "constant_columns": constant,
        "batches": {str(k): int(v) for k, v in manifest["batch"].value_counts().items()},
    }


def format_findings(findings: dict[str, object]) -> str:
    """The validation findings as text for a person."""
    lines = [f"patients: {findings['patients']}   images: {findings['images']}"]
    for key in ("rows_without_image", "images_without_row", "label_tscore_mismatches", "folder_label_mismatches",
                "outcome_mentioned_in_inputs", "constant_columns"):
        items = findings[key]
        lines.append(f"{key.replace('_', ' ')}: {len(items)}" + (f"  {', '.join(map(str, items))}" if items else ""))
    groups = findings["duplicate_groups"]
    lines.append(f"duplicate image groups (identical bytes): {len(groups)}, "
                 f"of which {len(findings['cross_class_duplicate_groups'])} span more than one class")
    lines += [f"  {' = '.join(g)}" + ("   <- crosses classes" if g in findings["cross_class_duplicate_groups"] else "")
              for g in groups]
    records = findings["duplicate_clinical_records"]
    lines.append(f"duplicate clinical records (every input, T- and Z-score equal; one person entered twice): "
                 f"{len(records)}")
    lines += [f"  {' = '.join(g)}" for g in records]
    unreadable = findings["unreadable_images"]
    lines.append(f"unreadable images (cannot be decoded to the last byte): {len(unreadable)}")
    lines += [f"  {u['patient_id']} ({u['path']}): {u['error']}" for u in unreadable]
    lines.append(f"implausible values: {len(findings['implausible_values'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']} (expected {v['expected']})" for v in findings["implausible_values"]]
    lines.append(f"free text not understood: {len(findings['unparsed_free_text'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']!r}" for v in findings["unparsed_free_text"]]
    lines.append("acquisition batches: " + ", ".join(f"{k}: {v}" for k, v in findings["batches"].items()))
    return "\n".join(lines)


def load_manifest(path: Path) -> pd.DataFrame:
    """Read a saved manifest, with the error a user needs when notebook 01 has not run."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no manifest; run notebooks/01_eda_manifest.ipynb (or `python -m osteo_helpers run`) first")
    return pd.read_csv(path, dtype={"patient_id": str, "image_path": str, "image_sha256": str, "duplicate_group": str})


def modelling_table(manifest: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """Patients with an image joined to their clinical row: the cohort every model sees."""
    cohort = manifest[manifest["has_image"]].drop(columns=["age_years", "sex"])
    return cohort.merge(clinical.drop(columns=["diagnosis", "t_score"]), on="patient_id", how="left", validate="one_to_one")
