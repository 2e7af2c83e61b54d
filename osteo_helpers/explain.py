"""Explanations: where the image branch looks (Grad-CAM) and which clinical inputs drive predictions (SHAP).

Two questions matter for a screening model built on a few hundred knee radiographs:

* Does the image branch look at bone, or at shortcuts such as side markers, labels and
  collimation edges in the borders and corners? `compute_cams` gives class activation maps,
  `bone_mask` / `border_mask` / `where_it_looks` turn them into per-patient shares of CAM
  energy on bone, on the border band and elsewhere, so shortcut learning shows up as numbers
  that can be compared between classes and acquisition batches.
* Which clinical inputs matter? `shap_values_tabular` gives local attributions on the
  transformed (one-hot, missing-indicator) columns, `group_shap` sums them back to the clinical
  column the clinician knows, and `permutation_importance_grouped` gives a model-agnostic
  global check on out-of-fold data; `rank_comparison` puts both rankings side by side.

Figures are returned detached from pyplot (closed or built without it), so notebooks show each
one exactly once and scripts can `savefig` them without leaking open figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import shap
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy import ndimage, stats
from torch import nn
from torchvision.models import DenseNet, ResNet

from .images import normalisation
from .models import FusionNet, GrayToRGB, SmallCNN
from .tabular import original_feature, to_model_frame

CAM_METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}

# Defaults for `where_it_looks`; the rationale is in its docstring.
BORDER_MARGIN_FRACTION = 0.08
BORDER_SHARE_THRESHOLD = 0.30
BONE_SHARE_THRESHOLD = 0.30
SHARE_COLUMNS = ("bone_share", "border_share", "other_share")


# --------------------------------------------------------------------------- Grad-CAM


class ImageBranchWrapper(nn.Module):
    """A trained FusionNet seen as `forward(image) -> logits`, with the clinical input held fixed.

    Grad-CAM libraries call `model(input_tensor)` with one argument; the wrapper supplies the
    patient's own clinical vector so the map explains the prediction the fusion model actually
    makes for that patient. `tabular` is one row (broadcast to every image) or one row per image;
    it is ignored for mode 'image'.
    """

    def __init__(self, model: FusionNet, tabular: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        if model.mode == "tabular":
            raise ValueError("mode 'tabular' has no image branch to explain")
        self.model = model
        tab: torch.Tensor | None = None
        if model.mode == "fusion":
            if tabular is None:
                raise ValueError("mode 'fusion' needs the clinical input (tabular) of the patient(s)")
            tab = torch.as_tensor(tabular, dtype=torch.float32)
            tab = tab.unsqueeze(0) if tab.ndim == 1 else tab
            if tab.ndim != 2:
                raise ValueError(f"tabular must be (p,) or (n, p), got shape {tuple(tab.shape)}")
            device = next(model.parameters()).device
            tab = tab.to(device)
        self.register_buffer("tabular", tab, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tab = self.tabular
        if tab is not None:
            if tab.shape[0] == 1 and image.shape[0] != 1:
                tab = tab.expand(image.shape[0], -1)
            elif tab.shape[0] != image.shape[0]:
                raise ValueError(f"{tab.shape[0]} clinical rows for {image.shape[0]} images")
        return self.model(image, tab)


def _unwrap(model: FusionNet | ImageBranchWrapper) -> FusionNet:
    return model.model if isinstance(model, ImageBranchWrapper) else model


def target_layer(model: FusionNet | ImageBranchWrapper) -> nn.Module:
    """The layer whose activations Grad-CAM weights: the last spatial feature map of the encoder.

    SmallCNN: the activation (ReLU) of its last conv block, before the final max-pool, which keeps
    twice the resolution of the pooled map. ResNet: `layer4[-1]`. DenseNet: `features.norm5`.
    Detected by type so a renamed or new encoder fails loudly instead of explaining the wrong layer.
    """
    net = _unwrap(model)
    encoder = getattr(net, "image_encoder", None)
    if encoder is None:
        raise ValueError(f"model (mode {getattr(net, 'mode', '?')!r}) has no image encoder to explain")
    if isinstance(encoder, SmallCNN):
        layers = list(encoder.features)
        convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
        if not convs:
            raise TypeError("SmallCNN.features holds no Conv2d layer")
        chosen = convs[-1]
        for j in range(chosen + 1, len(layers)):
            if not isinstance(layers[j], (nn.BatchNorm2d, nn.ReLU)):
                break
            chosen = j
        return layers[chosen]
    if isinstance(encoder, GrayToRGB):
        backbone = encoder.backbone
        if isinstance(backbone, ResNet):
            return backbone.layer4[-1]
        if isinstance(backbone, DenseNet):
            return backbone.features.norm5
        raise TypeError(f"no Grad-CAM target layer known for backbone {type(backbone).__name__}")
    raise TypeError(f"no Grad-CAM target layer known for encoder {type(encoder).__name__}; "
                    "expected SmallCNN or GrayToRGB(ResNet|DenseNet)")


def compute_cams(model: FusionNet, images: torch.Tensor, tabular: torch.Tensor | np.ndarray | None = None,
                 target_class: int | Sequence[int] = 1, method: str = "gradcam", batch_size: int = 16,
                 layer: nn.Module | None = None) -> np.ndarray:
    """Class activation maps (N, S, S) in [0, 1], one per image, each min-max scaled by pytorch_grad_cam.

    `images` is (N, 1, S, S) as fed to the model; `tabular` is None (mode 'image'), one row for all
    images, or (N, p) with each patient's own clinical row. `target_class` is the logit explained
    (one for all, or one per image; use 0 for a single-output regression model). Images are
    processed in chunks with the matching clinical rows; samples do not interact in eval mode, so
    chunking gives the same maps as one image at a time. Hooks are released, parameter gradients
    cleared and the model's train/eval state restored, whatever happens.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {tuple(CAM_METHODS)}")
    net = _unwrap(model)
    images = images.unsqueeze(1) if images.ndim == 3 else images
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 1, S, S), got shape {tuple(images.shape)}")
    n = images.shape[0]
    targets = [int(target_class)] * n if np.ndim(target_class) == 0 else [int(c) for c in target_class]
    if len(targets) != n:
        raise ValueError(f"{len(targets)} target classes for {n} images")
    tab = None
    if net.mode == "fusion":
        if tabular is None:
            raise ValueError("mode 'fusion' needs tabular inputs")
        tab = torch.as_tensor(tabular, dtype=torch.float32)
        tab = tab.unsqueeze(0) if tab.ndim == 1 else tab
        if tab.shape[0] not in (1, n):
            raise ValueError(f"{tab.shape[0]} clinical rows for {n} images")
    layer = target_layer(net) if layer is None else layer
    device = next(net.parameters()).device
    cam_class = CAM_METHODS[method]
    was_training = net.training
    out: list[np.ndarray] = []
    try:
        net.eval()
        with torch.enable_grad():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                rows = None if tab is None else (tab if tab.shape[0] == 1 else tab[start:stop])
                wrapper = ImageBranchWrapper(net, rows)
                x = images[start:stop].detach().to(device, torch.float32).clone().requires_grad_(True)
                chunk_targets = [ClassifierOutputTarget(c) for c in targets[start:stop]]
                with cam_class(model=wrapper, target_layers=[layer]) as cam:
                    out.append(np.asarray(cam(input_tensor=x, targets=chunk_targets), dtype=np.float32))
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    cams = np.concatenate(out, axis=0) if out else np.empty((0, *images.shape[-2:]), np.float32)
    return np.clip(np.nan_to_num(cams, nan=0.0), 0.0, 1.0)


# --------------------------------------------------------------------------- masks and energy


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


def _as_2d(image: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected one 2-D image, got shape {arr.shape}")
    return arr.astype(np.float64)


def _otsu(values: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """Otsu threshold and its separability eta = between-class / total variance (1 = two spikes)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    prob = hist / hist.sum()
    w0 = np.cumsum(prob)
    w1 = 1.0 - w0
    mu = np.cumsum(prob * centres)
    between = np.zeros(bins)
    ok = (w0 > 1e-12) & (w1 > 1e-12)
    between[ok] = (mu[-1] * w0[ok] - mu[ok]) ** 2 / (w0[ok] * w1[ok])
    k = int(np.argmax(between))
    total = float(np.sum(prob * (centres - mu[-1]) ** 2))
    return float(centres[k]), float(between[k] / total) if total > 0 else 0.0


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
    img = _as_2d(image)
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
    imgs = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    imgs = imgs[:, 0] if imgs.ndim == 4 else imgs
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


# --------------------------------------------------------------------------- CAM figures


def overlay(ax: Axes, image: np.ndarray | torch.Tensor, cam: np.ndarray, title: str | None = None,
            alpha: float = 0.45, cmap: str = "jet", mask: np.ndarray | None = None) -> AxesImage:
    """Grayscale radiograph with the CAM on top (and the bone-mask outline if given); returns the CAM layer.

    The image is windowed to its 1st-99th percentiles so normalised and uint8 inputs look alike.
    """
    img = _as_2d(image)
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    layer = ax.imshow(np.asarray(cam), cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if mask is not None and np.any(mask) and not np.all(mask):
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="white", linewidths=0.8)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return layer


def cam_gallery(images: np.ndarray | torch.Tensor, cams: np.ndarray, titles: Sequence[str] | None = None,
                ncols: int = 4, masks: np.ndarray | None = None, alpha: float = 0.45, cmap: str = "jet",
                panel_inches: float = 2.4) -> Figure:
    """A grid of `overlay` panels with one shared colour bar, built without pyplot's figure registry."""
    imgs = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    imgs = imgs[:, 0] if imgs.ndim == 4 else imgs
    n = len(cams)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = Figure(figsize=(panel_inches * ncols + 0.6, panel_inches * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    layer = None
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        layer = overlay(ax, imgs[i], cams[i], None if titles is None else titles[i], alpha, cmap,
                        None if masks is None else masks[i])
    if layer is not None:
        fig.colorbar(layer, ax=list(axes), shrink=0.8, label="CAM")
    return fig


# --------------------------------------------------------------------------- SHAP


def tabular_predict_fn(model: FusionNet, image: torch.Tensor | None = None, class_index: int | None = 1,
                       batch_size: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    """`X -> model output` over clinical rows, with one patient's image held fixed (mode 'fusion').

    The image embedding is computed once, so SHAP's thousands of evaluations only run the small
    tabular MLP and head. Returns softmax probability of `class_index` (all classes if None), or
    the raw output for a single-output regression model.
    """
    if model.mode == "image":
        raise ValueError("mode 'image' has no clinical inputs to explain")
    device = next(model.parameters()).device
    embedding: torch.Tensor | None = None
    if model.mode == "fusion":
        if image is None:
            raise ValueError("mode 'fusion' needs the patient's image")
        img = image.reshape(1, 1, *image.shape[-2:]).to(device, torch.float32)
        was = model.training
        model.eval()
        with torch.no_grad():
            embedding = model.image_encoder(img)
        model.train(was)

    def predict(X: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        outs = []
        try:
            with torch.no_grad():
                for start in range(0, len(X), batch_size):
                    x = torch.as_tensor(np.asarray(X[start:start + batch_size]), dtype=torch.float32, device=device)
                    parts = [model.tabular_encoder(x)]
                    if embedding is not None:
                        parts.insert(0, embedding.expand(x.shape[0], -1))
                    outs.append(model.head(torch.cat(parts, dim=1)))
        finally:
            model.train(was_training)
        logits = torch.cat(outs) if outs else torch.empty(0, model.head[-1].out_features)
        if logits.shape[1] == 1:
            return logits[:, 0].cpu().numpy()
        probs = torch.softmax(logits, dim=1).cpu().numpy()
        return probs if class_index is None else probs[:, class_index]

    return predict


def shap_values_tabular(predict_fn: Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]],
                        X_background: np.ndarray, X_explain: np.ndarray, feature_names: Sequence[str],
                        n_samples: int | None = None, seed: int = 0, max_background: int = 50,
                        class_index: int | None = None) -> shap.Explanation:
    """SHAP values of the transformed clinical columns, by shap's KernelExplainer.

    KernelSHAP is model-agnostic, exactly additive (values + base = prediction, enforced by its
    constrained regression) and needs no JIT compilation (shap's PermutationExplainer spends
    10-20 s compiling numba code in each new process). `n_samples` is the number of feature
    coalitions per patient (default shap's 2p + 2048); each is averaged over the background,
    subsampled to `max_background` rows with `seed`, so a patient costs n_samples x background
    model rows: 2168 x 50 = 108 k rows for p = 60. No L1 feature selection is applied (shap's
    default keeps only 10 features). Sampling uses NumPy's global generator, seeded from `seed`
    for each call and restored afterwards, so results are reproducible and the caller's random
    state is untouched.

    `predict_fn` returns one probability per row (or class probabilities, of which `class_index`
    picks one). Pass one function per row of `X_explain` to explain a fusion model with each
    patient's own image (see `tabular_predict_fn`).
    """
    X_background = np.asarray(X_background, dtype=np.float64)
    X_explain = np.atleast_2d(np.asarray(X_explain, dtype=np.float64))
    names = list(feature_names)
    p = X_explain.shape[1]
    if len(names) != p or X_background.shape[1] != p:
        raise ValueError(f"{len(names)} names, background {X_background.shape[1]} and explain {p} columns differ")
    n_samples = 2 * p + 2048 if n_samples is None else int(n_samples)
    if n_samples < p + 2:
        raise ValueError(f"n_samples={n_samples} too low for {p} features (need at least p + 2)")
    rng = np.random.default_rng(seed)
    if len(X_background) > max_background:
        X_background = X_background[np.sort(rng.choice(len(X_background), max_background, replace=False))]
    per_row = isinstance(predict_fn, Sequence)
    if per_row and len(predict_fn) != len(X_explain):
        raise ValueError(f"{len(predict_fn)} predict functions for {len(X_explain)} rows")

    def select(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def f(X: np.ndarray) -> np.ndarray:
            out = np.asarray(fn(X), dtype=np.float64)
            return out[:, class_index] if (class_index is not None and out.ndim == 2) else out
        return f

    def explain(fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        explainer = shap.KernelExplainer(select(fn), X_background)
        np.random.seed(seed)
        values = np.asarray(explainer.shap_values(X, nsamples=n_samples, l1_reg=False, silent=True))
        base = np.broadcast_to(np.asarray(explainer.expected_value, dtype=np.float64),
                               (len(X), *np.shape(explainer.expected_value)))
        return values, base

    state = np.random.get_state()
    try:
        if per_row:
            parts = [explain(fn, X_explain[i:i + 1]) for i, fn in enumerate(predict_fn)]
        else:
            parts = [explain(predict_fn, X_explain)]  # type: ignore[arg-type]
    finally:
        np.random.set_state(state)
    return shap.Explanation(values=np.concatenate([v for v, _ in parts]),
                            base_values=np.concatenate([b for _, b in parts]),
                            data=X_explain, feature_names=names)


def feature_groups(feature_names: Sequence[str],
                   mapper: Callable[[str], str] | Mapping[str, str] = original_feature) -> dict[str, list[int]]:
    """Column indices per original clinical feature, in order of first appearance."""
    lookup = mapper.get if isinstance(mapper, Mapping) else mapper
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(feature_names):
        key = lookup(name)
        groups.setdefault(name if key is None else key, []).append(j)
    return groups


def _level(column: str, group: str) -> str:
    short = column.split("__", 1)[-1]
    return short[len(group) + 1:] if short.startswith(group + "_") else short


def group_shap(shap_values: shap.Explanation | tuple[np.ndarray, np.ndarray], feature_names: Sequence[str] | None = None,
               mapper: Callable[[str], str] | Mapping[str, str] = original_feature) -> shap.Explanation:
    """SHAP values summed per original clinical feature (one-hot levels, missing indicators).

    Shapley values are additive over players, so the sum over a feature's columns is that
    feature's contribution and row totals (hence base + sum = prediction) are unchanged.
    Grouped `data`: the column's value for single-column features; the value column for a
    numeric feature with a missing indicator (the scaled, median-imputed value); NaN for one-hot
    features, whose active level (or 'none' if all zero) goes to `display_data` for waterfalls.
    Values may be (n, p) or (n, p, k) for multi-output explanations.
    """
    if isinstance(shap_values, shap.Explanation):
        values = np.asarray(shap_values.values, dtype=np.float64)
        data = None if shap_values.data is None else np.asarray(shap_values.data, dtype=np.float64)
        base = shap_values.base_values
        names = list(feature_names if feature_names is not None else shap_values.feature_names)
    else:
        values, data = (np.asarray(a, dtype=np.float64) for a in shap_values)
        base = None
        if feature_names is None:
            raise ValueError("feature_names are needed with a (values, data) pair")
        names = list(feature_names)
    if values.ndim not in (2, 3) or values.shape[1] != len(names):
        raise ValueError(f"values {values.shape} do not match {len(names)} feature names")
    groups = feature_groups(names, mapper)
    grouped_values = np.stack([values[:, idx].sum(axis=1) for idx in groups.values()], axis=1)
    n = values.shape[0]
    grouped_data = np.full((n, len(groups)), np.nan)
    display = np.empty((n, len(groups)), dtype=object)
    has_levels = False
    for g, (group, idx) in enumerate(groups.items()):
        value_cols = [j for j in idx if "missingindicator_" not in names[j]]
        if data is None:
            continue
        if len(value_cols) == 1:
            grouped_data[:, g] = data[:, value_cols[0]]
            display[:, g] = data[:, value_cols[0]]
        else:
            has_levels = True
            block = data[:, idx]
            active = np.argmax(block, axis=1)
            levels = np.array([_level(names[j], group) for j in idx], dtype=object)
            display[:, g] = np.where(block.max(axis=1) > 0, levels[active], "none")
    return shap.Explanation(values=grouped_values, base_values=base,
                            data=None if data is None else grouped_data,
                            display_data=display if has_levels else None, feature_names=list(groups))


def _select_output(explanation: shap.Explanation, class_index: int | None) -> shap.Explanation:
    if np.ndim(explanation.values) == 3:
        if class_index is None:
            raise ValueError("multi-output explanation: pass class_index")
        return explanation[..., class_index]
    return explanation


def _capture(draw: Callable[[], Any], figsize: tuple[float, float] | None = None) -> Figure:
    """Run a shap plot on a fresh pyplot figure, then detach it so it is shown once and not leaked."""
    interactive = plt.isinteractive()
    fig = plt.figure(figsize=figsize)
    try:
        draw()
        fig = plt.gcf()
    finally:
        plt.close(fig)
        if interactive:
            plt.ion()
    return fig


def shap_importance(grouped: shap.Explanation, class_index: int | None = None) -> pd.DataFrame:
    """Mean |SHAP| per feature, sorted: the table behind the bar plot, for `rank_comparison`."""
    expl = _select_output(grouped, class_index)
    table = pd.DataFrame({"feature": list(expl.feature_names),
                          "mean_abs_shap": np.abs(np.asarray(expl.values)).mean(axis=0)})
    return table.sort_values("mean_abs_shap", ascending=False, ignore_index=True)


def shap_summary_figure(grouped: shap.Explanation, max_display: int = 20, class_index: int | None = None) -> Figure:
    """Beeswarm of per-patient SHAP values (colour = feature value; grey for one-hot features)."""
    expl = _select_output(grouped, class_index)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # one-hot groups have no colour
        return _capture(lambda: shap.plots.beeswarm(expl, max_display=max_display, show=False))


def shap_bar_figure(grouped: shap.Explanation, max_display: int = 20, class_index: int | None = None) -> Figure:
    """Mean |SHAP| per feature: the global ranking."""
    expl = _select_output(grouped, class_index)
    return _capture(lambda: shap.plots.bar(expl, max_display=max_display, show=False))


def shap_waterfall_figure(grouped: shap.Explanation, i: int, max_display: int = 12,
                          class_index: int | None = None) -> Figure:
    """How patient `i`'s clinical inputs move the prediction away from the background average."""
    expl = _select_output(grouped, class_index)[i]
    return _capture(lambda: shap.plots.waterfall(expl, max_display=max_display, show=False))


# --------------------------------------------------------------------------- permutation importance


def permutation_importance_grouped(score_fn: Callable[[np.ndarray], float], X: np.ndarray,
                                   feature_names: Sequence[str],
                                   groups: Callable[[str], str] | Mapping[str, str] = original_feature,
                                   n_repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    """Drop in score when one original feature's columns are shuffled together across patients.

    All transformed columns of a feature (one-hot levels, value + missing indicator) are permuted
    with the same row order, so every shuffled row is still a valid encoding. `score_fn(X)` must
    score predictions of a model not fitted on these rows (out-of-fold), higher = better (e.g.
    AUROC). Returns feature, n_columns, mean_drop, std_drop (population std over repeats, as in
    scikit-learn) and the unpermuted baseline, sorted by mean_drop.
    """
    X = np.asarray(X)
    names = list(feature_names)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"X {X.shape} does not match {len(names)} feature names")
    rng = np.random.default_rng(seed)
    baseline = float(score_fn(X))
    rows = []
    for feature, idx in feature_groups(names, groups).items():
        drops = np.empty(n_repeats)
        for r in range(n_repeats):
            Xp = X.copy()
            Xp[:, idx] = X[rng.permutation(len(X))][:, idx]
            drops[r] = baseline - float(score_fn(Xp))
        rows.append({"feature": feature, "n_columns": len(idx), "mean_drop": drops.mean(),
                     "std_drop": drops.std(), "baseline": baseline})
    return pd.DataFrame(rows).sort_values("mean_drop", ascending=False, ignore_index=True)


def _scores(table: pd.DataFrame | pd.Series, column: str) -> pd.Series:
    if isinstance(table, pd.Series):
        return table.astype(float).rename(column)
    frame = table.set_index("feature") if "feature" in table.columns else table
    return frame[column].astype(float)


def rank_comparison(shap_df: pd.DataFrame | pd.Series, perm_df: pd.DataFrame | pd.Series,
                    shap_col: str = "mean_abs_shap", perm_col: str = "mean_drop") -> pd.DataFrame:
    """SHAP and permutation rankings side by side (rank 1 = most important; outer join on feature).

    Features the two methods disagree on (large |rank_diff|) deserve a look: correlated inputs
    share SHAP credit but each loses little when permuted alone.
    """
    s, p = _scores(shap_df, shap_col), _scores(perm_df, perm_col)
    table = pd.concat([s.rename(shap_col), p.rename(perm_col)], axis=1)
    table.index.name = "feature"
    table["shap_rank"] = table[shap_col].rank(ascending=False, method="min")
    table["perm_rank"] = table[perm_col].rank(ascending=False, method="min")
    table["rank_diff"] = table["shap_rank"] - table["perm_rank"]
    return table.reset_index().sort_values(["shap_rank", "perm_rank"], ignore_index=True)


def rank_spearman(comparison: pd.DataFrame, shap_col: str = "mean_abs_shap",
                  perm_col: str = "mean_drop") -> tuple[float, int]:
    """Spearman correlation between the two importance scores over features present in both, and n."""
    both = comparison[[shap_col, perm_col]].dropna()
    if len(both) < 3:
        return float("nan"), len(both)
    rho = stats.spearmanr(both[shap_col], both[perm_col]).statistic
    return float(rho), len(both)


# --------------------------------------------------------------------------- cross-validated models


def model_inputs(images: np.ndarray, weights: str | None) -> torch.Tensor:
    """uint8 (N, S, S) cache arrays -> normalised (N, 1, S, S) tensors, as the networks saw them at test time."""
    mean, std = normalisation(weights)
    return (torch.from_numpy(np.ascontiguousarray(images)).float().unsqueeze(1) / 255 - mean) / std


@dataclass
class FoldModel:
    """A fitted fold of a network arm as the explanations need it: its network, its clinical
    transform and the patients it was tested on (the only ones it may explain)."""

    seed: int
    fold: int
    model: nn.Module
    preprocessor: Any
    test_ids: list[str]


def fold_models(fitted_arms: Sequence[Any]) -> list[FoldModel]:
    """FoldModels from the fitted network arms of `arms.load_fold_arms`."""
    return [FoldModel(a.seed_, a.fold_, a.model_.eval(), a.preprocessor_, list(a.test_ids_)) for a in fitted_arms]


def _fold_rows(cohort: pd.DataFrame, fm: FoldModel) -> np.ndarray:
    return np.flatnonzero(cohort["patient_id"].isin(fm.test_ids).to_numpy())


def _fold_tabular(fm: FoldModel, X_raw: pd.DataFrame | None, rows: np.ndarray) -> np.ndarray | None:
    if fm.preprocessor is None or X_raw is None:
        return None
    return fm.preprocessor.transform(X_raw.iloc[rows]).astype(np.float32)


def oof_cams(fold_models: Sequence[FoldModel], cohort: pd.DataFrame, images: np.ndarray, weights: str | None,
             target_class: int = 1, method: str = "gradcam", rows: np.ndarray | None = None) -> np.ndarray:
    """CAMs for patients from the fold model that did not train on them; NaN for rows not asked for."""
    X_raw = to_model_frame(cohort) if fold_models[0].preprocessor is not None else None
    wanted = np.arange(len(cohort)) if rows is None else np.asarray(rows)
    cams = np.full((len(cohort), *images.shape[1:]), np.nan, dtype=np.float32)
    for fm in fold_models:
        idx = np.intersect1d(_fold_rows(cohort, fm), wanted)
        if len(idx) == 0:
            continue
        tab = _fold_tabular(fm, X_raw, idx)
        cams[idx] = compute_cams(fm.model, model_inputs(images[idx], weights),
                                 None if tab is None else torch.from_numpy(tab), target_class, method)
    return cams


def oof_shap(fold_models: Sequence[FoldModel], cohort: pd.DataFrame, images: np.ndarray | None, weights: str | None,
             n_explain: int, n_samples: int, n_background: int, seed: int) -> tuple[shap.Explanation, list[str]]:
    """Grouped SHAP values of the clinical inputs for out-of-fold patients (a stratified sample of them).

    Each patient is explained by the fold model that did not train on it, against a background of
    that fold's training patients; values are grouped back to the clinical features before folds are
    pooled, so folds whose one-hot columns differ still line up.
    """
    X_raw = to_model_frame(cohort)
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(cohort))[:n_explain]
    values, data, base, ids, names = [], [], [], [], None
    for fm in fold_models:
        rows = np.intersect1d(_fold_rows(cohort, fm), picks)
        if len(rows) == 0:
            continue
        train = np.setdiff1d(np.arange(len(cohort)), _fold_rows(cohort, fm))
        background = _fold_tabular(fm, X_raw, train)
        X = _fold_tabular(fm, X_raw, rows)
        feature_names = list(fm.preprocessor.get_feature_names_out())
        if fm.model.mode == "fusion":
            inputs = model_inputs(images[rows], weights)
            fn: Any = [tabular_predict_fn(fm.model, inputs[i]) for i in range(len(rows))]
        else:
            fn = tabular_predict_fn(fm.model)
        raw = shap_values_tabular(fn, background, X, feature_names, n_samples=n_samples, seed=seed,
                                  max_background=n_background)
        grouped = group_shap(raw)
        order = list(grouped.feature_names)
        names = names or order
        reorder = [order.index(n) for n in names]
        values.append(np.asarray(grouped.values)[:, reorder])
        data.append(np.asarray(grouped.data, dtype=object)[:, reorder])
        base.append(np.atleast_1d(grouped.base_values).reshape(-1)[: len(rows)] if np.size(grouped.base_values) > 1
                    else np.repeat(grouped.base_values, len(rows)))
        ids += cohort["patient_id"].to_numpy()[rows].tolist()
    explanation = shap.Explanation(values=np.vstack(values), base_values=np.concatenate(base),
                                   data=np.vstack(data), feature_names=names)
    return explanation, ids


def oof_permutation_importance(fold_models: Sequence[FoldModel], cohort: pd.DataFrame, images: np.ndarray | None,
                               weights: str | None, y: np.ndarray, n_repeats: int, seed: int) -> pd.DataFrame:
    """Drop in pooled out-of-fold AUROC when one clinical feature is shuffled (each fold's own model)."""
    from .evaluation import binary_point_metrics

    X_raw = to_model_frame(cohort)
    fold_rows = [(fm, _fold_rows(cohort, fm)) for fm in fold_models]
    embeddings: dict[int, torch.Tensor] = {}  # image embeddings do not change when clinical inputs are shuffled
    with torch.no_grad():
        for k, (fm, rows) in enumerate(fold_rows):
            if fm.model.mode == "fusion":
                embeddings[k] = fm.model.image_encoder(model_inputs(images[rows], weights))

    def score(X: np.ndarray) -> float:
        frame = pd.DataFrame(X, columns=X_raw.columns).astype(X_raw.dtypes.to_dict())
        prob = np.empty(len(cohort))
        for k, (fm, rows) in enumerate(fold_rows):
            tab = torch.from_numpy(fm.preprocessor.transform(frame.iloc[rows]).astype(np.float32))
            with torch.no_grad():
                parts = ([embeddings[k]] if k in embeddings else []) + [fm.model.tabular_encoder(tab)]
                out = fm.model.head(torch.cat(parts, dim=1))
            prob[rows] = torch.softmax(out, 1)[:, 1].numpy()
        return binary_point_metrics(y, prob)["auroc"]

    return permutation_importance_grouped(score, X_raw.to_numpy(dtype=object), list(X_raw.columns),
                                          groups=lambda name: name, n_repeats=n_repeats, seed=seed)


def gallery_picks(truth: np.ndarray, prob: np.ndarray, n: int, seed: int) -> dict[tuple[int, bool], list[int]]:
    """Up to ``n`` random patients per (true class, correctly classified at 0.5), for CAM galleries."""
    rng = np.random.default_rng(seed)
    pred = (np.asarray(prob) >= 0.5).astype(int)
    picks = {}
    for label in (0, 1):
        for correct in (True, False):
            idx = np.flatnonzero((truth == label) & ((pred == truth) == correct))
            if len(idx):
                picks[(label, correct)] = sorted(rng.choice(idx, size=min(n, len(idx)), replace=False).tolist())
    return picks


def where_text(where: pd.DataFrame) -> str:
    """How much Grad-CAM evidence lies on bone and in the border band, and how many maps are flagged."""
    flagged = where[where["flag_border"]]
    text = (f"Median share of Grad-CAM energy on bone: **{where.bone_share.median():.2f}**; in the border band: "
            f"**{where.border_share.median():.2f}**. {len(flagged)} of {len(where)} maps "
            f"({len(flagged) / max(len(where), 1):.0%}) are flagged (border-dominated or off the bone)")
    if len(flagged):
        text += f"; flagged maps by batch: {flagged.batch.value_counts().to_dict()}"
    return text + "."


def reliance_text(shap_values: shap.Explanation, perm: pd.DataFrame, ranks: pd.DataFrame,
                  where: pd.DataFrame) -> str:
    """What the model relies on, by both importance measures, and where its image evidence lies."""
    rho, n = rank_spearman(ranks)
    top_shap = shap_importance(shap_values).iloc[0]["feature"]
    top_perm = perm.iloc[0]
    return (f"**What the model relies on.** The clinical feature with the largest mean |SHAP| is `{top_shap}`; "
            f"the one whose shuffling costs the most out-of-fold AUROC is `{top_perm['feature']}` (drop "
            f"{top_perm['mean_drop']:.3f}). The two rankings agree with Spearman rho = {rho:.2f} over {n} features. "
            f"On the image side, a median {where.bone_share.median():.0%} of the Grad-CAM evidence lies on the bone "
            f"mask and {where.border_share.median():.0%} in the border band.")
