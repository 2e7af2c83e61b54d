"""The cohort spec's schema (issue 28.7): one declaration that the reader, `osteo cohort schema` (JSON Schema,
draft 2020-12) and the book's reference page share, so that none of them can drift from the others."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from osteo_helpers.cli import main
from osteo_helpers.config import PROJECT_ROOT
from osteo_helpers.data import spec_schema
from osteo_helpers.data.spec import SpecError, parse_spec, published_spec_path

PAGE = PROJECT_ROOT / "book" / "cohort_spec.md"
REGENERATE = ".venv/bin/osteo cohort schema --markdown > book/cohort_spec.md"
VALIDATOR = Draft202012Validator(spec_schema.spec_schema())


def _readme_spec() -> dict[str, Any]:
    section = (PROJECT_ROOT / "README.md").read_text().split("## Bring your own cohort", 1)[1]
    return tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))


def _read(doc: dict[str, Any]) -> str | None:
    """The reader's refusal of a spec (None: it reads it)."""
    try:
        parse_spec(doc, "spec.toml", None)
    except SpecError as exc:
        return str(exc)
    return None


def _schema_errors(doc: dict[str, Any]) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(doc)]


def test_the_schema_is_a_draft_2020_12_schema_and_the_command_prints_it(capsys):
    Draft202012Validator.check_schema(spec_schema.spec_schema())
    assert main(["cohort", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == spec_schema.spec_schema()


def test_the_shipped_and_the_readme_spec_are_valid_and_an_unknown_key_is_not():
    shipped = tomllib.loads(published_spec_path().read_text())
    readme = _readme_spec()
    for doc in (shipped, readme):
        assert _schema_errors(doc) == [] and _read(doc) is None
    for where in ("", "table", "outcome"):  # an unknown key at the top, in a section, in an input's table
        doc = copy.deepcopy(readme)
        (doc[where] if where else doc)["colour"] = "x"
        assert _schema_errors(doc) and "unknown key" in _read(doc), where
    doc = copy.deepcopy(readme)
    doc["inputs"]["weight_kg"]["scale"] = 2
    assert _schema_errors(doc) and "[inputs.weight_kg] scale: unknown key" in _read(doc)


def _base() -> dict[str, Any]:
    """The smallest spec both accept: what each case below changes."""
    return {"cohort": {"name": "c", "citation": "tests"}, "table": {"file": "t.csv", "id": "ID"},
            "images": {"column": "File"}, "outcome": {"t_score": "T", "t_score_method": "DXA"},
            "inputs": {"age_years": "Age", "sex": {"column": "Sex", "values": {"F": "female", "M": "male"}}}}


def _with(**changes: dict[str, Any]) -> dict[str, Any]:
    doc = _base()
    for section, values in changes.items():
        doc.setdefault(section, {}).update(values)
        for key in [k for k, v in values.items() if v is None]:
            del doc[section][key]
    return doc


# (what, spec): each accepted, or refused, by the schema and by the reader alike
CASES = [
    ("every [cohort] key", True, _with(cohort={"title": "C", "root": "."})),
    ("every [table] key", True, _with(table={"file": "t.xlsx", "sheet": "patients", "person": "P", "site": "S",
                                             "batch": "B", "knee_side": "K", "view": "V", "all_columns_named": True,
                                             "skip_rows_without_id": True})),
    ("an images pattern and batch", True, _with(images={"column": None, "pattern": "{class_folder}/**/{id}.*",
                                                        "batch": "header"})),
    ("every [outcome] key", True, _with(outcome={"z_score": "Z", "class": "Dx", "class_values": {"OP": "osteopenia"},
                                                 "mentioned_in": "History", "mention_pattern": "osteop"})),
    ("a class only", True, _with(outcome={"t_score": None, "t_score_method": None, "class": "Dx"})),
    ("numbers with units", True, _with(inputs={"weight_kg": {"column": "W", "unit": "lb"},
                                               "height_m": {"column": "H", "unit": "cm"}})),
    ("yes/no by values, rules, pattern", True, _with(inputs={
        "smoker": {"column": "S", "values": {"Y": True, "N": False}},
        "diabetes": {"column": "D", "rules": [["type", True]], "default": False},
        "mh_hypertension": {"column": "H", "pattern": "hypert", "when_missing": False}})),
    ("categories and from_input", True, _with(inputs={
        "fracture_site": {"column": "F", "rules": [["hip", "hip"]], "default": "other"},
        "prior_fracture": {"from_input": "fracture_site", "values": {"none": False, "hip": True}}})),
    ("[keep] entries", True, _with(keep={"raw_site": "Site", "smoking": {"column": "S", "kind": "text",
                                                                         "values": {"y": True}, "meaning": "m"}})),
    ("an unknown section", False, _with(extra={"a": "b"})),
    ("no [outcome] column", False, _with(outcome={"t_score": None, "t_score_method": None})),
    ("a T-score without its method", False, _with(outcome={"t_score_method": None})),
    ("a method not accepted", False, _with(outcome={"t_score_method": "dexa"})),
    ("a column and a pattern", False, _with(images={"pattern": "{id}.png"})),
    ("no age", False, _with(inputs={"age_years": None})),
    ("an unknown input", False, _with(inputs={"shoe_size": "Shoe"})),
    ("a computed input", False, _with(inputs={"postmenopausal": "Meno"})),
    ("a unit of another input", False, _with(inputs={"weight_kg": {"column": "W", "unit": "cm"}})),
    ("a number with values", False, _with(inputs={"weight_kg": {"column": "W", "values": {"a": 1}}})),
    ("a category value not known", False, _with(inputs={"sex": {"column": "Sex", "values": {"X": "other"}}})),
    ("values and rules", False, _with(inputs={"smoker": {"column": "S", "values": {"Y": True},
                                                         "rules": [["y", True]]}})),
    ("a default without rules", False, _with(inputs={"smoker": {"column": "S", "values": {"Y": True},
                                                                "default": False}})),
    ("a sheet of a CSV table", False, _with(table={"sheet": "patients"})),
    ("a kept column named like an input", False, _with(keep={"smoker": "S"})),
    ("a kept column of an unknown kind", False, _with(keep={"s": {"column": "S", "kind": "date"}})),
    ("class values of no class", False, _with(outcome={"class": "Dx", "class_values": {"x": "broken"}})),
]


@pytest.mark.parametrize("what, accepted, doc", CASES, ids=[c[0] for c in CASES])
def test_the_schema_and_the_reader_accept_and_refuse_alike(what, accepted, doc):
    refusal, errors = _read(doc), _schema_errors(doc)
    assert (refusal is None) == accepted, refusal
    assert (errors == []) == accepted, errors


def test_every_key_the_reader_accepts_is_in_the_schema_and_every_schema_key_is_read():
    """The reader names the keys it knows when it meets an unknown one: they are the schema's, section by section;
    and every key of the schema is set by an accepted case above (so the reader reads it)."""
    sections = {"": ["colour"], "cohort": ["cohort", "colour"], "table": ["table", "colour"],
                "images": ["images", "colour"], "outcome": ["outcome", "colour"],
                "inputs.*": ["inputs", "smoker", "colour"], "keep.*": ["keep", "s", "colour"]}
    for section, path in sections.items():
        doc = _with(inputs={"smoker": {"column": "S"}}, keep={"s": {"column": "S"}})
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = "x"
        known = re.search(r"unknown key \(known: (.*)\)", _read(doc)).group(1).split(", ")
        assert known == list(spec_schema.keys(section)), section
    schema = spec_schema.spec_schema()["properties"]
    declared = {f"{s}.{k}" for s in ("cohort", "table", "images", "outcome") for k in schema[s]["properties"]}
    declared |= {f"inputs.*.{k}" for k in spec_schema.INPUT_KEYS} | {f"keep.*.{k}" for k in spec_schema.KEEP_KEYS}
    used = set()
    for _, accepted, doc in CASES:
        if accepted:
            for section, values in doc.items():
                for key, value in values.items():
                    entry = section in ("inputs", "keep") and isinstance(value, dict)
                    used |= {f"{section}.*.{k}" for k in value} if entry else {f"{section}.{key}"}
    assert declared - used == set()


def test_the_book_page_is_generated_from_the_schema():
    assert PAGE.read_text() == spec_schema.reference_markdown(), f"book/cohort_spec.md is stale; run: {REGENERATE}"
    toc = yaml.safe_load((PROJECT_ROOT / "_toc.yml").read_text())
    assert {"file": "book/cohort_spec"} in next(p for p in toc["parts"] if p["caption"] == "Background")["chapters"]
    page = PAGE.read_text()
    for key in ("knee_side", "view", "class_values", "mentioned_in", "rules", "when_missing", "person", "root",
                "`[keep]`", *spec_schema.T_SCORE_METHODS):
        assert key in page, key
