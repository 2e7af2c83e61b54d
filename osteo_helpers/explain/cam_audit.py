"""Does the image branch look at bone, or at shortcuts in the borders and corners?

Radiographs carry side markers, labels and collimation edges near the edges of the frame. These
functions turn CAMs into per-patient shares of CAM energy on bone (`bone_mask`), on the border
band (`border_mask`) and elsewhere (`cam_energy`, `where_it_looks`), so shortcut learning shows
up as numbers that can be compared between classes and acquisition batches (`summarise_where`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu

# Defaults for `where_it_looks`; the rationale is in its docstring.
BORDER_MARGIN_FRACTION = 0.08
BORDER_SHARE_THRESHOLD = 0.30
BONE_SHARE_THRESHOLD = 0.30
SHARE_COLUMNS = ("bone_share", "border_share", "other_share")


def border_mask(shape: tuple[int, int], margin_fraction: float = BORDER_MARGIN_FRACTION) -> np.ndarray:
    """True in a band of `margin_fraction` x the shorter side along every edge (so corners too).

    Radiographs carry side markers, text and collimator edges there; a model attending to the
    band is likely using acquisition shortcuts rather than anatomy.
    """
    h, w = shape
    if margin_fraction <= 0:
        return np.zeros((h, w), dtype=bool)
    m = max(1, int(round(margin_fraction * min(h, w))))
    out = np.zeros((h, w), dtype=bool)
    out[:m, :] = out[-m:, :] = True
    out[:, :m] = out[:, -m:] = True
    return out


def image_2d(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """One image (tensor or array, any singleton axes) as a float64 (H, W) array, for masks and overlays."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected one 2-D image, got shape {arr.shape}")
    return arr.astype(np.float64)


def image_stack(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images as fed to the model ((N, 1, S, S) tensor) or as cached ((N, S, S)) -> an (N, S, S) array."""
    imgs = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    return imgs[:, 0] if imgs.ndim == 4 else imgs


def _otsu(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Otsu threshold and its separability eta = between-class / total variance (1 = two spikes).

    The threshold is scikit-image's; eta, which it does not report, is computed on the same
    histogram so that the bimodality test in `bone_mask` judges exactly the split it will use.
    """
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    threshold = float(threshold_otsu(hist=(counts, centres)))
    prob = counts / counts.sum()
    below = centres <= threshold
    w0 = prob[below].sum()
    mean = prob @ centres
    total = prob @ (centres - mean) ** 2
    if total <= 0 or w0 <= 1e-12 or 1.0 - w0 <= 1e-12:
        return threshold, 0.0
    mu0 = prob[below] @ centres[below] / w0
    mu1 = prob[~below] @ centres[~below] / (1.0 - w0)
    return threshold, float(w0 * (1.0 - w0) * (mu0 - mu1) ** 2 / total)


def bone_mask(image: np.ndarray | torch.Tensor, margin_fraction: float = BORDER_MARGIN_FRACTION,
              smooth_fraction: float = 0.01, bimodality: float = 0.8, max_area_fraction: float = 0.4,
              min_area_fraction: float = 0.01) -> np.ndarray:
    """Rough bone/joint mask from intensity alone (bone is the brightest tissue on a radiograph).

    1. Gaussian smoothing (sigma = `smooth_fraction` x side) so noise and trabecular texture do
       not fragment the mask. Letterbox padding (pixels at exactly the image minimum, if they
       cover 1 % of the frame or more) is left out of the histograms.
    2. Otsu threshold on the remaining pixels. The bright part is split again by Otsu (at most
       twice) while it is both large (over `max_area_fraction` of the unpadded frame) and clearly
       bimodal (Otsu separability eta over `bimodality`; a single Gaussian gives 0.64, a uniform
       0.75): then the first split was air vs leg and the second separates soft tissue from bone.
       The two conditions together keep a knee's bone (typically 15-40 % of the frame) from being
       cut into cortex and marrow.
    3. Keep connected components of at least `min_area_fraction` of the image, fill holes
       (marrow cavities, joint space enclosed by bone).
    4. Remove the border band (`border_mask`), so markers and edges never count as bone.

    A heuristic for auditing CAMs, not a segmentation: check overlays for a few images per batch.
    Works on uint8 or normalised float images (only the ordering of intensities matters).
    """
    img = image_2d(image)
    area = img.size
    smooth = ndimage.gaussian_filter(img, sigma=max(smooth_fraction * min(img.shape), 0.5))
    padding = img == img.min()
    candidate = ~padding if padding.mean() >= 0.01 else np.ones(img.shape, dtype=bool)
    region = max(int(candidate.sum()), 1)
    fg = np.zeros(img.shape, dtype=bool)
    for _ in range(3):
        values = smooth[candidate]
        if values.size < 2 or np.ptp(values) <= 1e-12:
            break
        fg = candidate & (smooth > _otsu(values)[0])
        inner = smooth[fg]
        if fg.sum() <= max_area_fraction * region or inner.size < 2 or np.ptp(inner) <= 1e-12 \
                or _otsu(inner)[1] <= bimodality:
            break
        candidate = fg
    labels, n = ndimage.label(fg)
    if n:
        sizes = np.bincount(labels.ravel())
        keep = sizes >= min_area_fraction * area
        keep[0] = False
        fg = keep[labels]
    fg = ndimage.binary_fill_holes(fg)
    return fg & ~border_mask(img.shape, margin_fraction)


def cam_energy(cam: np.ndarray, bone: np.ndarray, border: np.ndarray) -> dict[str, float]:
    """Shares of CAM energy (sum of CAM values) on the border band, on bone, and elsewhere.

    Border takes precedence (a pixel in both counts as border), then bone; the three shares sum
    to 1. A CAM with no energy (all zero) gives NaN shares, as there is nothing to attribute.
    """
    cam = np.clip(np.asarray(cam, dtype=np.float64), 0.0, None)
    if not (cam.shape == bone.shape == border.shape):
        raise ValueError(f"shapes differ: cam {cam.shape}, bone {bone.shape}, border {border.shape}")
    total = cam.sum()
    if total <= 0:
        return {"bone_share": float("nan"), "border_share": float("nan"), "other_share": float("nan")}
    border_e = cam[border].sum()
    bone_e = cam[bone & ~border].sum()
    return {"bone_share": float(bone_e / total), "border_share": float(border_e / total),
            "other_share": float(max(total - border_e - bone_e, 0.0) / total)}


def where_it_looks(cams: np.ndarray, images: np.ndarray | torch.Tensor, meta: pd.DataFrame,
                   margin_fraction: float = BORDER_MARGIN_FRACTION,
                   border_threshold: float = BORDER_SHARE_THRESHOLD, bone_threshold: float = BONE_SHARE_THRESHOLD,
                   bone_masks: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image: `meta` (patient_id, class, batch, ...) plus CAM energy shares and flags.

    `flag_border` is True when border_share > `border_threshold` (0.3: the band is ~30 % of a
    square image at 8 % margin, so a CAM spread uniformly puts ~0.3 there; more means it
    concentrates on the edges) or bone_share < `bone_threshold` (0.3: less than a third of the
    evidence on bone), or the CAM is empty; `flag_reason` says which. Pass `bone_masks` (N, S, S)
    to use better masks than the intensity heuristic of `bone_mask`.
    """
    cams = np.asarray(cams)
    imgs = image_stack(images)
    if cams.ndim != 3 or imgs.shape != cams.shape:
        raise ValueError(f"cams {cams.shape} and images {imgs.shape} must both be (N, S, S)")
    if len(meta) != len(cams):
        raise ValueError(f"meta has {len(meta)} rows for {len(cams)} CAMs")
    border = border_mask(cams.shape[1:], margin_fraction)
    rows = []
    for i in range(len(cams)):
        bone = bone_masks[i].astype(bool) if bone_masks is not None else bone_mask(imgs[i], margin_fraction)
        shares = cam_energy(cams[i], bone, border)
        reasons = []
        if np.isnan(shares["bone_share"]):
            reasons.append("empty-cam")
        else:
            if shares["border_share"] > border_threshold:
                reasons.append("border")
            if shares["bone_share"] < bone_threshold:
                reasons.append("off-bone")
        rows.append({**shares, "bone_area": float(bone.mean()), "flag_border": bool(reasons),
                     "flag_reason": "+".join(reasons)})
    return pd.concat([meta.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def summarise_where(df: pd.DataFrame, by: str | Sequence[str] = "class",
                    columns: Sequence[str] = SHARE_COLUMNS) -> pd.DataFrame:
    """Mean, quartiles and IQR of each share per group, with group size and flag rate.

    Differences between classes or batches in where the model looks are the signature of a
    shortcut (e.g. one hospital's marker position predicting the label).
    """
    keys = [by] if isinstance(by, str) else list(by)
    grouped = df.groupby(keys, dropna=False)
    parts = {"n": grouped.size()}
    if "flag_border" in df.columns:
        parts["flag_rate"] = grouped["flag_border"].mean()
    for col in columns:
        g = grouped[col]
        q1, q3 = g.quantile(0.25), g.quantile(0.75)
        parts.update({f"{col}_mean": g.mean(), f"{col}_q1": q1, f"{col}_q3": q3, f"{col}_iqr": q3 - q1})
    return pd.DataFrame(parts)


SHARE_WORDS = {"bone_share": "on bone", "border_share": "in the border band", "other_share": "elsewhere"}


def where_table(summary: pd.DataFrame) -> pd.DataFrame:
    """`summarise_where` as a person reads it in the width of a page: per group the maps, the share flagged,
    and each share of CAM energy as its mean with the quartiles (every column is in the saved table)."""
    out = pd.DataFrame({"maps": summary["n"]}, index=summary.index)
    if "flag_rate" in summary:
        out["flagged"] = summary["flag_rate"].map(lambda v: f"{v:.0%}")
    for col, words in SHARE_WORDS.items():
        if f"{col}_mean" in summary:
            out[f"{words}: mean [quartiles]"] = [f"{m:.2f} [{a:.2f}, {b:.2f}]" for m, a, b in summary[
                [f"{col}_mean", f"{col}_q1", f"{col}_q3"]].itertuples(index=False)]
    return out


def where_text(where: pd.DataFrame) -> str:
    """How much Grad-CAM evidence lies on bone and in the border band, and how many maps are flagged."""
    if where["bone_share"].isna().all():
        return (f"**Where the model looks is not estimable on this run:** all {len(where)} Grad-CAM maps are empty "
                "(no evidence anywhere in the image, as when the encoder's last feature map is a single cell), so no "
                "share of evidence on bone or in the border band can be given.")
    flagged = where[where["flag_border"]]
    text = (f"Median share of Grad-CAM energy on bone: **{where.bone_share.median():.2f}**; in the border band: "
            f"**{where.border_share.median():.2f}**. {len(flagged)} of {len(where)} maps "
            f"({len(flagged) / max(len(where), 1):.0%}) are flagged (border-dominated or off the bone)")
    if len(flagged) and "batch" in where:
        totals, counts = where["batch"].value_counts().sort_index(), flagged["batch"].value_counts()
        text += "; by batch: " + ", ".join(f"{batch} {counts.get(batch, 0)} of {n}" for batch, n in totals.items())
    return text + "."
