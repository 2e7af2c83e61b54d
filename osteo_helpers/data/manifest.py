"""The manifest: one row per table row with label, image file, checksum, acquisition batch and pixel spacing.

Also the split groups: rows of one person (the spec's person column, byte-identical images or
identical clinical records) share a ``split_group`` so that no person is ever on both sides of a split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..fileio import read_csv, sha256_file
from ..tasks import CLASSES_3
from ..vocabulary import IMAGE_FILE, INPUT_FEATURES
from .clinical import load_clinical
from .errors import ImageReadError
from .image_readers import image_header, image_sha256
from .layout import check_layout, locate_images
from .location import cohort_root
from .spec import CohortSpec, load_spec


def image_batch(mode: str, width: int, height: int) -> str:
    """Acquisition batch from file attributes: colour mode and size class differ per source."""
    long_side = max(width, height)
    colour = "gray" if mode in {"L", "I;16", "I", "F"} else "rgb"
    size = "1k" if long_side < 1500 else "2k+"
    return f"{colour}-{size}"


#: the manifest's columns before the derived ones (has_image, duplicate_group, split_group, age_years, sex)
MANIFEST_COLUMNS = ("patient_id", "person_id", "diagnosis", "label_3class", "label_binary", "t_score", "image_path",
                    "image_sha256", "width", "height", "mode", "image_folder", "batch", "pixel_spacing_row_mm",
                    "pixel_spacing_col_mm")
#: One person entered twice has the same clinical record: every cleaned model input, T- and Z-score.
CLINICAL_RECORD_COLUMNS: tuple[str, ...] = INPUT_FEATURES + ("t_score", "z_score")


def record_columns(clinical: pd.DataFrame) -> list[str]:
    """The columns of `CLINICAL_RECORD_COLUMNS` this cohort has (with at least one value): what
    "identical clinical records" compares."""
    return [c for c in CLINICAL_RECORD_COLUMNS if c in clinical.columns and clinical[c].notna().any()]


def _record_ids(clinical: pd.DataFrame) -> pd.Series:
    """Patient ID -> an id shared by identical clinical records (NaN equals NaN), over the record's
    columns the cohort has."""
    columns = record_columns(clinical)
    if not columns:  # an empty table
        return pd.Series(np.arange(len(clinical)), index=clinical["patient_id"].to_numpy())
    codes = clinical.groupby(columns, dropna=False, sort=False).ngroup()
    return pd.Series(codes.to_numpy(), index=clinical["patient_id"].to_numpy())


def clinical_duplicate_groups(clinical: pd.DataFrame) -> list[list[str]]:
    """Patients whose clinical records are identical (only free-text spelling may differ), sorted."""
    ids = _record_ids(clinical)
    groups = ids.index.to_series().groupby(ids.to_numpy()).agg(sorted)
    return sorted(g for g in groups if len(g) > 1)


def person_groups(manifest: pd.DataFrame, clinical: pd.DataFrame) -> pd.Series:
    """The split group of every manifest row: one person, one group.

    Connected components over "same person ID", "byte-identical image" or "identical clinical
    record", so chains join (A = B by image, B = C by record puts A, B and C together) and no person
    is ever on both sides of a split. A patient alone keeps its ID; a group is named by its members.
    """
    n = len(manifest)
    rows = np.arange(n)
    keys = (manifest["image_sha256"].to_numpy(), _record_ids(clinical).reindex(manifest["patient_id"]).to_numpy(),
            manifest.get("person_id", manifest["patient_id"]).to_numpy())
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


def image_files(root: Path, clinical: pd.DataFrame, spec: CohortSpec) -> tuple[dict[str, Path], dict[str, Path]]:
    """(ID -> image of each row that has one, every image the spec finds): a folder pattern finds files
    without a row too; a column of paths finds only the rows' (a path that is not there is no image).
    Both are relative to the cohort folder ``root``."""
    root = Path(root)
    if spec.image_pattern is not None:
        found = locate_images(root, spec.image_pattern)
        return {pid: found[pid] for pid in clinical["patient_id"] if pid in found}, found
    rows = {}
    for pid, rel in zip(clinical["patient_id"], clinical[IMAGE_FILE], strict=True):
        if isinstance(rel, str) and (root / rel).is_file():  # load_clinical let only paths inside root through
            rows[pid] = root / rel
    return rows, dict(rows)


def build_manifest(data_dir: Path | None = None, clinical: pd.DataFrame | None = None,
                   strict: bool = True, spec: CohortSpec | None = None) -> pd.DataFrame:
    """One row per table row: labels, T-score, image path (relative), checksum, size, mode, batch,
    pixel spacing (mm; NaN where the file does not say) and the person.

    ``spec`` None: the published dataset's; ``data_dir`` None: the spec's root or the documented
    search (`data.location.resolve_data_dir`). Rows without an image keep their row (image_path empty);
    images without a row are reported by `validate`, not added, because they have no label.
    `split_group` joins one person's rows (`person_groups`). An image whose header cannot be read
    raises ImageReadError, unless strict=False (`data check`), which keeps the row without size and
    mode so that `validate` reports it with every other problem.
    """
    spec = load_spec() if spec is None else spec
    data_dir = cohort_root(spec, data_dir)
    clinical = load_clinical(data_dir / spec.table_file, spec) if clinical is None else clinical
    images, found = image_files(data_dir, clinical, spec)
    check_layout(data_dir, found, spec)
    header_batch = spec.batch_from_header or not ({"batch", "site"} & set(clinical.columns))
    rows = []
    for rec in clinical.to_dict("records"):
        pid = rec["patient_id"]
        path = images.get(pid)
        row = {"patient_id": pid, "person_id": rec.get("person_id") or pid, "diagnosis": rec["diagnosis"],
               "label_3class": CLASSES_3.index(rec["diagnosis"]), "label_binary": int(rec["diagnosis"] != "normal"),
               "t_score": rec["t_score"], "image_path": None, "image_sha256": None, "width": np.nan,
               "height": np.nan, "mode": None, "image_folder": None,
               "batch": None if header_batch else rec.get("batch", rec.get("site")),
               "pixel_spacing_row_mm": np.nan, "pixel_spacing_col_mm": np.nan}
        if path is not None:
            row.update(image_path=path.relative_to(data_dir).as_posix(), image_folder=path.parent.name)
            try:
                row["image_sha256"] = image_sha256(path)
                header = image_header(path)
            except ImageReadError:
                if strict:
                    raise
                if row["image_sha256"] is None:
                    row["image_sha256"] = sha256_file(path)
            else:
                row.update(width=header["width"], height=header["height"], mode=header["mode"],
                           pixel_spacing_row_mm=header["pixel_spacing_row_mm"],
                           pixel_spacing_col_mm=header["pixel_spacing_col_mm"])
                if header_batch:
                    row["batch"] = image_batch(str(header["mode"]), int(header["width"]), int(header["height"]))
        rows.append(row)
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    manifest["has_image"] = manifest["image_path"].notna()
    sha = manifest["image_sha256"]
    group_ids = {h: f"dup{i:02d}" for i, h in enumerate(sorted(sha[sha.duplicated(keep=False) & sha.notna()].unique()))}
    manifest["duplicate_group"] = sha.map(group_ids)
    manifest["split_group"] = person_groups(manifest, clinical)
    by_id = clinical.set_index("patient_id")
    manifest["age_years"] = by_id.loc[manifest["patient_id"], "age_years"].to_numpy()
    manifest["sex"] = by_id.loc[manifest["patient_id"], "sex"].to_numpy()
    return manifest


def load_manifest(path: Path) -> pd.DataFrame:
    """Read a saved manifest, with the error a user needs when notebook 01 has not run."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no manifest; run notebooks/01_eda_manifest.ipynb "
                                "(or `python -m osteo_helpers run`) first")
    return read_csv(path, dtype={"patient_id": str, "person_id": str, "image_path": str, "image_sha256": str,
                                    "duplicate_group": str})


def modelling_table(manifest: pd.DataFrame, clinical: pd.DataFrame, every_row: bool = False) -> pd.DataFrame:
    """Patients with an image joined to their clinical row: the cohort every model sees (``every_row``: the
    rows without an image too, as a validation lists them)."""
    cohort = (manifest if every_row else manifest[manifest["has_image"]]).drop(columns=["age_years", "sex"])
    shared = [c for c in ("diagnosis", "t_score", "person_id", "batch", IMAGE_FILE) if c in clinical.columns]
    return cohort.merge(clinical.drop(columns=shared), on="patient_id", how="left", validate="one_to_one")
