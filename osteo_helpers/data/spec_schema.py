"""The cohort spec's keys, declared once: each key's type, allowed values and what it means.

`spec.parse_spec` reads a spec with exactly these keys (an unknown one is an error), `osteo cohort
schema` prints them as a JSON Schema (draft 2020-12) that an editor checks a TOML file with (Even
Better TOML / taplo: ``#:schema ./cohort-spec.schema.json`` on the spec's first line), and the book's
reference page, book/cohort_spec.md, is this module's `reference_markdown` (a test keeps the page
equal to it). The reader checks more than a schema can say (that a regular expression compiles, that
``from_input`` names an input given before); the schema never accepts a key the reader refuses.
"""

from __future__ import annotations

from typing import Any

from ..tasks import CLASSES_3
from ..vocabulary import BOOLEAN_FEATURES, CATEGORICAL_FEATURES, CATEGORY_VALUES, INPUT_FEATURES, UNITS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: the table formats a spec may name, by file suffix
TABLE_SUFFIXES = {".csv": "csv", ".xlsx": "excel", ".xls": "excel", ".parquet": "parquet", ".pq": "parquet"}
#: inputs computed from others in code, never mapped by a spec
GENERIC_DERIVED = ("postmenopausal", "years_since_menopause")
#: inputs every cohort must give: the declared clinical model uses them
REQUIRED_INPUTS = ("age_years", "sex")
#: optional columns with a role in the manifest (one person's rows, sites, knees, views)
ROLE_COLUMNS = ("person", "site", "batch", "knee_side", "view")
#: what the folder pattern's tokens match
PATTERN_TOKENS = ("id", "class_folder")
#: how a T-score may have been measured (the WHO thresholds are defined on DXA)
T_SCORE_METHODS = {"DXA": "dual-energy X-ray absorptiometry, the reference standard",
                   "QUS": "quantitative ultrasound", "QCT": "quantitative computed tomography",
                   "REMS": "radiofrequency echographic multi-spectrometry"}
#: how a kept column is stored
KEEP_KINDS = {"raw": "as entered", "text": "normalised text (lower case, runs of spaces as one)", "number": "a number"}
#: the inputs a spec maps (the others are computed)
MAPPED_INPUTS = tuple(name for name in INPUT_FEATURES if name not in GENERIC_DERIVED)
SNAKE_CASE = "^[a-z][a-z0-9_]*$"

TEXT: dict[str, Any] = {"type": "string", "minLength": 1}
FLAG: dict[str, Any] = {"type": "boolean"}
REGEX: dict[str, Any] = {"type": "string", "minLength": 1, "format": "regex"}


def _key(kind: dict[str, Any], description: str, **more: Any) -> dict[str, Any]:
    return {**kind, "description": description, **more}


def _section(description: str, keys: dict[str, dict[str, Any]], required: tuple[str, ...] = (),
             **more: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": keys, "required": list(required),
            "additionalProperties": False, **more}


#: the spec, section by section: [cohort], [table], [images], [outcome] (then [inputs] and [keep] below)
COHORT = _section(
    "The cohort's name, citation and folder.",
    {"name": _key(TEXT, "The cohort's short name: it names the cohort in messages, run records and the report.",
                  examples=["city-hospital-2026"]),
     "title": _key(TEXT, "A longer title for the report (default: the name).",
                   examples=["City Hospital knee cohort, 2019-2025"]),
     "citation": _key(TEXT, "How to cite the data: the report prints it.",
                      examples=["City Hospital knee DXA cohort, 2019-2025 (internal)"]),
     "root": _key(TEXT, "The cohort's folder, relative to this spec file (or absolute): the table and every image "
                        "path are relative to it. Without it the folder is the one the command line is given "
                        "(`--data-dir`, then `$OSTEO_DATA_DIR`, `data/raw`, `../shared/data/knee-osteoporosis`).",
                  examples=["."])},
    ("name", "citation"))
TABLE = _section(
    "The table of the cohort: one row per image, its ID, and the columns that say whose image it is.",
    {"file": _key(TEXT, "The table's file in the cohort folder: CSV, Excel (.xlsx, .xls) or Parquet.",
                  pattern="\\.(csv|CSV|xlsx|XLSX|xls|XLS|parquet|PARQUET|pq|PQ)$", examples=["export.csv"]),
     "sheet": _key({"type": ["string", "integer"]}, "The Excel sheet, by name or number (default 0, the first); "
                   "only for an Excel table.", examples=["patients"]),
     "id": _key(TEXT, "The column that identifies each row (one row per image): every message, table and "
                      "prediction names the row by it, and an image `pattern`'s `{id}` is its value. IDs are "
                      "unique.", examples=["AccessionNumber"]),
     "person": _key(TEXT, "The column of the person each row belongs to (both knees, repeat visits): a person's "
                          "rows stay together in every fold and bootstrap sample and get one score (the mean of "
                          "their images' logits). Without it each row is a person; rows with identical images or "
                          "clinical records are joined all the same.", examples=["MRN"]),
     "site": _key(TEXT, "The column of the site (hospital, scanner) of each row: validation is reported per site.",
                  examples=["Hospital"]),
     "batch": _key(TEXT, "The column of the acquisition batch (default: the site, else the image headers).",
                   examples=["Batch"]),
     "knee_side": _key(TEXT, "The column saying which knee the image shows: kept to describe the cohort, never a "
                             "model input.", examples=["Laterality"]),
     "view": _key(TEXT, "The column of the radiographic view: kept to describe the cohort, never a model input.",
                  examples=["ViewPosition"]),
     "all_columns_named": _key(FLAG, "true: every column of the table must be named in this spec, so that a "
                                     "column added to or renamed in a new export is an error (default false).",
                               examples=[True]),
     "skip_rows_without_id": _key(FLAG, "true: rows without an ID (totals or notes under the table) are skipped; "
                                        "false (default): a row without an ID is a problem.", examples=[True])},
    ("file", "id"), dependentSchemas={"sheet": {"properties": {"file": {"pattern": "\\.(xlsx|XLSX|xls|XLS)$"}}}})
IMAGES = _section(
    "Where each row's image is: a column of paths or a folder pattern (exactly one), both relative to the cohort "
    "folder (`[cohort] root`). JPEG, PNG, TIFF, BMP and DICOM are read.",
    {"column": _key(TEXT, "The column of each row's image path, relative to the cohort folder; a path that leaves "
                          "the folder is a problem, an empty cell or a file that is not there a row without an "
                          "image.", examples=["DicomPath"]),
     "pattern": _key(TEXT, "The images by name, relative to the cohort folder: `{id}` is the row's ID, "
                           "`{class_folder}` a folder named normal, osteopenia or osteoporosis, `**/` any depth, "
                           "`*` any characters within a name (`.*`: any extension, in any case).",
                     examples=["{class_folder}/**/{id}.*", "images/{id}.dcm"]),
     "batch": _key({"enum": ["header"]}, "\"header\": each image's acquisition batch is its colour mode and size "
                                         "class (not with `[table] batch`).", examples=["header"])},
    oneOf=[{"required": ["column"]}, {"required": ["pattern"]}])
OUTCOME = _section(
    "The outcome: a T-score and/or a class column. The WHO classes follow from a T-score (normal T >= -1, "
    "osteoporosis T <= -2.5, osteopenia between); a row without its outcome is a problem.",
    {"t_score": _key(TEXT, "The column of the T-score.", examples=["TScoreHip"]),
     "t_score_method": _key({"enum": list(T_SCORE_METHODS)}, "How the T-score was measured (required with a "
                            "T-score): " + "; ".join(f"{k}, {v}" for k, v in T_SCORE_METHODS.items()) + ".",
                            examples=["DXA"]),
     "z_score": _key(TEXT, "The column of the Z-score: kept with the outcome, never an input.", examples=["ZScore"]),
     "class": _key(TEXT, "The column of the diagnosis (normal, osteopenia or osteoporosis, spelled as "
                         "`class_values` says); with a T-score as well, a class that disagrees with it is a finding.",
                   examples=["Diagnosis"]),
     "class_values": _key({"type": "object", "minProperties": 1,
                           "additionalProperties": {"enum": list(CLASSES_3)}},
                          "The table's spellings of each class, compared ignoring case and extra spaces, mapped to "
                          "normal, osteopenia or osteoporosis (default: the class names themselves).",
                          examples=[{"Normal": "normal", "Osteopenia": "osteopenia", "OP": "osteoporosis"}]),
     "mentioned_in": _key(TEXT, "A free-text column that may name the outcome itself (a medical history saying "
                                "\"osteopenia\"): such rows are flagged, the text is never an input.",
                          examples=["Medical History"]),
     "mention_pattern": _key(REGEX, "The regular expression that finds the outcome in `mentioned_in` (searched in "
                                    "the lower-case text).", examples=["osteop"])},
    anyOf=[{"required": ["t_score"]}, {"required": ["class"]}],
    dependentRequired={"t_score": ["t_score_method"], "class_values": ["class"],
                       "mentioned_in": ["mention_pattern"], "mention_pattern": ["mentioned_in"]})

#: the keys of one [inputs] entry (the reader accepts each where its input's kind allows it)
INPUT_KEYS: dict[str, dict[str, Any]] = {
    "column": _key(TEXT, "The table's column (compared ignoring case, extra spaces and a trailing ':').",
                   examples=["AgeAtScan"]),
    "unit": _key(TEXT, "The column's unit (numbers only; default: the first listed for the input): values are "
                       "converted to the input's canonical unit.", examples=["lb"]),
    "values": _key({"type": "object", "minProperties": 1}, "The table's spellings mapped to the input's values "
                   "(yes/no and category inputs; compared as lower-case text): a spelling not listed is a problem.",
                   examples=[{"Y": True, "N": False}]),
    "rules": _key({"type": "array", "minItems": 1,
                   "items": {"type": "array", "prefixItems": [REGEX, {}], "minItems": 2, "maxItems": 2}},
                  "Ordered [regular expression, value] pairs for free text: the first expression found in the "
                  "lower-case text gives the value.", examples=[[["farmer|labour", "manual"]]]),
    "default": _key({}, "With rules: the value of text that no rule matches (without it such text is missing and "
                        "reported).", examples=["other"]),
    "pattern": _key(REGEX, "Yes/no inputs: true where the lower-case text matches this regular expression, false "
                           "where it does not.", examples=["hypert"]),
    "when_missing": _key(FLAG, "With a pattern: the value of an empty cell (default: missing).", examples=[False]),
    "from_input": _key({"enum": list(MAPPED_INPUTS)}, "Another input given earlier in this spec, mapped through "
                       "`values` instead of a column.", examples=["fracture_site"]),
}
#: the keys of one [keep] entry
KEEP_KEYS: dict[str, dict[str, Any]] = {
    "column": _key(TEXT, "The table's column.", examples=["Occupation"]),
    "kind": _key({"enum": list(KEEP_KINDS)}, "How it is kept: " + "; ".join(f"{k}, {v}" for k, v in KEEP_KINDS.items())
                 + " (default raw).", examples=["text"]),
    "values": _key({"type": "object", "minProperties": 1, "additionalProperties": {"type": ["string", "boolean"]}},
                   "The table's spellings mapped to a text or true/false.", examples=[{"yes": True, "no": False}]),
    "meaning": _key(TEXT, "What the column means, for the data dictionary.", examples=["occupation as entered"]),
}


def input_kind(name: str) -> str:
    """number, yes/no or category: what an input's values are, and so which entry keys it takes."""
    return "yes/no" if name in BOOLEAN_FEATURES else "category" if name in CATEGORICAL_FEATURES else "number"


def _pick(keys: dict[str, dict[str, Any]], names: tuple[str, ...], **changed: dict[str, Any]) -> dict[str, Any]:
    return {n: {**keys[n], **changed.get(n, {})} for n in names}


def _input_entry(name: str) -> dict[str, Any]:
    """The schema of one input's entry: a column name, or a table whose keys its kind allows."""
    kind = input_kind(name)
    if kind == "number":
        units = list(UNITS.get(name, {}))
        keys = _pick(INPUT_KEYS, ("column", "unit"), unit={"enum": units} if units else {"enum": [""]})
        table: dict[str, Any] = {"required": ["column"]}
    else:
        value = {"type": "boolean"} if kind == "yes/no" else {"enum": list(CATEGORY_VALUES[name])}
        names = ("column", "values", "rules", "default", "pattern", "when_missing", "from_input")
        if kind == "category":
            names = ("column", "values", "rules", "default", "from_input")
        keys = _pick(INPUT_KEYS, names, values={"additionalProperties": value}, default=value,
                     rules={"items": {**INPUT_KEYS["rules"]["items"], "prefixItems": [REGEX, value]}})
        table = {"oneOf": [{"required": ["column"]}, {"required": ["from_input"]}],
                 "dependentRequired": {"default": ["rules"], "when_missing": ["pattern"], "from_input": ["values"]},
                 "not": {"anyOf": [{"required": list(pair)} for pair in (("values", "rules"), ("values", "pattern"),
                                                                         ("rules", "pattern"))]}}
        if kind == "category":
            table["anyOf"] = [{"required": ["values"]}, {"required": ["rules"]}]
    return {"description": f"{name}: {describe_input(name)}",
            "oneOf": [{**TEXT, "description": "The table's column: the same as { column = \"...\" }."},
                      {"type": "object", "properties": keys, "additionalProperties": False, **table}]}


def describe_input(name: str) -> str:
    """What an input accepts, in words (units or values)."""
    kind = input_kind(name)
    if kind == "number":
        units = list(UNITS.get(name, ()))
        return "a number" + (f", in {', '.join(units[:-1])} or {units[-1]}" if len(units) > 1 else
                             f", in {units[0]}" if units else "")
    if kind == "yes/no":
        return "yes or no (true/false)"
    return "one of " + ", ".join(CATEGORY_VALUES[name])


INPUTS = _section(
    "The clinical inputs, by the project's names: each maps the cohort's column (with its unit, or its spellings) "
    "to the canonical input. Age and sex are required (the declared clinical model uses them); the arms use "
    "the inputs a cohort has; BMI is computed from weight and height when the cohort has none. An entry is a "
    "column name, or a table of the keys below.",
    {name: _input_entry(name) for name in MAPPED_INPUTS}, REQUIRED_INPUTS)
KEEP = {"type": "object", "description": "Columns kept in the clinical table to describe the cohort, never model "
        "inputs, each under a snake_case name that is not an input's: a column name, or a table of the keys below.",
        "propertyNames": {"pattern": SNAKE_CASE, "not": {"enum": list(INPUT_FEATURES)}},
        "additionalProperties": {"oneOf": [TEXT, {"type": "object", "properties": KEEP_KEYS, "required": ["column"],
                                                  "additionalProperties": False}]}}
SECTIONS: dict[str, dict[str, Any]] = {"cohort": COHORT, "table": TABLE, "images": IMAGES, "outcome": OUTCOME,
                                       "inputs": INPUTS, "keep": KEEP}
REQUIRED_SECTIONS = ("cohort", "table", "images", "outcome", "inputs")


def keys(section: str) -> tuple[str, ...]:
    """The keys a section of the spec may hold ("": the sections themselves; "inputs.*", "keep.*": one entry)."""
    if section == "":
        return tuple(SECTIONS)
    if section == "inputs.*":
        return tuple(INPUT_KEYS)
    if section == "keep.*":
        return tuple(KEEP_KEYS)
    return tuple(SECTIONS[section]["properties"])


def spec_schema() -> dict[str, Any]:
    """The cohort spec as a JSON Schema (draft 2020-12), for editors and scripts."""
    return {"$schema": DRAFT, "title": "osteo cohort spec",
            "description": "A cohort for osteo (`osteo cohort check SPEC`, `--cohort SPEC`): where its table and "
                           "images are, its outcome and its clinical inputs.",
            "type": "object", "properties": SECTIONS, "required": list(REQUIRED_SECTIONS),
            "additionalProperties": False}


# ----------------------------------------------------------------------------- the book's reference page

PAGE_INTRO = """\
A cohort spec is a small TOML file that says where a cohort's table and images are, what its outcome
is and which columns are its clinical inputs; `osteo cohort check SPEC` reads it with the table and
images and lists every problem, and `--cohort SPEC` runs any command on the cohort. The published
dataset is one such spec (`osteo_helpers/cohorts/knee-osteoporosis-v2.toml`); the README shows one for
a hospital export.

**How paths resolve.** The cohort folder is `[cohort] root`, relative to the spec file; without it,
the folder the command line finds. The table (`[table] file`) and every image path (`[images]
column`, or the files a `[images] pattern` matches) are relative to that folder. `[table] id` names
each row (one row per image); `[table] person` says which rows are one person.

**Checking a spec in an editor.** `osteo cohort schema > cohort-spec.schema.json` writes these keys as
a JSON Schema (draft 2020-12); with `#:schema ./cohort-spec.schema.json` as the spec's first line,
Even Better TOML (taplo) checks every key as you type.

This page is generated from `osteo_helpers/data/spec_schema.py` (`osteo cohort schema --markdown`),
the declaration the spec reader uses: edit that file, not this page."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _accepts(schema: dict[str, Any]) -> str:
    """A key's values, in words, for the page."""
    if schema.get("enum") == list(MAPPED_INPUTS):
        return "an input's name"
    if "enum" in schema:
        return ", ".join(f"`{v}`" for v in schema["enum"])
    kinds = schema.get("type", "any")
    words = {"string": "text", "boolean": "true or false", "integer": "a whole number", "object": "a table",
             "array": "a list", "any": "a value"}
    text = " or ".join(words[k] for k in ([kinds] if isinstance(kinds, str) else kinds))
    return text + (" (a regular expression)" if schema.get("format") == "regex" else "")


def _key_table(keys: dict[str, dict[str, Any]], required: tuple[str, ...] | list[str] = ()) -> list[str]:
    lines = ["| key | value | meaning |", "| --- | --- | --- |"]
    for name, schema in keys.items():
        mark = " (required)" if name in required else ""
        lines.append(f"| `{name}`{mark} | {_cell(_accepts(schema))} | {_cell(schema['description'])} |")
    return lines


def reference_markdown() -> str:
    """The book's page book/cohort_spec.md: every key of the spec, from the declaration above."""
    lines = ["# Cohort spec reference", "", PAGE_INTRO, ""]
    for name in ("cohort", "table", "images", "outcome"):
        section = SECTIONS[name]
        lines += [f"## `[{name}]`" + (" (required)" if name in REQUIRED_SECTIONS else ""), "",
                  section["description"], "", *_key_table(section["properties"], section["required"]), ""]
    lines += ["## `[inputs]` (required)", "", INPUTS["description"], "", "| input | accepts | entry keys |",
              "| --- | --- | --- |"]
    for name in MAPPED_INPUTS:
        entry = _input_entry(name)["oneOf"][1]["properties"]
        mark = " (required)" if name in REQUIRED_INPUTS else ""
        lines.append(f"| `{name}`{mark} | {_cell(describe_input(name))} | {', '.join(f'`{k}`' for k in entry)} |")
    lines += ["", "The keys of an input's table (which ones an input takes follows from what it accepts):", "",
              *_key_table(INPUT_KEYS), "", "## `[keep]`", "", KEEP["description"], "",
              *_key_table(KEEP_KEYS, ["column"]), ""]
    return "\n".join(lines)
