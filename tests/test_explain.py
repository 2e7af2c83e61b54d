"""Tests for osteo_helpers.explain on tiny models and synthetic data (no real data, no network)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from torch import nn  # noqa: E402

from osteo_helpers import explain as ex  # noqa: E402
from osteo_helpers.models import FusionNet, SmallCNN, build_model  # noqa: E402

TAB_DIM = 5
SIZE = 64

_MODELS: dict[str, FusionNet] = {}


def _model(encoder: str, mode: str = "fusion") -> FusionNet:
    """Build each architecture once (resnet50 / densenet121 construction is the slow part)."""
    key = f"{encoder}-{mode}"
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = build_model(mode, 2, encoder, tabular_dim=TAB_DIM).eval()
    return _MODELS[key]


def _inputs(n: int = 2, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g), torch.randn(n, TAB_DIM, generator=g)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors on a shared 2-core machine run far faster without intra-op threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _all_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


# --------------------------------------------------------------------------- wrapper and layers


def test_wrapper_forward_equals_model_with_fixed_tabular():
    model = _model("smallcnn")
    images, tab = _inputs()
    with torch.no_grad():
        expected = model(images, tab)
        assert torch.allclose(ex.ImageBranchWrapper(model, tab)(images), expected)
        one_row = ex.ImageBranchWrapper(model, tab[0].numpy())(images)
        assert torch.allclose(one_row, model(images, tab[:1].expand(2, -1)))
        assert not torch.allclose(one_row, expected)
    with pytest.raises(ValueError, match="clinical rows"):
        ex.ImageBranchWrapper(model, torch.randn(3, TAB_DIM))(images)
    with pytest.raises(ValueError, match="fusion"):
        ex.ImageBranchWrapper(model, None)


def test_wrapper_ignores_tabular_in_image_mode():
    model = _model("smallcnn", mode="image")
    images, tab = _inputs()
    with torch.no_grad():
        assert torch.allclose(ex.ImageBranchWrapper(model, tab)(images), model(images, None))


@pytest.mark.parametrize("encoder", ["smallcnn", "resnet18", "resnet50", "densenet121"])
def test_target_layer_per_architecture(encoder):
    model = _model(encoder)
    layer = ex.target_layer(model)
    enc = model.image_encoder
    if encoder == "smallcnn":
        expected = enc.features[-2]  # ReLU of the last conv block, before the final max-pool
        assert isinstance(expected, nn.ReLU) and isinstance(enc.features[-4], nn.Conv2d)
    elif encoder.startswith("resnet"):
        expected = enc.backbone.layer4[-1]
    else:
        expected = enc.backbone.features.norm5
    assert layer is expected
    assert ex.target_layer(ex.ImageBranchWrapper(model, torch.zeros(TAB_DIM))) is expected


def test_target_layer_refuses_tabular_mode_and_unknown_encoders():
    with pytest.raises(ValueError, match="no image encoder"):
        ex.target_layer(build_model("tabular", 2, tabular_dim=TAB_DIM))
    odd = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    odd.out_dim = 4
    with pytest.raises(TypeError, match="Sequential"):
        ex.target_layer(FusionNet("image", 2, odd))


# --------------------------------------------------------------------------- CAMs


@pytest.mark.parametrize("encoder,method", [("smallcnn", "gradcam"), ("smallcnn", "gradcam++"),
                                            ("smallcnn", "eigencam"), ("smallcnn", "layercam"),
                                            ("resnet18", "gradcam"), ("resnet50", "gradcam"),
                                            ("densenet121", "gradcam")])
def test_compute_cams_shape_and_cleanup(encoder, method):
    model = _model(encoder).train()
    images, tab = _inputs()
    cams = ex.compute_cams(model, images, tab, target_class=[1, 0], method=method)
    assert cams.shape == (2, SIZE, SIZE) and cams.dtype == np.float32
    assert cams.max() > 0.5  # min-max scaled maps reach 1 unless the map is empty
    layer = ex.target_layer(model)
    assert len(layer._forward_hooks) == 0 and len(layer._backward_hooks) == 0
    assert _all_hooks(model) == 0
    assert model.training  # state restored
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def _square_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Noise images where a bright 12 px square (class 1 only, in a random quadrant) decides the class.

    Every image, of both classes, also holds an equally bright 3 x 20 px bar in another quadrant:
    uninformative, so a map that merely follows brightness would put energy on it too.
    """
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal((n, 1, SIZE, SIZE)).astype(np.float32)
    y = np.arange(n) % 2
    square = np.zeros((n, SIZE, SIZE), dtype=bool)
    bar = np.zeros((n, SIZE, SIZE), dtype=bool)
    half = SIZE // 2
    for i, quadrant in enumerate(rng.integers(0, 4, n)):
        other = (quadrant + rng.integers(1, 4)) % 4
        r, c = (other // 2) * half + rng.integers(4, 26), (other % 2) * half + rng.integers(4, 8)
        bar[i, r:r + 3, c:c + 20] = True
        r, c = (quadrant // 2) * half + rng.integers(6, 15), (quadrant % 2) * half + rng.integers(6, 15)
        square[i, r:r + 12, c:c + 12] = bool(y[i])
    x[:, 0][square | bar] += 1.0
    return torch.from_numpy(x), torch.from_numpy(y), square, bar


def _energy_share(cam: np.ndarray, region: np.ndarray, margin: int = 4) -> float:
    """Share of the CAM's energy within `margin` px of the region (the maps are upsampled, so edges blur)."""
    return float(cam[ndimage.binary_dilation(region, iterations=margin)].sum() / cam.sum())


def test_gradcam_lands_on_the_square_that_decides_the_class():
    """A toy network trained to spot the square must be explained by maps on the square, not on the bar.

    Squares sit in all four quadrants, so flipped, transposed or shifted maps fail, as do maps of
    the other class (no energy on the square) and of an untrained network (energy spread out).
    The shallow SmallCNN keeps a 16 x 16 target layer, fine enough to resolve a 12 px square.
    """
    torch.manual_seed(0)
    x, y, _, _ = _square_task(160, seed=0)
    model = FusionNet("image", 2, SmallCNN((8, 16)))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(12):
        for batch in torch.randperm(len(x)).split(32):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()
    x_new, y_new, square, bar = _square_task(32, seed=1)
    with torch.no_grad():
        assert (model(x_new).argmax(1) == y_new).all()  # the toy task is learnt, so its evidence is known
    positive = (y_new == 1).numpy()
    cams = ex.compute_cams(model, x_new[positive], None, target_class=1)
    on_square = [_energy_share(cam, sq) for cam, sq in zip(cams, square[positive], strict=True)]
    on_bar = [_energy_share(cam, b) for cam, b in zip(cams, bar[positive], strict=True)]
    assert ndimage.binary_dilation(square[positive][0], iterations=4).mean() < 0.1  # the region is small
    assert min(on_square) > 0.5, on_square
    assert max(on_bar) < 0.1, on_bar


def test_compute_cams_works_under_no_grad_and_rejects_bad_inputs():
    model = _model("smallcnn")
    images, tab = _inputs()
    with torch.no_grad():
        cams = ex.compute_cams(model, images, tab, 1)
    assert cams.shape == (2, SIZE, SIZE)
    with pytest.raises(ValueError, match="unknown CAM method"):
        ex.compute_cams(model, images, tab, 1, method="magic")
    with pytest.raises(ValueError, match="target classes"):
        ex.compute_cams(model, images, tab, [1, 0, 1])
    with pytest.raises(ValueError, match="tabular"):
        ex.compute_cams(model, images, None, 1)


def test_compute_cams_uses_each_patients_own_clinical_row():
    model = _model("smallcnn")
    images, tab = _inputs(n=3, seed=1)
    batched = ex.compute_cams(model, images, tab, [1, 1, 0], batch_size=2)
    single = np.concatenate([ex.compute_cams(model, images[i:i + 1], tab[i], c)
                             for i, c in enumerate([1, 1, 0])])
    np.testing.assert_allclose(batched, single, atol=1e-4)
    flipped = ex.compute_cams(model, images, tab, [0, 0, 1], batch_size=2)
    assert np.abs(flipped - batched).max() > 1e-3  # the target class matters


# --------------------------------------------------------------------------- masks and energy


def _rectangle_image(size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = 0.1 + 0.03 * rng.standard_normal((size, size))
    rect = np.zeros((size, size), dtype=bool)
    rect[16:48, 20:44] = True
    img[rect] = 0.8 + 0.03 * rng.standard_normal(rect.sum())
    return img, rect


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_border_mask_band_and_corners():
    border = ex.border_mask((50, 100), margin_fraction=0.1)
    assert border[:5].all() and border[-5:].all() and border[:, :5].all() and border[:, -5:].all()
    assert not border[5:-5, 5:-5].any()
    assert not ex.border_mask((10, 10), 0).any()


def test_bone_mask_finds_bright_rectangle_in_uint8_and_float():
    img, rect = _rectangle_image()
    assert _iou(ex.bone_mask(img), rect) > 0.9
    u8 = np.clip(img * 255, 0, 255).astype(np.uint8)
    assert _iou(ex.bone_mask(u8), rect) > 0.9
    assert not ex.bone_mask(np.zeros((32, 32))).any()


@pytest.mark.parametrize("background", ["letterbox", "air"])
def test_bone_mask_splits_bone_from_soft_tissue(background):
    """Three populations: the mask must keep bone only, not the whole leg."""
    rng = np.random.default_rng(2)
    size = 96
    if background == "letterbox":  # exact-zero padding, 50 % of the frame
        img, leg = np.zeros((size, size)), slice(24, 72)
    else:  # noisy air, 40 %: Otsu's first split is air vs leg, so the leg must be split again
        img, leg = 0.05 + 0.02 * rng.standard_normal((size, size)), slice(19, 77)
    img[:, leg] = 0.45 + 0.02 * rng.standard_normal((size, leg.stop - leg.start))
    bone = np.zeros_like(img, dtype=bool)
    bone[12:44, 30:66] = True
    bone[52:86, 32:64] = True
    img[bone] = 0.8 + 0.02 * rng.standard_normal(bone.sum())
    assert _iou(ex.bone_mask(img), bone) > 0.85


def test_cam_energy_inside_bone_vs_in_corner():
    img, rect = _rectangle_image()
    bone = ex.bone_mask(img)
    border = ex.border_mask(img.shape)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inside = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 4.0 ** 2)) * rect
    corner = np.zeros_like(inside)
    corner[:4, :4] = 1.0
    e_in, e_corner = ex.cam_energy(inside, bone, border), ex.cam_energy(corner, bone, border)
    assert e_in["bone_share"] > 0.99 and e_in["border_share"] < 0.01
    assert e_corner["border_share"] > 0.99 and e_corner["bone_share"] < 0.01
    for e in (e_in, e_corner):
        assert sum(e.values()) == pytest.approx(1.0)
    # border takes precedence: a bone mask reaching into the border does not claim border energy
    everywhere = ex.cam_energy(corner, np.ones_like(bone), border)
    assert everywhere["border_share"] == pytest.approx(1.0) and everywhere["bone_share"] == 0.0
    assert np.isnan(ex.cam_energy(np.zeros_like(inside), bone, border)["bone_share"])


def test_where_it_looks_flags_and_summary():
    img, rect = _rectangle_image()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    inside = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 32.0) * rect
    corner = np.zeros_like(inside)
    corner[-4:, -4:] = 1.0
    cams = np.stack([inside, corner, inside, np.zeros_like(inside)])
    images = torch.as_tensor(np.stack([img] * 4), dtype=torch.float32).unsqueeze(1)
    meta = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "class": [0, 1, 0, 1], "batch": ["x", "x", "y", "y"]},
                        index=[10, 11, 12, 13])
    df = ex.where_it_looks(cams, images, meta)
    assert list(df["patient_id"]) == ["a", "b", "c", "d"]
    assert list(df["flag_border"]) == [False, True, False, True]
    assert list(df["flag_reason"]) == ["", "border+off-bone", "", "empty-cam"]
    np.testing.assert_allclose(df[list(ex.SHARE_COLUMNS)].iloc[:3].sum(axis=1), 1.0)
    summary = ex.summarise_where(df, by="class")
    assert summary.loc[0, "bone_share_mean"] > 0.99 and summary.loc[1, "border_share_mean"] > 0.99
    assert summary.loc[0, "flag_rate"] == 0.0 and summary.loc[1, "flag_rate"] == 1.0
    assert summary.loc[0, "bone_share_iqr"] == pytest.approx(0.0, abs=1e-9)
    by_two = ex.summarise_where(df, by=["class", "batch"])
    assert by_two["n"].sum() == 4


def test_cam_gallery_and_overlay_figures():
    img, rect = _rectangle_image()
    cams = np.stack([rect * 1.0] * 3)
    fig = ex.cam_gallery(np.stack([img] * 3), cams, titles=["a", "b", "c"], ncols=2, masks=np.stack([rect] * 3))
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3 and panels[0].get_title() == "a"
    assert len(panels[0].images) == 2  # radiograph + CAM layer
    assert ex.cam_gallery is ex.figures.cam_gallery and ex.overlay is ex.figures.overlay  # re-exported, not copied


# --------------------------------------------------------------------------- SHAP

GROUP_NAMES = ["categorical__sex_female", "categorical__sex_male", "numeric__age_years",
               "numeric_missing__missingindicator_pregnancies", "numeric_missing__pregnancies"]


def test_group_shap_sums_one_hot_and_indicator_columns():
    import shap

    values = np.array([[0.1, 0.2, 0.5, -0.3, 0.05],
                       [-0.4, 0.0, 1.0, 0.25, 0.25]])
    data = np.array([[1.0, 0.0, 0.3, 0.0, 1.2],
                     [0.0, 1.0, -0.7, 1.0, 0.0]])
    grouped = ex.group_shap((values, data), GROUP_NAMES)
    assert grouped.feature_names == ["sex", "age_years", "pregnancies"]
    np.testing.assert_allclose(grouped.values, [[0.3, 0.5, -0.25], [-0.4, 1.0, 0.5]])
    np.testing.assert_allclose(grouped.values.sum(axis=1), values.sum(axis=1))
    np.testing.assert_allclose(grouped.data[:, 1:], [[0.3, 1.2], [-0.7, 0.0]])
    assert np.isnan(grouped.data[:, 0]).all()
    assert list(grouped.display_data[:, 0]) == ["female", "male"]
    expl = shap.Explanation(values=values[..., None].repeat(2, axis=2), base_values=np.zeros((2, 2)), data=data,
                            feature_names=GROUP_NAMES)
    multi = ex.group_shap(expl)
    assert multi.values.shape == (2, 3, 2)
    np.testing.assert_allclose(multi.values[..., 1], grouped.values)


def test_shap_values_tabular_is_exact_for_a_linear_model_and_reproducible():
    rng = np.random.default_rng(0)
    w = np.array([2.0, -1.0, 0.0, 0.5])
    X_bg, X = rng.normal(size=(80, 4)), rng.normal(size=(3, 4))
    f = lambda A: A @ w + 0.3  # noqa: E731
    state = np.random.get_state()
    expl = ex.shap_values_tabular(f, X_bg, X, ["a", "b", "c", "d"], n_samples=64, seed=1, max_background=30)
    assert np.array_equal(np.random.get_state()[1], state[1])  # caller's random state untouched
    assert expl.values.shape == (3, 4)
    np.testing.assert_allclose(expl.values.sum(axis=1) + expl.base_values, f(X), atol=1e-8)
    sub = X_bg[np.sort(np.random.default_rng(1).choice(80, 30, replace=False))]
    np.testing.assert_allclose(expl.values, w * (X - sub.mean(axis=0)), atol=1e-6)
    again = ex.shap_values_tabular([f, f, f], X_bg, X, ["a", "b", "c", "d"], n_samples=64, seed=1,
                                   max_background=30)
    np.testing.assert_allclose(again.values, expl.values, atol=1e-8)
    with pytest.raises(ValueError, match="too low"):
        ex.shap_values_tabular(f, X_bg, X, ["a", "b", "c", "d"], n_samples=3)


def test_tabular_predict_fn_matches_fusion_model():
    model = _model("smallcnn")
    images, tab = _inputs()
    f = ex.tabular_predict_fn(model, images[0], class_index=1)
    with torch.no_grad():
        expected = torch.softmax(model(images[:1].expand(2, -1, -1, -1), tab), 1)[:, 1].numpy()
    np.testing.assert_allclose(f(tab.numpy()), expected, atol=1e-6)
    assert ex.tabular_predict_fn(model, images[0], class_index=None)(tab.numpy()).shape == (2, 2)


def test_shap_figures_are_returned_closed():
    rng = np.random.default_rng(0)
    values, data = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    data[:, :2] = np.eye(2)[rng.integers(0, 2, 6)]
    grouped = ex.group_shap((values, data), GROUP_NAMES)
    grouped.base_values = np.zeros(6)
    before = plt.get_fignums()
    for fig in (ex.shap_summary_figure(grouped), ex.shap_bar_figure(grouped), ex.shap_waterfall_figure(grouped, 0)):
        assert isinstance(fig, Figure) and fig.axes
    assert plt.get_fignums() == before
    assert ex.shap_summary_figure is ex.figures.shap_summary_figure
    table = ex.shap_importance(grouped)
    assert table["mean_abs_shap"].is_monotonic_decreasing and len(table) == 3


# --------------------------------------------------------------------------- permutation importance


def _logistic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    age = rng.normal(size=n)
    sex = rng.integers(0, 2, n)
    X = np.column_stack([rng.normal(size=n), age, np.eye(2)[sex]])
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * age))).astype(int)
    return X, y, ["numeric__bmi", "numeric__age_years", "categorical__sex_female", "categorical__sex_male"]


def test_permutation_importance_finds_the_informative_feature():
    X, y, names = _logistic()
    result = ex.permutation_importance_grouped(lambda A: roc_auc_score(y, A[:, 1]), X, names, n_repeats=5, seed=0)
    assert list(result["feature"])[0] == "age_years"
    assert result.iloc[0]["mean_drop"] > 0.2
    rest = result.set_index("feature").loc[["bmi", "sex"]]
    assert (rest["mean_drop"].abs() < 1e-12).all()
    assert result.set_index("feature").loc["sex", "n_columns"] == 2


def test_batched_scoring_sees_the_same_matrices_in_the_same_order(monkeypatch):
    monkeypatch.setattr(ex.tabular, "SCORE_BATCH", 5)
    X, y, names = _logistic()
    one_at_a_time = ex.permutation_importance_grouped(lambda A: roc_auc_score(y, A[:, 1]), X, names, n_repeats=4,
                                                      seed=3)
    seen: list[np.ndarray] = []
    calls: list[int] = []

    def scores(matrices: list[np.ndarray]) -> list[float]:
        seen.extend(matrices)
        calls.append(len(matrices))
        return [roc_auc_score(y, A[:, 1]) for A in matrices]

    batched = ex.permutation_importance_grouped(scores, X, names, n_repeats=4, seed=3, batched=True)
    pd.testing.assert_frame_equal(one_at_a_time, batched, check_exact=True)
    assert len(seen) == 1 + 3 * 4 and np.array_equal(seen[0], X)  # the unpermuted matrix first, then 3 features
    assert calls == [5, 5, 3]


def test_permutation_importance_shuffles_one_hot_columns_jointly():
    X, _, names = _logistic()
    valid = lambda A: float(np.all(A[:, 2] + A[:, 3] == 1))  # noqa: E731 - 1 while every row has one level
    result = ex.permutation_importance_grouped(valid, X, names, n_repeats=3, seed=1)
    assert (result["mean_drop"] == 0).all()


def test_rank_comparison_and_spearman():
    shap_df = pd.DataFrame({"feature": ["a", "b", "c", "d"], "mean_abs_shap": [0.4, 0.3, 0.2, 0.1]})
    perm_df = pd.DataFrame({"feature": ["b", "a", "c", "e"], "mean_drop": [0.2, 0.1, 0.05, 0.01]})
    table = ex.rank_comparison(shap_df, perm_df)
    row = table.set_index("feature")
    assert list(table["feature"][:4]) == ["a", "b", "c", "d"]
    assert row.loc["a", "shap_rank"] == 1 and row.loc["a", "perm_rank"] == 2 and row.loc["a", "rank_diff"] == -1
    assert np.isnan(row.loc["d", "perm_rank"]) and np.isnan(row.loc["e", "shap_rank"])
    rho, n = ex.rank_spearman(table)
    assert n == 3 and rho == pytest.approx(0.5)


def test_where_text_counts_flagged_maps_per_batch_in_words():
    where = pd.DataFrame({"bone_share": [0.1, 0.5, 0.2, 0.6], "border_share": [0.5, 0.1, 0.4, 0.1],
                          "flag_border": [True, False, True, False], "batch": ["rgb-1k", "rgb-1k", "gray", "gray"]})
    text = ex.where_text(where)
    assert text.endswith("2 of 4 maps (50%) are flagged (border-dominated or off the bone); by batch: gray 1 of 2, "
                         "rgb-1k 1 of 2.")
    assert "{" not in text and "by batch" not in ex.where_text(where.assign(flag_border=False))


def test_a_person_with_several_images_is_shuffled_and_scored_as_one():
    """Issue 28: permutation importance shuffles units (a person's images keep one record) and `row_scores` gives
    every image its person's out-of-fold score."""
    X, y, names = _logistic(n=12)
    units = np.repeat([f"P{i}" for i in range(6)], 2)
    X[:, 0] = np.repeat(np.arange(6.0), 2)  # one bmi per person

    def one_value_per_person(A: np.ndarray) -> float:
        return float(pd.Series(A[:, 0]).groupby(units).nunique().max() == 1)

    result = ex.permutation_importance_grouped(one_value_per_person, X, names, n_repeats=3, seed=1, units=units)
    assert (result["mean_drop"] == 0).all() and (result["baseline"] == 1).all()
    cohort = pd.DataFrame({"patient_id": ["a1", "a2", "b1"], "person_id": ["A", "A", "B"]})
    oof = pd.DataFrame({"patient_id": ["A", "B", "A", "B"], "seed": [0, 0, 1, 1], "prob_normal": [0.3, 0.6, 0.5, 0.5],
                        "prob_low_bmd": [0.7, 0.4, 0.5, 0.5]})
    np.testing.assert_array_equal(ex.row_scores(oof, cohort, 0), [0.7, 0.7, 0.4])


def test_explanations_that_cannot_be_estimated_say_so():
    """Grad-CAM maps that are empty everywhere (a 1 x 1 last feature map) have no share on bone, and two rankings of
    constant importance no correlation: the page says so instead of printing nan."""
    import shap

    where = pd.DataFrame({"bone_share": np.nan, "border_share": np.nan, "flag_border": False, "batch": ["a", "b"]})
    assert ex.where_text(where).startswith("**Where the model looks is not estimable on this run:** all 2 Grad-CAM")
    shap_values = shap.Explanation(values=np.zeros((3, 2)), data=np.zeros((3, 2)), feature_names=["age_years", "sex"])
    perm = pd.DataFrame({"feature": ["age_years", "sex"], "mean_drop": [0.0, 0.0], "std_drop": 0.0})
    ranks = ex.rank_comparison(ex.shap_importance(shap_values), perm)
    text = ex.reliance_text(shap_values, perm, ranks, where)
    assert "cannot be correlated" in text and "every Grad-CAM map is empty" in text and "nan" not in text
