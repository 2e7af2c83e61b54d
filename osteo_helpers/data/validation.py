"""Every problem found in the raw data, as plain JSON-ready findings and as text: reported, never fixed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from ..config import resolve_data_dir
from ..tasks import CLASSES_3, who_class_name
from .layout import find_images
from .manifest import clinical_duplicate_groups
from .plausibility import PLAUSIBLE_RANGES, impossible_images, impossible_values, too_many_pixels

__all__ = ["PLAUSIBLE_RANGES", "format_findings", "image_error", "implausible_values", "validate", "who_diagnosis"]


def image_error(path: Path) -> str | None:
    """Why an image cannot be decoded to its last byte, or None. A truncated JPEG has a readable header;
    a header above the pixel limit (a decompression bomb) is reported without decoding."""
    try:
        with Image.open(path) as im:
            too_many = too_many_pixels(im.width, im.height)
            if too_many:
                return too_many
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def who_diagnosis(t_score: float) -> str:
    """WHO class from a T-score, by the thresholds in `osteo_helpers.tasks`: the label the row should have."""
    return who_class_name(t_score)


def implausible_values(clinical: pd.DataFrame) -> list[dict[str, object]]:
    """Values outside the usual ranges (`plausibility.PLAUSIBLE_RANGES`) or inconsistent with each other:
    unusual, reported and kept (the impossible ones are `plausibility.impossible_values`)."""
    out: list[dict[str, object]] = []
    for col, (lo, hi) in PLAUSIBLE_RANGES.items():
        outside = (clinical[col] < lo) | (clinical[col] > hi)
        for rec in clinical.loc[outside, ["patient_id", col]].itertuples(index=False):
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
    ordered = sorted(images.items())
    with ThreadPoolExecutor(max_workers=2) as pool:  # Pillow decodes without the GIL
        errors = list(pool.map(image_error, [path for _, path in ordered]))
    unreadable = [{"patient_id": pid, "path": path.relative_to(data_dir).as_posix(), "error": error}
                  for (pid, path), error in zip(ordered, errors, strict=True) if error is not None]
    ids = set(manifest["patient_id"])
    dup_groups = [sorted(g["patient_id"])
                  for _, g in manifest.dropna(subset=["duplicate_group"]).groupby("duplicate_group")]
    label_of = manifest.set_index("patient_id")["diagnosis"]
    cross = [g for g in dup_groups if label_of.loc[g].nunique() > 1]
    mismatch = [pid for pid, t, d in manifest[["patient_id", "t_score", "diagnosis"]].itertuples(index=False)
                if pd.isna(t) or who_diagnosis(t) != d]
    folders = manifest[["patient_id", "image_folder", "diagnosis"]].itertuples(index=False)
    folder_mismatch = [pid for pid, folder, d in folders
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
        "impossible_values": impossible_values(clinical),
        "impossible_images": impossible_images(manifest),
        "unparsed_free_text": [{"patient_id": r[0], "column": "fracture_history_raw", "value": r[1]}
                               for r in unparsed_fracture.itertuples(index=False)],
        "outcome_mentioned_in_inputs": sorted(
            clinical.loc[clinical["mh_mentions_bone_diagnosis"].fillna(False), "patient_id"]),
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
    impossible = findings["impossible_values"] + findings["impossible_images"]
    lines.append(f"impossible values and images (outside the hard limits; not used for training): {len(impossible)}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']:g} (possible {v['possible']})"
              for v in findings["impossible_values"]]
    lines += [f"  {v['patient_id']} ({v['path']}): {v['problem']}" for v in findings["impossible_images"]]
    lines.append(f"implausible values (unusual, kept): {len(findings['implausible_values'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']} (expected {v['expected']})"
              for v in findings["implausible_values"]]
    lines.append(f"free text not understood: {len(findings['unparsed_free_text'])}")
    lines += [f"  {v['patient_id']}: {v['column']} = {v['value']!r}" for v in findings["unparsed_free_text"]]
    lines.append("acquisition batches: " + ", ".join(f"{k}: {v}" for k, v in findings["batches"].items()))
    return "\n".join(lines)
