"""The manifest: one row per patient with label, image file, checksum and acquisition batch.

Also the split groups: rows of one person (byte-identical images or identical clinical records)
share a ``split_group`` so that no person is ever on both sides of a split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..config import SPREADSHEET_NAME, resolve_data_dir
from ..tabular import INPUT_FEATURES
from ..tasks import CLASSES_3
from .clinical import load_clinical
from .errors import ImageReadError
from .layout import check_layout, find_images
from .registry import sha256_file


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
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


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


def load_manifest(path: Path) -> pd.DataFrame:
    """Read a saved manifest, with the error a user needs when notebook 01 has not run."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no manifest; run notebooks/01_eda_manifest.ipynb "
                                "(or `python -m osteo_helpers run`) first")
    return pd.read_csv(path, dtype={"patient_id": str, "image_path": str, "image_sha256": str, "duplicate_group": str})


def modelling_table(manifest: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """Patients with an image joined to their clinical row: the cohort every model sees."""
    cohort = manifest[manifest["has_image"]].drop(columns=["age_years", "sex"])
    return cohort.merge(clinical.drop(columns=["diagnosis", "t_score"]), on="patient_id", how="left",
                        validate="one_to_one")
