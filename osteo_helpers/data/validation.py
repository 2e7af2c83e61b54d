"""Every problem found in a cohort's raw data, as plain JSON-ready findings and as text: reported, never fixed.

`validate` gathers the findings in one dict; a new kind of finding is one more function called there
(and one more line in `format_findings`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..tabular import UNITS
from ..tasks import CLASSES_3, who_class_name
from .clinical import MENTION_COLUMN
from .linkage import (
    NEAR_DUPLICATE_RULE,
    closest_distinct_pairs,
    decode_and_hash_all,
    hash_pairs,
    image_record_conflicts,
    near_duplicate_images,
)
from .manifest import clinical_duplicate_groups, image_files
from .plausibility import PLAUSIBLE_RANGES, impossible_images, impossible_values
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
        for unit, factor in UNITS.get(name, {}).items():
            if unit == item.unit:
                continue
            other = values / item.factor * factor
            looks = outside & other.between(lo, hi)
            for pid, value in clinical.loc[looks, ["patient_id", name]].itertuples(index=False):
                out.append({"patient_id": pid, "column": item.column, "value": float(value / item.factor),
                            "unit": item.unit, "looks_like": unit})
    return out


def found_images(root: Path, clinical: pd.DataFrame, spec: CohortSpec) -> dict[str, Path]:
    """Every image the spec finds (a pattern also finds images without a row), by ID."""
    return image_files(root, clinical, spec)[1]


def validate(manifest: pd.DataFrame, clinical: pd.DataFrame, data_dir: Path | None = None,
             spec: CohortSpec | None = None) -> dict[str, object]:
    """Every problem found in the raw data, as plain JSON-ready values. Nothing is modified.

    Every image is decoded to its last byte (a few seconds for the real data): a truncated or
    corrupt file is listed under `unreadable_images`. ``spec`` None: the published dataset's.
    """
    from .cohort import cohort_root

    spec = load_spec() if spec is None else spec
    data_dir = cohort_root(spec, data_dir)
    images = found_images(data_dir, clinical, spec)
    decoded = decode_and_hash_all(images)  # every image decoded once: readable to the last byte, and its pHash
    unreadable = [{"patient_id": pid, "path": images[pid].relative_to(data_dir).as_posix(), "error": error}
                  for pid, (error, _) in decoded.items() if error is not None]
    ids = set(manifest["patient_id"])
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
    constant = [c for c in clinical.columns if clinical[c].nunique(dropna=True) <= 1]
    mentions = clinical[MENTION_COLUMN].fillna(False) if MENTION_COLUMN in clinical else clinical["patient_id"].isna()
    hashes = {pid: phash for pid, (_, phash) in decoded.items() if phash is not None}
    pairs = hash_pairs(hashes, manifest.set_index("patient_id")["image_sha256"].dropna().to_dict(), closest_above=4)
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
    conflicts = findings.get("image_record_conflicts", [])
    lines.append(f"identical images whose records disagree (a wrong image-to-record link): {len(conflicts)}")
    lines += [f"  {' = '.join(c['patients'])}: sex {'/'.join(c['sex'])}, age "
              f"{'/'.join(f'{a:g}' for a in c['age_years'])}, {'/'.join(c['diagnosis'])}" for c in conflicts]
    near = [p for p in findings.get("near_duplicate_images", []) if not p["identical_bytes"]]
    lines.append(f"near-duplicate images not byte-identical ({findings.get('near_duplicate_rule', 'pHash')}): "
                 f"{len(near)}" + (f"  {', '.join(' ~ '.join(p['patients']) for p in near)}" if near else ""))
    lines.append("acquisition batches: " + ", ".join(f"{k}: {v}" for k, v in findings["batches"].items()))
    return "\n".join(lines)
