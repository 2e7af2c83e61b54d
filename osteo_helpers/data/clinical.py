"""A cohort's table as the tidy, typed clinical table (one row per table row), and its data dictionary.

Everything cohort-specific (column names, units, spellings, free-text rules) comes from the cohort
spec (`spec.CohortSpec`); this module only applies it. Every row and column is read before anything
is said: a value that cannot be interpreted (or a required one that is missing) is a `Problem`
naming the file, row and column, and all of them are raised together (`CohortProblemsError`), or,
for `cohort check`, listed in ``table.attrs["problems"]`` with their rows left out. Free text that no
rule understands is kept missing and listed in ``table.attrs["unparsed_free_text"]`` for `validate`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..tasks import who_class_name
from ..vocabulary import CATEGORY_VALUES, COLUMN_SPECS, IMAGE_FILE, INPUT_FEATURES, MENTION_COLUMN, ColumnSpec
from .errors import TableColumnError, separator_note, some_columns
from .problems import CohortProblemsError, Problem, TableProblems
from .spec import REQUIRED_INPUTS, YES_NO, CohortSpec, InputSpec, load_spec, normalise_header, normalise_text


def table_row(index: int) -> int:
    """The row of the table file a DataFrame index came from (the header is row 1)."""
    return int(index) + 2


#: the last table parsed in this process, by its bytes' SHA-256, format and sheet: a notebook kernel opens the
#: cohort once per notebook, and parsing a spreadsheet takes 0.15 s where hashing it takes a millisecond
_LAST_PARSED: dict[tuple[str, str, object], pd.DataFrame] = {}


def read_table(path: Path, spec: CohortSpec) -> pd.DataFrame:
    """The cohort's table as text cells (dtype object), columns as in the file; TableColumnError (exit
    status 2) when it is not there or cannot be read."""
    if not path.is_file():
        raise TableColumnError(f"{path}: the cohort's table ([table] file of {spec.source}) not found")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise TableColumnError(f"{path.name}: cannot be read ({exc.strerror})") from exc
    key = (hashlib.sha256(content).hexdigest(), spec.table_format, spec.sheet)
    if key not in _LAST_PARSED:
        _LAST_PARSED.clear()
        _LAST_PARSED[key] = _parse_table(io.BytesIO(content), spec, path.name)
    return _LAST_PARSED[key].copy()


def _parse_table(content: io.BytesIO, spec: CohortSpec, name: str) -> pd.DataFrame:
    try:
        if spec.table_format == "excel":
            return pd.read_excel(content, sheet_name=spec.sheet, dtype=object)
        if spec.table_format == "parquet":
            return pd.read_parquet(content).astype(object)
        return pd.read_csv(content, dtype=object)
    except ImportError as exc:  # no Parquet engine installed
        raise TableColumnError(f"{name}: cannot be read ({exc})") from exc
    except Exception as exc:  # the readers raise many types for a broken file
        raise TableColumnError(f"{name}: cannot be read as a table ({exc})") from exc


def _columns(raw: pd.DataFrame, spec: CohortSpec, name: str) -> dict[str, str]:
    """The spec's column names -> the table's headers (compared by `normalise_header`)."""
    by_key: dict[str, str] = {}
    for col in raw.columns:
        key = normalise_header(col)
        if key in by_key:
            raise TableColumnError(f"{name}: columns {by_key[key]!r} and {col!r} cannot be told apart")
        by_key[key] = col
    used = spec.columns_used()
    missing = [c for c in used if normalise_header(c) not in by_key]
    separator = separator_note(raw.columns) if spec.table_format == "csv" else ""
    if missing and separator:
        raise TableColumnError(f"{name}: read as one column {str(raw.columns[0])[:60]!r}: {separator}; save it with "
                               "commas, or as .xlsx")
    if missing:
        raise TableColumnError(f"{name}: column(s) {', '.join(map(repr, missing))} named in {spec.source} are "
                               f"missing (the table has {len(raw.columns)}: {some_columns(raw.columns, missing)})")
    if spec.all_columns_named:
        unnamed = [c for k, c in by_key.items() if k not in {normalise_header(u) for u in used}]
        if unnamed:
            raise TableColumnError(f"{name}: unexpected column {unnamed[0]!r}; {spec.source} names every column "
                                   "of this table")
    return {c: by_key[normalise_header(c)] for c in used}


def _where(name: str, column: str | None) -> str:
    return f"{name}, column {column!r}"


def _numbers(cells: pd.Series, where: str, problems: list[Problem]) -> pd.Series:
    """The cells as numbers; a cell that is not one is a problem (and missing)."""
    values = pd.to_numeric(cells, errors="coerce")
    bad = cells.notna() & values.isna()
    problems += [Problem(where, "not a number", table_row(idx), repr(cells[idx])) for idx in bad[bad].index]
    return values.astype(float)


def _mapped(cells: pd.Series, mapping: dict, where: str, problems: list[Problem], required: str = "") -> list:
    """Each cell through the spec's spellings (compared as normalised text); an unknown spelling, or a
    missing cell where one is ``required`` (the reason), is a problem (and missing)."""
    out = []
    for idx, raw in cells.items():
        key = normalise_text(raw)
        if key is not None and key in mapping:
            out.append(mapping[key])
            continue
        if key is not None:
            problems.append(Problem(where, f"unknown value (known: {', '.join(sorted(set(mapping)))})",
                                    table_row(idx), repr(raw)))
        elif required:
            problems.append(Problem(where, f"value is missing ({required})", table_row(idx)))
        out.append(None)
    return out


def _typed(values: list, booleans: bool, index: pd.Index | None = None) -> pd.Series:
    """Booleans as pandas' nullable boolean, anything else as plain objects (never inferred as str)."""
    if booleans:
        return pd.Series(pd.array([pd.NA if v is None else v for v in values], dtype="boolean"), index=index)
    return pd.Series(values, dtype="object", index=index)


def first_match(text: str | None, rules: tuple[tuple[str, object], ...], default: object) -> object:
    """The value of the first rule whose regular expression is found in the text; `default` if none is."""
    if not isinstance(text, str):
        return None
    for pattern, value in rules:
        if re.search(pattern, text):
            return value
    return default


def _input(spec: InputSpec, cells: pd.Series | None, table: pd.DataFrame, where: str, problems: list[Problem]
           ) -> tuple[pd.Series, list[int]]:
    """One canonical input from its cells; also the rows whose free text no rule understood."""
    booleans = spec.kind == "boolean"
    if spec.from_input is not None:
        source = table[spec.from_input].astype(object)
        mapped = [None if pd.isna(v) else spec.values.get(normalise_text(v) or "") for v in source]
        return _typed(mapped, booleans), []
    if spec.kind == "number":
        values = _numbers(cells, where, problems)
        return (values if spec.factor == 1.0 else values * spec.factor), []
    if spec.pattern is not None:
        text = [normalise_text(v) for v in cells]
        flags = [spec.when_missing if t is None else bool(re.search(spec.pattern, t)) for t in text]
        return _typed(flags, booleans), []
    if spec.rules:
        text = [normalise_text(v) for v in cells]
        values = [first_match(t, spec.rules, spec.default) for t in text]
        unparsed = [i for i, (t, v) in enumerate(zip(text, values, strict=True)) if t is not None and v is None]
        return (_typed(values, True) if booleans else pd.Series(values)), unparsed  # categories: pandas' str
    mapping = spec.values if spec.values is not None else (YES_NO if booleans else
                                                         {v: v for v in CATEGORY_VALUES.get(spec.name, ())})
    return _typed(_mapped(cells, mapping, where, problems), booleans), []


def _required(values: pd.Series, cells: pd.Series | None, name: str, where: str, problems: list[Problem]) -> None:
    """A required input (age, sex) missing in a row where no other problem was found is a problem."""
    flagged = {p.row for p in problems if p.where == where}
    for idx in values.index[values.isna().to_numpy()]:
        if table_row(idx) in flagged:
            continue
        empty = cells is None or normalise_text(cells[idx]) is None
        why = "value is missing" if empty else "value not understood by any rule"
        problems.append(Problem(where, f"{why} ({name} is required: the declared clinical model uses it)",
                                table_row(idx), None if empty else repr(cells[idx])))


def _image_paths(cells: pd.Series, folder: Path, where: str, problems: list[Problem]) -> pd.Series:
    """The image column's relative paths; one that leaves the cohort folder is a problem (and missing)."""
    inside = os.path.realpath(folder) + os.sep  # links followed: a link out of the folder leaves it
    out = []
    for idx, rel in cells.items():
        text = None if normalise_text(rel) is None else str(rel).strip()
        if text is not None and (os.path.isabs(text) or not os.path.realpath(os.path.join(folder, text)
                                                                               ).startswith(inside)):
            problems.append(Problem(where, "not a path inside the cohort folder", table_row(idx), repr(text)))
            text = None
        out.append(text)
    return pd.Series(out, index=cells.index, dtype=object)


def load_clinical(path: Path | None = None, spec: CohortSpec | None = None, strict: bool = True) -> pd.DataFrame:
    """Read a cohort's table into the tidy, typed clinical table (one row per table row).

    ``spec`` None: the published dataset's shipped spec; ``path`` None: the spec's table under the
    spec's root. Columns: ``patient_id``; the role columns the spec names (``person_id``, ``site``,
    ``batch``, ``knee_side``, ``view``); ``diagnosis``, ``t_score`` (and ``z_score``); every mapped
    input in canonical units; the kept columns; ``postmenopausal``, ``years_since_menopause`` and
    ``bmi`` (from weight and height) where their sources exist; ``source_row``.

    Every row and column is read first; then every problem found (`Problem`: a cell that is not a
    number or not a known value, a missing ID, outcome, age or sex, a duplicated ID, an image path
    outside the cohort folder) is raised at once (`CohortProblemsError`). ``strict`` False (`cohort
    check`) returns the other rows instead, with the problems and the number of rows with an ID in
    ``attrs["problems"]`` (`TableProblems`).
    """
    spec = load_spec() if spec is None else spec
    if path is None:
        if spec.root is None:
            raise TableColumnError(f"{spec.source}: no [cohort] root; give the cohort folder")
        path = spec.root / spec.table_file
    path = Path(path)
    raw = read_table(path, spec)
    name = path.name
    cols = _columns(raw, spec, name)
    problems: list[Problem] = []
    ids = raw[cols[spec.id_column]].map(normalise_text)
    if not spec.skip_rows_without_id:
        problems += [Problem(_where(name, spec.id_column), "no ID", table_row(idx)) for idx in ids.index[ids.isna()]]
    raw = raw[ids.notna()]
    if raw.empty:
        raise TableColumnError(f"{name}: no data rows, only a header: nothing to analyse" if ids.empty else
                               f"{name}: no row has an ID in column {spec.id_column!r}: nothing to analyse")
    df = pd.DataFrame({"patient_id": [str(v).strip() for v in raw[cols[spec.id_column]]]}, index=raw.index)
    dup = df["patient_id"][df["patient_id"].duplicated(keep=False)]
    problems += [Problem(_where(name, spec.id_column), "duplicated ID", table_row(i), repr(pid))
                 for i, pid in dup.items()]
    for role, column in spec.roles.items():
        values = raw[cols[column]].map(lambda v: None if normalise_text(v) is None else str(v).strip())
        df["person_id" if role == "person" else role] = values
    if "person_id" in df:
        df["person_id"] = df["person_id"].fillna(df["patient_id"])
    if spec.image_column is not None:
        folder = path.parents[len(Path(spec.table_file).parts) - 1]  # the cohort folder: paths are relative to it
        df[IMAGE_FILE] = _image_paths(raw[cols[spec.image_column]], folder, _where(name, spec.image_column),
                                      problems)
    if spec.class_column is not None:
        df["diagnosis"] = _typed(_mapped(raw[cols[spec.class_column]], dict(spec.class_values),
                                         _where(name, spec.class_column), problems, "the class is the outcome"),
                                 False, df.index)
    if spec.t_score is not None:
        df["t_score"] = _numbers(raw[cols[spec.t_score]], _where(name, spec.t_score), problems)
        if spec.class_column is None:
            where = _where(name, spec.t_score)
            flagged = {p.row for p in problems if p.where == where}  # not a number: said already
            problems += [Problem(where, "value is missing (the T-score is the outcome)", table_row(idx))
                         for idx in df.index[df["t_score"].isna().to_numpy()] if table_row(idx) not in flagged]
            df["diagnosis"] = df["t_score"].map(lambda t: None if pd.isna(t) else who_class_name(t)).astype(object)
    else:
        df["t_score"] = np.nan
    if spec.z_score is not None:
        df["z_score"] = _numbers(raw[cols[spec.z_score]], _where(name, spec.z_score), problems)
    unparsed = []
    for spec_input in spec.inputs.values():
        column = spec_input.column
        cells = raw[cols[column]] if column is not None else None
        where = _where(name, column or spec_input.from_input)
        values, bad = _input(spec_input, cells, df, where, problems)
        df[spec_input.name] = values.set_axis(df.index)
        if spec_input.name in REQUIRED_INPUTS:
            _required(df[spec_input.name], cells, spec_input.name, where, problems)
        unparsed += [{"patient_id": df["patient_id"].iloc[i], "column": column, "value": cells.iloc[i]}
                     for i in bad]
    for keep in spec.keep.values():
        cells, where = raw[cols[keep.column]], _where(name, keep.column)
        if keep.values is not None:
            booleans = all(isinstance(v, bool) for v in keep.values.values())
            df[keep.name] = _typed(_mapped(cells, dict(keep.values), where, problems), booleans, df.index)
        elif keep.kind == "number":
            df[keep.name] = _numbers(cells, where, problems)
        else:
            df[keep.name] = cells.map(normalise_text) if keep.kind == "text" else cells
    if spec.mention_column is not None:
        text = raw[cols[spec.mention_column]].map(normalise_text)
        df[MENTION_COLUMN] = pd.array([isinstance(t, str) and bool(re.search(spec.mention_pattern, t))
                                       for t in text], dtype="boolean")
    df = add_derived_inputs(df)
    df["source_row"] = [table_row(i) for i in df.index]
    id_of = dict(zip(df["source_row"], df["patient_id"], strict=True))
    problems = sorted((replace(p, patient_id=id_of.get(p.row)) for p in problems), key=lambda p: p.row or 0)
    if problems and strict:
        raise CohortProblemsError(spec.name, spec.source, problems)
    rows = len(df)
    df = df[~df["source_row"].isin({p.row for p in problems})].reset_index(drop=True)
    kept = set(df["patient_id"])
    df.attrs["unparsed_free_text"] = sorted((u for u in unparsed if u["patient_id"] in kept),
                                            key=lambda u: (str(u["column"]), u["patient_id"]))
    df.attrs["problems"] = TableProblems(tuple(problems), rows)
    return df


def add_derived_inputs(df: pd.DataFrame) -> pd.DataFrame:
    """The inputs computed the same way for every cohort, where their sources exist: the menopause
    inputs from sex, age and menopause age; BMI from weight and height when the cohort has none."""
    if {"sex", "menopause_age_years"} <= set(df.columns):
        df["postmenopausal"] = ((df["sex"] == "female") & df["menopause_age_years"].notna()).astype("boolean")
        df["years_since_menopause"] = (df["age_years"] - df["menopause_age_years"]).where(df["postmenopausal"])
    if "bmi" not in df.columns and {"weight_kg", "height_m"} <= set(df.columns):
        df["bmi"] = df["weight_kg"] / df["height_m"] ** 2
    return df





def data_dictionary(clinical: pd.DataFrame, spec: CohortSpec | None = None) -> pd.DataFrame:
    """Every column: meaning, type, unit, allowed values, missing count, model-input role."""
    spec = load_spec() if spec is None else spec
    kept = {k.name: ColumnSpec(k.meaning or f"kept from column {k.column!r}", role="excluded")
            for k in spec.keep.values()}
    rows = []
    for col in clinical.columns:
        meta = kept.get(col) or COLUMN_SPECS.get(col, ColumnSpec("(undocumented)", role="excluded"))
        if col == "t_score" and spec.t_score_method:
            meta = ColumnSpec(f"{spec.t_score_method} T-score: defines the diagnosis", "SD", role="target")
        if meta.role == "input" and col not in INPUT_FEATURES:
            meta = ColumnSpec(meta.meaning, meta.unit, role="excluded")
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
        rows.append({"column": col, "meaning": meta.meaning, "type": kind, "unit": meta.unit,
                     "values": allowed, "missing": int(s.isna().sum()), "role": meta.role,
                     "model_input": meta.role == "input"})
    return pd.DataFrame(rows)
