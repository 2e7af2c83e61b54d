"""Every problem found in a cohort's raw data, as plain JSON-ready findings and as text: reported, never fixed.

`validate` gathers the findings in one dict; a new kind of finding is one more function called there
(and one more line in `format_findings`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from ..tasks import CLASSES_3, who_class_name, why_not_estimable
from ..vocabulary import IMAGE_FILE, MENTION_COLUMN
from .linkage import (
    NEAR_DUPLICATE_RULE,
    closest_distinct_pairs,
    decode_and_hash_all,
    hash_pairs,
    image_record_conflicts,
    near_duplicate_images,
)
from .location import cohort_root
from .manifest import clinical_duplicate_groups, image_files, record_columns
from .plausibility import PLAUSIBLE_RANGES, impossible_images, impossible_values, plausible_in
from .problems import Problem, TableProblems, count_text, group_lines
from .spec import CohortSpec, load_spec

__all__ = ["PLAUSIBLE_RANGES", "format_findings", "implausible_values", "validate", "who_diagnosis"]


def who_diagnosis(t_score: float) -> str:
    """WHO class from a T-score, by the thresholds in `osteo_helpers.tasks`: the label the row should have."""
    return who_class_name(t_score)


def implausible_values(clinical: pd.DataFrame) -> list[dict[str, object]]:
    """Values outside the usual ranges (`plausibility.PLAUSIBLE_RANGES`) or inconsistent with each other:
    unusual, reported and kept (the impossible ones are `plausibility.impossible_values`)."""
    out: list[dict[str, object]] = []
    has = set(clinical.columns)
    for col, (lo, hi) in PLAUSIBLE_RANGES.items():
        if col not in has:
            continue
        outside = (clinical[col] < lo) | (clinical[col] > hi)
        for rec in clinical.loc[outside, ["patient_id", col]].itertuples(index=False):
            out.append({"patient_id": rec[0], "column": col, "value": float(rec[1]), "expected": f"{lo}..{hi}"})
    if {"weight_kg", "height_m", "bmi"} <= has:
        bad_bmi = (clinical["weight_kg"] / clinical["height_m"] ** 2 - clinical["bmi"]).abs() > 0.5
        for pid in clinical.loc[bad_bmi, "patient_id"]:
            out.append({"patient_id": pid, "column": "bmi", "value": None, "expected": "weight/height^2"})
    if {"menopause_age_years", "age_years"} <= has:
        late = clinical["menopause_age_years"] > clinical["age_years"]
        for pid in clinical.loc[late, "patient_id"]:
            out.append({"patient_id": pid, "column": "menopause_age_years", "value": None, "expected": "<= age"})
    if {"menopause_age_years", "sex"} <= has:
        male_meno = (clinical["sex"] == "male") & clinical["menopause_age_years"].notna()
        for pid in clinical.loc[male_meno, "patient_id"]:
            out.append({"patient_id": pid, "column": "menopause_age_years", "value": None,
                        "expected": "empty for men"})
    return out


def unit_problems(clinical: pd.DataFrame, spec: CohortSpec) -> list[dict[str, object]]:
    """Values implausible in the unit the spec declares but plausible in another unit of the same
    input (heights that look like centimetres in a metre column): the spec or the row has the wrong unit."""
    out: list[dict[str, object]] = []
    for name, item in spec.inputs.items():
        if item.kind != "number" or name not in PLAUSIBLE_RANGES or name not in clinical.columns:
            continue
        lo, hi = PLAUSIBLE_RANGES[name]
        values = clinical[name]
        outside = (values < lo) | (values > hi)
        for unit, plausible in plausible_in(name, values / item.factor, item.unit).items():
            looks = outside & plausible
            for pid, value in clinical.loc[looks, ["patient_id", name]].itertuples(index=False):
                out.append({"patient_id": pid, "column": item.column, "value": float(value / item.factor),
                            "unit": item.unit, "looks_like": unit})
    return out


def found_images(root: Path, clinical: pd.DataFrame, spec: CohortSpec) -> dict[str, Path]:
    """Every image the spec finds (a pattern also finds images without a row), by ID."""
    return image_files(root, clinical, spec)[1]


def image_paths(root: Path, spec: CohortSpec) -> str:
    """How the spec's image paths resolve, in words (printed where images are missing)."""
    folder = (f"the cohort folder {root} ([cohort] root of {spec.source})" if spec.root is not None else
              f"the cohort folder {root} (the spec names no [cohort] root: --data-dir, $OSTEO_DATA_DIR, data/raw "
              "or ../shared/data/knee-osteoporosis)")
    if spec.image_pattern is not None:
        return f"files matching {spec.image_pattern!r} under {folder}, {{id}} being the table's ID"
    return f"the paths in column {spec.image_column!r}, relative to {folder}"


def missing_images(manifest: pd.DataFrame, clinical: pd.DataFrame, root: Path, spec: CohortSpec
                   ) -> list[dict[str, object]]:
    """Every row without an image, with its table row and the file that was looked for (None: an empty cell)."""
    by_id = clinical.set_index("patient_id")
    out = []
    for pid in sorted(manifest.loc[~manifest["has_image"], "patient_id"]):
        if spec.image_pattern is not None:
            tried = f"{root}/{spec.image_pattern.replace('{id}', pid)}"
        else:
            rel = by_id.loc[pid, IMAGE_FILE]
            tried = str(root / rel) if isinstance(rel, str) else None
        out.append({"patient_id": pid, "row": int(by_id.loc[pid, "source_row"]), "tried": tried})
    return out


def fatal_problems(table_problems: list[dict[str, object]], unreadable: list[dict[str, object]],
                   images: int, clinical: pd.DataFrame, how: str) -> list[dict[str, object]]:
    """The problems that stop a run: the table's, the rows' images that cannot be decoded, no image at all, an
    outcome of one class (no normal, or no low-BMD patient: the question every arm answers cannot be asked)."""
    rows = clinical.set_index("patient_id")["source_row"]
    problems = list(table_problems)
    problems += [Problem("images", "cannot be decoded to the last byte", int(rows[u["patient_id"]]),
                         f"{u['path']}: {u['error']}", str(u["patient_id"])).to_dict()
                 for u in unreadable if u["patient_id"] in rows.index]
    if images == 0 and len(clinical):
        problems.append(Problem("images", f"none found for any of the {len(clinical)} rows: looked for {how}"
                                ).to_dict())
    diagnosis = clinical["diagnosis"].dropna()
    why = why_not_estimable("binary", pd.DataFrame({"label_binary": (diagnosis != "normal").astype(int)}))
    if len(diagnosis) and why is not None:
        problems.append(Problem("outcome", "normal against low BMD, the question every arm answers, is not "
                                f"estimable: {why}").to_dict())
    return problems


def _cohort_facts(spec: CohortSpec, root: Path) -> dict[str, object]:
    """What `format_findings` says about the cohort itself: its spec, folder and the columns it has."""
    return {"name": spec.name, "spec": spec.source, "root": str(root), "table": spec.table_file,
            "t_score": spec.t_score, "class": spec.class_column, "mentioned_in": spec.mention_column,
            "image_column": spec.image_column, "image_pattern": spec.image_pattern,
            "class_folders": spec.image_pattern is not None and "{class_folder}" in spec.image_pattern,
            "person": spec.roles.get("person"), "batches": _batch_source(spec)}


def _batch_source(spec: CohortSpec) -> str:
    """Where the manifest's ``batch`` comes from (`manifest.build_manifest`), in words."""
    if spec.batch_from_header or not ({"batch", "site"} & set(spec.roles)):
        return "acquisition batches (from the image headers: colour mode and size)"
    if "batch" in spec.roles:
        return f"acquisition batches (column {spec.roles['batch']!r})"
    return f"sites (column {spec.roles['site']!r})"


def validate(manifest: pd.DataFrame, clinical: pd.DataFrame, data_dir: Path | None = None,
             spec: CohortSpec | None = None) -> dict[str, object]:
    """Every problem found in the raw data, as plain JSON-ready values. Nothing is modified.

    Every image is decoded to its last byte (a few seconds for the real data): a truncated or
    corrupt file is listed under `unreadable_images`. ``clinical`` may be the table of `cohort
    check` (`load_clinical` with ``strict`` False): its rows with a problem are left out of every
    finding but ``fatal_problems``. ``spec`` None: the published dataset's.
    """
    spec = load_spec() if spec is None else spec
    data_dir = cohort_root(spec, data_dir)
    images = found_images(data_dir, clinical, spec)
    decoded = decode_and_hash_all(images)  # every image decoded once: readable to the last byte, and its pHash
    unreadable = [{"patient_id": pid, "path": images[pid].relative_to(data_dir).as_posix(), "error": error}
                  for pid, (error, _) in decoded.items() if error is not None]
    read = clinical.attrs.get("problems") or TableProblems(rows=len(clinical))
    table_problems = [p.to_dict() for p in read.problems]
    ids = set(manifest["patient_id"]) | {p["patient_id"] for p in table_problems}  # rows left out have their ID
    dup_groups = [sorted(g["patient_id"])
                  for _, g in manifest.dropna(subset=["duplicate_group"]).groupby("duplicate_group")]
    label_of = manifest.set_index("patient_id")["diagnosis"]
    cross = [g for g in dup_groups if label_of.loc[g].nunique() > 1]
    mismatch = [] if spec.t_score is None else [
        pid for pid, t, d in manifest[["patient_id", "t_score", "diagnosis"]].itertuples(index=False)
        if pd.isna(t) or who_diagnosis(t) != d]
    folders = manifest[["patient_id", "image_folder", "diagnosis"]].itertuples(index=False)
    folder_mismatch = [pid for pid, folder, d in folders
                       if isinstance(folder, str) and folder.lower() in CLASSES_3 and folder.lower() != d]
    absent = {"t_score"} if spec.t_score is None else set()  # made empty by the reader: not the cohort's column
    constant = [c for c in clinical.columns if c not in absent and clinical[c].nunique(dropna=True) <= 1]
    mentions = clinical[MENTION_COLUMN].fillna(False) if MENTION_COLUMN in clinical else clinical["patient_id"].isna()
    hashes = {pid: phash for pid, (_, phash) in decoded.items() if phash is not None}
    pairs = hash_pairs(hashes, manifest.set_index("patient_id")["image_sha256"].dropna().to_dict(), closest_above=4)
    person = clinical.set_index("patient_id")["person_id"] if "person_id" in clinical else None
    records = [g for g in clinical_duplicate_groups(clinical) if person is None or person.loc[g].nunique() > 1]
    how = image_paths(data_dir, spec)
    fatal = fatal_problems(table_problems, unreadable, len(images), clinical, how)
    rows = read.rows
    return {
        "patients": rows,
        "images": int(len(images)),
        "rows_without_image": sorted(manifest.loc[~manifest["has_image"], "patient_id"]),
        "images_without_row": sorted(set(images) - ids),
        "duplicate_groups": dup_groups,
        "cross_class_duplicate_groups": cross,
        "label_tscore_mismatches": sorted(mismatch),
        "duplicate_clinical_records": records,
        "unreadable_images": unreadable,
        "folder_label_mismatches": sorted(folder_mismatch),
        "implausible_values": implausible_values(clinical),
        "unit_problems": unit_problems(clinical, spec),
        "impossible_values": impossible_values(clinical),
        "impossible_images": impossible_images(manifest),
        "unparsed_free_text": [{**u, "value": str(u["value"])} for u in clinical.attrs.get("unparsed_free_text", [])],
        "outcome_mentioned_in_inputs": sorted(clinical.loc[mentions.astype(bool), "patient_id"]),
        "constant_columns": constant,
        "batches": {str(k): int(v) for k, v in manifest["batch"].value_counts().items()},
        "image_record_conflicts": image_record_conflicts(manifest, clinical),
        "near_duplicate_images": near_duplicate_images(pairs),
        "closest_distinct_image_pairs": closest_distinct_pairs(pairs),
        "near_duplicate_rule": NEAR_DUPLICATE_RULE,
        "rows": rows,
        "people": int(clinical["person_id"].nunique() if person is not None else len(clinical)),
        "image_formats": dict(sorted(Counter(p.suffix.lower() for p in images.values()).items())),
        "image_paths": how,
        "missing_images": missing_images(manifest, clinical, data_dir, spec),
        "record_columns": record_columns(clinical),
        "fatal_problems": fatal,
        "fatal_problem_lines": group_lines(fatal),
        "cohort": _cohort_facts(spec, data_dir),
    }


#: how many rows without an image the text names, with the file looked for
MISSING_SHOWN = 5


def _identical(formats: dict[str, int]) -> str:
    """What "duplicate image" means for these files: the same bytes, or for DICOM the same pixels."""
    dicom = {".dcm", ".dicom"} & set(formats)
    if not dicom:
        return "identical file bytes"
    return "identical pixels" if dicom == set(formats) else "identical file bytes, or for DICOM identical pixels"


def _record_words(columns: list[str]) -> str:
    """The clinical record compared, in words: only what this cohort has."""
    parts = ["every input"] + [name for col, name in (("t_score", "the T-score"), ("z_score", "the Z-score"))
                               if col in columns]
    return (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]) + " equal"


def _summary(findings: dict[str, object]) -> list[str]:
    """The cohort, its folder and table, people and images: what was read, before what is wrong."""
    facts = findings["cohort"]
    person = facts["person"]
    people = (f"people: {findings['people']} (column {person!r})" if person else
              f"people: {findings['people']} (one per row: the spec names no [table] person column)")
    formats = ", ".join(f"{k} {v}" for k, v in findings["image_formats"].items())
    rows = len({p["row"] for p in findings["fatal_problems"] if p["row"] is not None})
    return [f"cohort: {facts['name']} ({facts['spec']})", f"folder: {facts['root']}",
            f"table: {facts['table']}, {findings['rows']} rows" + (
                f" ({rows} with a problem that stops a run: left out of what follows)" if rows else ""), people,
            f"images: {findings['images']} found" + (f" ({formats})" if formats else "")
            + f", looked for as {findings['image_paths']}"]


def format_findings(findings: dict[str, object]) -> str:
    """The validation findings as text for a person: what was read, what stops a run, then every finding.
    Only what the cohort has is mentioned (no T-score line for a cohort without one)."""
    facts = findings["cohort"]
    lines = _summary(findings)
    fatal = findings["fatal_problems"]
    if fatal:
        lines.append(f"problems that stop run, ablation and train-final: {count_text(fatal)}")
        lines += [f"  {line}" for line in findings["fatal_problem_lines"]]
    missing = findings["missing_images"]
    lines.append(f"rows without image: {len(missing)}")
    lines += [f"  {m['patient_id']} (row {m['row']}): " + (f"looked for {m['tried']}" if m["tried"] else
                                                          f"no path in column {facts['image_column']!r}")
              for m in missing[:MISSING_SHOWN]]
    if len(missing) > MISSING_SHOWN:
        lines.append(f"  and {len(missing) - MISSING_SHOWN} more: "
                     + ", ".join(m["patient_id"] for m in missing[MISSING_SHOWN:]))
    keys = ["images_without_row"]
    keys += ["label_tscore_mismatches"] if facts["t_score"] and facts["class"] else []
    keys += ["folder_label_mismatches"] if facts["class_folders"] else []
    keys += ["outcome_mentioned_in_inputs"] if facts["mentioned_in"] else []
    for key in [*keys, "constant_columns"]:
        items = findings[key]
        lines.append(f"{key.replace('_', ' ')}: {len(items)}" + (f"  {', '.join(map(str, items))}" if items else ""))
    groups = findings["duplicate_groups"]
    lines.append(f"duplicate image groups ({_identical(findings['image_formats'])}): {len(groups)}, "
                 f"of which {len(findings['cross_class_duplicate_groups'])} span more than one class")
    lines += [f"  {' = '.join(g)}" + ("   <- crosses classes" if g in findings["cross_class_duplicate_groups"] else "")
              for g in groups]
    records = findings["duplicate_clinical_records"]
    lines.append(f"identical clinical records of different people ({_record_words(findings['record_columns'])}; "
                 f"one person entered twice?): {len(records)}")
    lines += [f"  {' = '.join(g)}" for g in records]
    unreadable = findings["unreadable_images"]
    lines.append(f"unreadable images (cannot be decoded to the last byte): {len(unreadable)}")
    lines += [f"  {u['patient_id']} ({u['path']}): {u['error']}" for u in unreadable]
    impossible = findings["impossible_values"] + findings["impossible_images"]
    lines.append(f"impossible values and images (outside the hard limits; not used for training): {len(impossible)}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']:g} (possible {v['possible']})"
              for v in findings["impossible_values"]]
    lines += [f"  {v['patient_id']} ({v['path']}): {v['problem']}" for v in findings["impossible_images"]]
    lines.append(f"implausible values (unusual, kept): {len(findings['implausible_values'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']} (expected {v['expected']})"
              for v in findings["implausible_values"]]
    lines.append(f"values that look like another unit: {len(findings['unit_problems'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']:g} {v['unit']} (looks like {v['looks_like']})"
              for v in findings["unit_problems"]]
    lines.append(f"free text not understood: {len(findings['unparsed_free_text'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']!r}" for v in findings["unparsed_free_text"]]
    conflicts = findings["image_record_conflicts"]
    lines.append(f"identical images whose records disagree (a wrong image-to-record link): {len(conflicts)}")
    lines += [f"  {' = '.join(c['patients'])}: sex {'/'.join(c['sex'])}, age "
              f"{'/'.join(f'{a:g}' for a in c['age_years'])}, {'/'.join(c['diagnosis'])}" for c in conflicts]
    near = [p for p in findings["near_duplicate_images"] if not p["identical_bytes"]]
    lines.append(f"near-duplicate images not in a duplicate group ({findings['near_duplicate_rule']}): "
                 f"{len(near)}" + (f"  {', '.join(' ~ '.join(p['patients']) for p in near)}" if near else ""))
    lines.append(f"{facts['batches']}: " + ", ".join(f"{k}: {v}" for k, v in findings["batches"].items()))
    return "\n".join(lines)
