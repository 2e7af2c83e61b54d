"""A cohort spec: the TOML file that says how one cohort's table and images become the project's cohort.

The spec names the table and its ID column, where the images are, the outcome (a T-score and/or a
class column), and each clinical input the models use, mapped from the cohort's column to the
canonical input (``tabular.INPUT_FEATURES``) with its unit and category values; free text becomes
inputs by ordered regular-expression rules. It is checked completely when it is read: a problem is
one line naming the file, the key and what is wrong (`SpecError`, exit status 2), before any work.
The keys, their types and allowed values are declared once, in `spec_schema` (also the JSON Schema
of `osteo cohort schema` and the book's reference page). The published dataset is one such spec,
shipped in ``osteo_helpers/cohorts/``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..tasks import CLASSES_3
from ..vocabulary import BOOLEAN_FEATURES, CATEGORICAL_FEATURES, CATEGORY_VALUES, INPUT_FEATURES, UNITS
from .spec_schema import (
    GENERIC_DERIVED,
    PATTERN_TOKENS,
    REQUIRED_INPUTS,
    ROLE_COLUMNS,
    T_SCORE_METHODS,
    TABLE_SUFFIXES,
    keys,
)

#: the spec of the published dataset, shipped as package data
PUBLISHED = "knee-osteoporosis-v2"
#: how a boolean column is read when the spec gives no values
YES_NO: dict[str, bool] = {"yes": True, "y": True, "true": True, "1": True,
                           "no": False, "n": False, "false": False, "0": False}


class SpecError(UsageError):
    """A cohort spec that cannot be used; one line naming the file and the key (exit status 2)."""


def normalise_text(value: object) -> str | None:
    """Free text as the rules see it: lower-case, runs of white space as one space, trimmed; None if empty."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = re.sub(r"\s+", " ", str(value)).strip().lower()
    return text or None


def normalise_header(name: object) -> str:
    """A column header as the spec and the table are compared: case, extra spaces and a trailing ':' ignored."""
    return (normalise_text(name) or "").rstrip(":").strip()


@dataclass(frozen=True)
class InputSpec:
    """How one canonical input is read from the cohort's table.

    Exactly one source: ``column`` (a number with ``unit``, a yes/no or category column with
    ``values``, free text with ordered ``rules`` and a ``default``, or a ``pattern`` that flags the
    text) or ``from_input`` (another canonical input mapped through ``values``).
    """

    name: str
    column: str | None = None
    unit: str | None = None
    factor: float = 1.0
    values: Mapping[str, Any] | None = None
    rules: tuple[tuple[str, Any], ...] = ()
    default: Any = None
    pattern: str | None = None
    when_missing: Any = None
    from_input: str | None = None

    @property
    def kind(self) -> str:
        if self.name in BOOLEAN_FEATURES:
            return "boolean"
        return "category" if self.name in CATEGORICAL_FEATURES else "number"


@dataclass(frozen=True)
class KeepSpec:
    """A column kept in the clinical table to describe the cohort; never a model input."""

    name: str
    column: str
    kind: str = "raw"  # raw (as entered) | text (normalised) | number
    values: Mapping[str, Any] | None = None
    meaning: str = ""


@dataclass(frozen=True)
class CohortSpec:
    """One cohort: its table, images, outcome and inputs (see the module docstring and book/methods.md)."""

    source: str  # the spec file, for messages
    name: str
    citation: str
    title: str = ""
    root: Path | None = None  # None: the folder the command line is given (--data-dir)
    table_file: str = ""
    sheet: str | int = 0
    id_column: str = ""
    roles: Mapping[str, str] = field(default_factory=dict)  # person/site/batch/knee_side/view -> column
    all_columns_named: bool = False
    skip_rows_without_id: bool = False
    image_column: str | None = None
    image_pattern: str | None = None
    batch_from_header: bool = False
    t_score: str | None = None
    t_score_method: str = ""
    z_score: str | None = None
    class_column: str | None = None
    class_values: Mapping[str, str] = field(default_factory=dict)
    mention_column: str | None = None
    mention_pattern: str | None = None
    inputs: Mapping[str, InputSpec] = field(default_factory=dict)
    keep: Mapping[str, KeepSpec] = field(default_factory=dict)

    @property
    def table_format(self) -> str:
        return TABLE_SUFFIXES[Path(self.table_file).suffix.lower()]

    def columns_used(self) -> list[str]:
        """Every table column the spec reads, in the spec's order (the same column may feed several inputs)."""
        cols = [self.id_column, *self.roles.values(), self.image_column, self.t_score, self.z_score,
                self.class_column, self.mention_column, *(i.column for i in self.inputs.values()),
                *(k.column for k in self.keep.values())]
        out: list[str] = []
        for c in cols:
            if c and c not in out:
                out.append(c)
        return out


# ----------------------------------------------------------------------------- reading a spec


class _Reader:
    """Walks the TOML tables, remembering which keys were read so that a typo is an error, not ignored."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, what: str) -> SpecError:
        return SpecError(f"cohort spec {self.source}: {key}: {what}")

    def table(self, doc: Mapping, key: str, required: bool = True) -> dict:
        value = doc.get(key.rsplit(".", 1)[-1])
        if value is None:
            if required:
                raise self.error(f"[{key}]", "missing")
            return {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return value

    def known(self, doc: Mapping, key: str, allowed: tuple[str, ...]) -> None:
        unknown = sorted(set(doc) - set(allowed))
        if unknown:
            where = f"[{key}] " if key else ""
            raise self.error(f"{where}{unknown[0]}", f"unknown key (known: {', '.join(allowed)})")

    def text(self, doc: Mapping, key: str, where: str, required: bool = False) -> str | None:
        value = doc.get(key)
        if value is None:
            if required:
                raise self.error(f"[{where}] {key}", "missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"[{where}] {key}", f"{value!r} is not a non-empty text")
        return value

    def flag(self, doc: Mapping, key: str, where: str) -> bool:
        value = doc.get(key, False)
        if not isinstance(value, bool):
            raise self.error(f"[{where}] {key}", f"{value!r} is not true or false")
        return value

    def regex(self, pattern: object, key: str) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise self.error(key, f"{pattern!r} is not a regular expression")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise self.error(key, f"{pattern!r} is not a valid regular expression ({exc})") from None
        return pattern


def _scalar_values(r: _Reader, values: object, key: str, kind: str, name: str) -> dict[str, Any]:
    """A values table: the cohort's spelling (compared as normalised text) -> the canonical value."""
    if not isinstance(values, dict) or not values:
        raise r.error(key, "must be a non-empty table of the cohort's value = the canonical value")
    out = {}
    for raw, value in values.items():
        _check_value(r, value, f"{key}.{raw}", kind, name)
        out[normalise_text(raw) or ""] = value
    return out


def _check_value(r: _Reader, value: object, key: str, kind: str, name: str) -> None:
    if kind == "boolean" and not isinstance(value, bool):
        raise r.error(key, f"{value!r} is not true or false")
    if kind == "category":
        allowed = CATEGORY_VALUES.get(name)
        if not isinstance(value, str) or (allowed is not None and value not in allowed):
            raise r.error(key, f"{value!r} is not one of {', '.join(allowed or ())}")
    if kind == "class" and value not in CLASSES_3:
        raise r.error(key, f"{value!r} is not one of {', '.join(CLASSES_3)}")


def _read_input(r: _Reader, name: str, doc: object, inputs: Mapping[str, object]) -> InputSpec:
    key = f"[inputs.{name}]"
    if name not in INPUT_FEATURES or name in GENERIC_DERIVED:
        if name in GENERIC_DERIVED:
            raise r.error(key, "is computed from sex, age and menopause age; it is not mapped")
        raise r.error(key, f"unknown input (the canonical inputs: {', '.join(INPUT_FEATURES)})")
    if isinstance(doc, str):
        doc = {"column": doc}
    if not isinstance(doc, dict):
        raise r.error(key, "must be a column name or a table")
    r.known(doc, f"inputs.{name}", keys("inputs.*"))
    spec = InputSpec(name)
    kind = spec.kind
    column, source = r.text(doc, "column", f"inputs.{name}"), doc.get("from_input")
    if (column is None) == (source is None):
        raise r.error(key, "give exactly one of column or from_input")
    fields: dict[str, Any] = {"column": column}
    if source is not None:
        order = list(inputs)
        if source not in inputs or order.index(source) >= order.index(name):
            raise r.error(f"{key} from_input", f"{source!r} is not an input given before {name} in this spec")
        if "values" not in doc:
            raise r.error(f"{key} values", "missing (from_input maps the other input's values)")
        fields["from_input"] = source
    if kind == "number":
        units = UNITS.get(name, {"": 1.0})
        unit = doc.get("unit", next(iter(units)))
        if unit not in units:
            raise r.error(f"{key} unit", f"{unit!r} is not one of {', '.join(units)}")
        fields.update(unit=unit, factor=units[unit])
        extra = sorted(set(doc) & {"values", "rules", "default", "pattern", "when_missing"})
        if extra:
            raise r.error(f"{key} {extra[0]}", "a number is read as a number (give its unit)")
    elif "unit" in doc:
        raise r.error(f"{key} unit", f"{name} is not a number")
    if "values" in doc:
        fields["values"] = _scalar_values(r, doc["values"], f"{key} values", kind, name)
    if "rules" in doc:
        rules = doc["rules"]
        if not isinstance(rules, list) or not rules:
            raise r.error(f"{key} rules", "must be a list of [regular expression, value] pairs, first match wins")
        checked = []
        for k, rule in enumerate(rules):
            if not isinstance(rule, list) or len(rule) != 2:
                raise r.error(f"{key} rules[{k}]", f"{rule!r} is not a [regular expression, value] pair")
            _check_value(r, rule[1], f"{key} rules[{k}]", kind, name)
            checked.append((r.regex(rule[0], f"{key} rules[{k}]"), rule[1]))
        fields["rules"] = tuple(checked)
        if "default" in doc:
            _check_value(r, doc["default"], f"{key} default", kind, name)
            fields["default"] = doc["default"]
    elif "default" in doc:
        raise r.error(f"{key} default", "only rules have a default")
    if "pattern" in doc:
        if kind != "boolean":
            raise r.error(f"{key} pattern", "a pattern flags text as true or false: only for yes/no inputs")
        fields["pattern"] = r.regex(doc["pattern"], f"{key} pattern")
        if "when_missing" in doc:
            _check_value(r, doc["when_missing"], f"{key} when_missing", "boolean", name)
            fields["when_missing"] = doc["when_missing"]
    elif "when_missing" in doc:
        raise r.error(f"{key} when_missing", "only a pattern has a value for missing text")
    ways = [w for w in ("values", "rules", "pattern") if w in doc]
    if len(ways) > 1:
        raise r.error(f"{key} {ways[1]}", f"give one of values, rules or pattern, not {' and '.join(ways)}")
    if kind == "category" and not ways:
        raise r.error(key, "a category needs values or rules mapping the cohort's spellings to "
                           f"{', '.join(CATEGORY_VALUES[name])}")
    return InputSpec(name, **fields)


def _read_keep(r: _Reader, name: str, doc: object) -> KeepSpec:
    key = f"[keep.{name}]"
    if isinstance(doc, str):
        doc = {"column": doc}
    if not isinstance(doc, dict):
        raise r.error(key, "must be a column name or a table")
    r.known(doc, f"keep.{name}", keys("keep.*"))
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in INPUT_FEATURES:
        raise r.error(key, "a kept column needs a snake_case name that is not a model input")
    kind = doc.get("kind", "raw")
    if kind not in ("raw", "text", "number"):
        raise r.error(f"{key} kind", f"{kind!r} is not one of raw, text, number")
    values = None
    if "values" in doc:
        values = {}
        if not isinstance(doc["values"], dict) or not doc["values"]:
            raise r.error(f"{key} values", "must be a non-empty table")
        for raw, value in doc["values"].items():
            if not isinstance(value, (str, bool)):
                raise r.error(f"{key} values.{raw}", f"{value!r} is not a text or true/false")
            values[normalise_text(raw) or ""] = value
    return KeepSpec(name, r.text(doc, "column", f"keep.{name}", required=True), kind, values,
                    r.text(doc, "meaning", f"keep.{name}") or "")


def _check_pattern(r: _Reader, pattern: str) -> str:
    tokens = re.findall(r"\{([^}]*)\}", pattern)
    unknown = [t for t in tokens if t not in PATTERN_TOKENS]
    if unknown:
        raise r.error("[images] pattern", f"unknown token {{{unknown[0]}}} (known: {{id}}, {{class_folder}})")
    if tokens.count("id") != 1:
        raise r.error("[images] pattern", f"{pattern!r} must hold {{id}} once (the table's ID)")
    if pattern.startswith("/") or ".." in Path(pattern).parts:
        raise r.error("[images] pattern", f"{pattern!r} must stay inside the cohort folder")
    return pattern


def parse_spec(doc: Mapping[str, Any], source: str, folder: Path | None) -> CohortSpec:
    """A checked CohortSpec from a parsed TOML document (`folder`: where relative paths start)."""
    r = _Reader(source)
    r.known(doc, "", keys(""))
    cohort, table, images = r.table(doc, "cohort"), r.table(doc, "table"), r.table(doc, "images")
    outcome, inputs_doc, keep_doc = r.table(doc, "outcome"), r.table(doc, "inputs"), r.table(doc, "keep", False)
    for section, values in (("cohort", cohort), ("table", table), ("images", images), ("outcome", outcome)):
        r.known(values, section, keys(section))
    name = r.text(cohort, "name", "cohort", required=True)
    root_text = r.text(cohort, "root", "cohort")
    root = None if root_text is None else (folder or Path.cwd()) / Path(root_text).expanduser()
    file = r.text(table, "file", "table", required=True)
    if Path(file).suffix.lower() not in TABLE_SUFFIXES:
        raise r.error("[table] file", f"{file!r}: the table must be {', '.join(sorted(TABLE_SUFFIXES))}")
    sheet = table.get("sheet", 0)
    if not isinstance(sheet, (str, int)) or isinstance(sheet, bool):
        raise r.error("[table] sheet", f"{sheet!r} is not a sheet name or number")
    if "sheet" in table and TABLE_SUFFIXES[Path(file).suffix.lower()] != "excel":
        raise r.error("[table] sheet", "only an Excel table has sheets")
    roles = {k: r.text(table, k, "table") for k in ROLE_COLUMNS if k in table}
    column, pattern = r.text(images, "column", "images"), r.text(images, "pattern", "images")
    if (column is None) == (pattern is None):
        raise r.error("[images]", "give exactly one of column (a column of relative paths) or pattern "
                                  "(such as \"{class_folder}/{id}.*\")")
    batch = images.get("batch")
    if batch not in (None, "header"):
        raise r.error("[images] batch", f"{batch!r}: only \"header\" (colour mode and size class of each image); "
                                        "a batch column is [table] batch")
    if batch == "header" and "batch" in roles:
        raise r.error("[images] batch", "the batch comes from [table] batch or from the image header, not both")
    t_score, klass = r.text(outcome, "t_score", "outcome"), r.text(outcome, "class", "outcome")
    if t_score is None and klass is None:
        raise r.error("[outcome]", "give t_score and/or class")
    method = r.text(outcome, "t_score_method", "outcome")
    if t_score is not None and method is None:
        raise r.error("[outcome] t_score_method",
                      f"missing: say how the T-score was measured ({', '.join(T_SCORE_METHODS)})")
    if method is not None and method not in T_SCORE_METHODS:
        raise r.error("[outcome] t_score_method", f"{method!r} is not one of {', '.join(T_SCORE_METHODS)}")
    class_values = {c: c for c in CLASSES_3}
    if "class_values" in outcome:
        if klass is None:
            raise r.error("[outcome] class_values", "given without a class column")
        class_values = _scalar_values(r, outcome["class_values"], "[outcome] class_values", "class", "class")
    mentioned = r.text(outcome, "mentioned_in", "outcome")
    mention_pattern = r.text(outcome, "mention_pattern", "outcome")
    if (mentioned is None) != (mention_pattern is None):
        raise r.error("[outcome] mention_pattern", "mentioned_in and mention_pattern go together")
    if mention_pattern is not None:
        r.regex(mention_pattern, "[outcome] mention_pattern")
    inputs = {n: _read_input(r, n, d, inputs_doc) for n, d in inputs_doc.items()}
    missing = [n for n in REQUIRED_INPUTS if n not in inputs]
    if missing:
        raise r.error(f"[inputs.{missing[0]}]", "missing (age and sex are required: the declared clinical "
                                                "model uses them)")
    return CohortSpec(
        source=source, name=name, citation=r.text(cohort, "citation", "cohort", required=True),
        title=r.text(cohort, "title", "cohort") or name, root=root, table_file=file, sheet=sheet,
        id_column=r.text(table, "id", "table", required=True), roles=roles,
        all_columns_named=r.flag(table, "all_columns_named", "table"),
        skip_rows_without_id=r.flag(table, "skip_rows_without_id", "table"),
        image_column=column, image_pattern=None if pattern is None else _check_pattern(r, pattern),
        batch_from_header=batch == "header", t_score=t_score, t_score_method=method or "",
        z_score=r.text(outcome, "z_score", "outcome"), class_column=klass, class_values=class_values,
        mention_column=mentioned, mention_pattern=mention_pattern, inputs=inputs,
        keep={n: _read_keep(r, n, d) for n, d in keep_doc.items()},
    )


def published_spec_path() -> Path:
    """The shipped spec of the published dataset (package data)."""
    return Path(str(resources.files("osteo_helpers") / "cohorts" / f"{PUBLISHED}.toml"))


def load_spec(path: str | Path | None = None) -> CohortSpec:
    """Read and check a cohort spec; None or the published dataset's name gives the shipped spec."""
    if path is None or str(path) == PUBLISHED:
        path = published_spec_path()
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"cohort spec {path}: no such file (a .toml cohort spec, or {PUBLISHED!r} for the "
                        "published dataset)")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"cohort spec {path}: not valid TOML ({exc})") from None
    return parse_spec(doc, str(path), path.resolve().parent)
