"""Tests of osteo_helpers.biomarkers on synthetic images drawn here (no real data).

Tolerances (stated once, used below):
* joint line: within 3 % of the image height of the drawn joint-gap centre;
* plateau width: within 10 % of the drawn width;
* ROI boxes: every pixel inside the drawn bone;
* cortical thickness (1-D projected tube and 2-D drawn shaft): within 1.5 px;
  cortical index within 0.04 (the outer diameter is biased ~3 px low by the
  gradient-extremum edge on a blurred projected tube);
* joint-space width: within 2 px of the drawn gap;
* fractal dimension: filled square 2 +- 0.05, straight line 1 +- 0.05;
* texture features: invariant to a*img + b (a > 0) to 1e-9 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from osteo_helpers import biomarkers as B
from osteo_helpers.biomarkers import cohort as bio_cohort
from osteo_helpers.data import ImageReadError
from osteo_helpers.images import load_grayscale

BG, SOFT, BONE = 0.05, 0.35, 0.75


def _halfwidths(y: np.ndarray, jy: float, W: float, gap: float):
    """Half-widths of femur and tibia (0 where absent) for rows y."""
    fem = np.zeros_like(y, dtype=float)
    tib = np.zeros_like(y, dtype=float)
    top = jy - gap / 2
    bot = jy + gap / 2
    # femur: shaft 0.22 W, flares to 0.5 W between 0.6 W and 0.15 W above the joint
    m = y < top
    t = np.clip((y - (jy - 0.6 * W)) / (0.45 * W), 0, 1)
    fem[m] = (0.22 + (0.5 - 0.22) * t[m]) * W
    # tibia: plateau 0.5 W down to 0.2 W below the joint, tapers to 0.2 W at 0.7 W
    m = y > bot
    t = np.clip((y - (jy + 0.2 * W)) / (0.5 * W), 0, 1)
    tib[m] = (0.5 - (0.5 - 0.2) * t[m]) * W
    return fem, tib


def draw_knee(img: np.ndarray, cx: float, jy: float, W: float, gap: float | None = None,
              bone_mask: np.ndarray | None = None, cortex: float | None = None) -> None:
    """Draw one AP knee into img (in place): soft tissue 1.5 W wide, femur
    and tibia bands (bright) separated by a dark joint gap at row jy.  Shafts
    get a darker medullary canal when ``cortex`` (px) is given."""
    H, Wimg = img.shape
    gap = 0.06 * W if gap is None else gap
    yy, xx = np.mgrid[0:H, 0:Wimg].astype(float)
    soft = np.abs(xx - cx) < 0.75 * W
    img[soft] = SOFT
    fem, tib = _halfwidths(np.arange(H, dtype=float), jy, W, gap)
    hw = np.maximum(fem, tib)[:, None]
    bone = np.abs(xx - cx) < hw
    img[bone] = BONE
    if cortex is not None:
        canal = (np.abs(xx - cx) < hw - cortex) & (hw <= 0.25 * W)
        img[canal] = 0.6
    if bone_mask is not None:
        bone_mask |= bone


def synthetic_knees(centres=(250,), joints=(270,), W=200, H=600, Wimg=500, noise=0.01, seed=0,
                    cortex: float | None = None):
    rng = np.random.default_rng(seed)
    img = np.full((H, Wimg), BG)
    mask = np.zeros((H, Wimg), bool)
    for cx, jy in zip(centres, joints, strict=False):
        draw_knee(img, cx, jy, W, bone_mask=mask, cortex=cortex)
    img = ndi.gaussian_filter(img, 1.0) + noise * rng.standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32), mask


def _box_in_mask(box, mask) -> float:
    y0, x0, y1, x1 = box
    return float(mask[y0:y1, x0:x1].mean())


# ---------------------------------------------------------------------------
# localisation
# ---------------------------------------------------------------------------
def test_single_knee_joint_line_width_and_rois():
    img, mask = synthetic_knees()
    dets = B.localise_knees(img)
    assert len(dets) == 1
    d = dets[0]
    assert d.side == "single"
    assert abs(d.joint_line_y - 270) <= 0.03 * img.shape[0]
    assert abs(d.plateau_width - 200) <= 0.10 * 200
    assert abs(d.centre_x - 250) <= 0.05 * 200
    assert d.x0 < 250 < d.x1
    # ROIs: femur above, tibia below the joint, entirely in bone
    assert d.femur_roi[2] < d.joint_line_y < d.tibia_roi[0]
    assert _box_in_mask(d.femur_roi, mask) == 1.0
    assert _box_in_mask(d.tibia_roi, mask) == 1.0
    # ROI side is the stated fraction of the plateau width
    assert abs((d.tibia_roi[2] - d.tibia_roi[0]) - B.ROI_SIDE_FRAC * d.plateau_width) <= 1
    assert 0.0 < d.score <= 1.0


def test_two_knees_side_by_side_with_different_joint_rows():
    img, mask = synthetic_knees(centres=(250, 750), joints=(260, 300), Wimg=1000)
    res = B.detect_knees(img)
    assert res.failures == []
    assert [d.side for d in res.detections] == ["left", "right"]
    left, right = res.detections
    assert left.centre_x < 500 < right.centre_x
    assert abs(left.joint_line_y - 260) <= 0.03 * img.shape[0]
    assert abs(right.joint_line_y - 300) <= 0.03 * img.shape[0]
    for d in res.detections:
        assert _box_in_mask(d.femur_roi, mask) == 1.0
        assert _box_in_mask(d.tibia_roi, mask) == 1.0


def test_landscape_rgb_uint8_and_markers():
    """A wide RGB uint8 image with a burned-in bright marker square in the air."""
    img, mask = synthetic_knees(centres=(300,), joints=(330,), H=700, Wimg=1100)
    img[60:110, 900:950] = 1.0  # marker
    rgb = np.repeat((img * 255).astype(np.uint8)[..., None], 3, axis=2)
    dets = B.localise_knees(rgb)
    assert len(dets) == 1
    assert abs(dets[0].joint_line_y - 330) <= 0.03 * 700
    assert _box_in_mask(dets[0].tibia_roi, mask) == 1.0


def test_inverted_image_is_detected_and_flagged():
    img, _ = synthetic_knees()
    res = B.detect_knees(1.0 - img)
    assert res.inverted
    assert len(res.detections) == 1
    d = res.detections[0]
    assert d.inverted
    assert abs(d.joint_line_y - 270) <= 0.03 * img.shape[0]
    # the negative holds the same picture, so it is localised identically, and its ROIs are
    # flipped back: identical to the positive's
    pos = B.localise_knees(img)[0]
    assert (d.femur_roi, d.tibia_roi) == (pos.femur_roi, pos.tibia_roi)
    r_neg = B.extract_rois(1.0 - img, d, size=None)
    r_pos = B.extract_rois(img, pos, size=None)
    for name in ("femur_trabecular", "tibia_trabecular"):
        np.testing.assert_allclose(r_neg[name], r_pos[name], atol=1e-6)


def test_no_bone_gives_failure_with_reason():
    with pytest.raises(B.KneeLocalisationError) as exc:
        B.localise_knees(np.zeros((400, 400), np.float32))
    assert "no bone" in exc.value.reason

    # soft tissue only (a leg without bones): no joint line / no bone
    rng = np.random.default_rng(1)
    img = np.full((600, 500), BG)
    img[:, 100:400] = SOFT
    img = ndi.gaussian_filter(img, 1.0) + 0.01 * rng.standard_normal(img.shape)
    res = B.detect_knees(img.astype(np.float32))
    assert res.detections == []
    assert res.failures and all(isinstance(r, str) and r for r in res.failures)
    with pytest.raises(B.KneeLocalisationError):
        B.localise_knees(img)


def test_cut_off_tibia_is_rejected_not_cropped_wrongly():
    """Joint near the bottom edge: the tibial ROI would leave the image."""
    img, _ = synthetic_knees(joints=(560,), H=600)
    res = B.detect_knees(img)
    assert res.detections == []
    assert any("tibial ROI" in r or "joint" in r or "plateau" in r for r in res.failures)


# ---------------------------------------------------------------------------
# ROIs, joint space
# ---------------------------------------------------------------------------
def test_extract_rois_shapes_and_native():
    img, _ = synthetic_knees()
    d = B.localise_knees(img)[0]
    rois = B.extract_rois(img, d, size=64)
    assert set(rois) == {"femur_trabecular", "tibia_trabecular"}
    assert all(r.shape == (64, 64) and r.dtype == np.float32 for r in rois.values())
    native = B.extract_rois(img, d, size=None)
    y0, x0, y1, x1 = d.tibia_roi
    assert native["tibia_trabecular"].shape == (y1 - y0, x1 - x0)
    assert float(native["tibia_trabecular"].mean()) == pytest.approx(BONE, abs=0.05)


def test_joint_space_width_of_drawn_gap():
    gap = 14.0
    img = np.full((600, 500), BG)
    draw_knee(img, 250, 270, 200, gap=gap)
    img = ndi.gaussian_filter(img, 1.0).astype(np.float32)
    d = B.localise_knees(img)[0]
    jsw = B.joint_space_width(img, d)
    assert abs(jsw - gap) <= 2.0
    left, right = B.joint_space_widths(img, d)
    assert abs(left - gap) <= 2.0 and abs(right - gap) <= 2.0


# ---------------------------------------------------------------------------
# cortical thickness
# ---------------------------------------------------------------------------
def tube_profile(n=200, c=100.3, R=40.0, r=28.0, blur=1.5, noise=0.01, soft=0.2, seed=0):
    """Projection of a cortical tube (outer radius R, inner r) through soft
    tissue: path length through bone, blurred, plus noise."""
    x = np.arange(n) - c
    L = 2 * np.sqrt(np.clip(R**2 - x**2, 0, None)) - 2 * np.sqrt(np.clip(r**2 - x**2, 0, None))
    p = soft * np.clip(1 - np.abs(x) / (0.9 * n / 2), 0, None) + L / (2 * R)
    p = ndi.gaussian_filter1d(p, blur)
    return p + noise * np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("R,r", [(40.0, 28.0), (40.0, 34.0), (30.0, 15.0), (60.0, 45.0)])
def test_cortical_thickness_of_projected_tube(R, r):
    res = B.cortical_thickness(tube_profile(n=int(3 * R + 60), c=1.5 * R + 30.3, R=R, r=r), smooth=1.0)
    assert res["ok"], res["reason"]
    assert abs(res["cortical_thickness"] - (R - r)) <= 1.5
    assert abs(res["cortical_index"] - (R - r) / R) <= 0.04
    assert res["outer_left"] < res["inner_left"] < res["inner_right"] < res["outer_right"]


def test_cortical_thickness_on_2d_drawn_shaft():
    R, r, cx = 45.0, 32.0, 160.2
    H, Wd = 120, 320
    x = np.arange(Wd) - cx
    L = 2 * np.sqrt(np.clip(R**2 - x**2, 0, None)) - 2 * np.sqrt(np.clip(r**2 - x**2, 0, None))
    img = np.tile(0.3 + 0.5 * L / (2 * R), (H, 1))
    rng = np.random.default_rng(3)
    img = ndi.gaussian_filter(img, 1.2) + 0.01 * rng.standard_normal(img.shape)
    prof = B.shaft_profile(img, row=60, x0=60, x1=260, half_rows=4)
    assert prof.shape == (200,)
    res = B.cortical_thickness(prof, smooth=1.0)
    assert res["ok"], res["reason"]
    assert abs(res["cortical_thickness"] - (R - r)) <= 1.5
    assert abs(res["cortical_index"] - (R - r) / R) <= 0.04
    assert abs((res["outer_left"] + res["outer_right"]) / 2 + 60 - cx) <= 1.5


def test_cortical_thickness_rejects_profiles_without_shaft():
    assert not B.cortical_thickness(np.full(100, 0.5))["ok"]
    # a solid rod (no medullary canal) has no inner edges
    x = np.arange(200) - 100.0
    rod = np.sqrt(np.clip(40.0**2 - x**2, 0, None)) / 40.0
    res = B.cortical_thickness(ndi.gaussian_filter1d(rod, 1.5))
    assert not res["ok"] and res["reason"]
    assert math.isnan(res["cortical_thickness"])


# ---------------------------------------------------------------------------
# texture
# ---------------------------------------------------------------------------
def _texture(seed=0, n=128, sigma=2.0):
    rng = np.random.default_rng(seed)
    t = ndi.gaussian_filter(rng.standard_normal((n, n)), sigma)
    yy = np.linspace(0, 1, n)[:, None]
    return (0.5 + 0.1 * t / t.std() + 0.2 * yy).astype(np.float64)  # texture + trend


def test_box_counting_dimension_square_and_line():
    sq = np.zeros((256, 256), bool)
    sq[64:192, 64:192] = True
    assert abs(B.box_counting_dimension(sq) - 2.0) <= 0.05
    line = np.zeros((256, 256), bool)
    line[100, 10:246] = True
    assert abs(B.box_counting_dimension(line) - 1.0) <= 0.05
    diag = np.eye(256, dtype=bool)
    assert abs(B.box_counting_dimension(diag) - 1.0) <= 0.05
    assert math.isnan(B.box_counting_dimension(np.zeros((64, 64), bool)))


def test_lacunarity_homogeneous_vs_clustered():
    full = np.ones((64, 64), bool)
    assert B.lacunarity(full, 8) == pytest.approx(1.0)
    clustered = np.zeros((64, 64), bool)
    clustered[:16, :16] = True
    assert B.lacunarity(clustered, 8) > 2.0


def test_texture_features_invariant_to_linear_intensity_change():
    roi = _texture()
    f1 = B.texture_features(roi)
    f2 = B.texture_features(3.7 * roi + 12.5)
    assert f1.keys() == f2.keys()
    expected = {f"glcm_{p}_d{d}" for p in ("contrast", "homogeneity", "energy", "correlation")
                for d in (1, 2, 4)}
    assert expected <= f1.keys()
    assert {"lbp_r1_entropy", "lbp_r2_entropy", "fd_binary", "fd_skeleton", "lac_b8"} <= f1.keys()
    for k in f1:
        assert f2[k] == pytest.approx(f1[k], rel=1e-9, abs=1e-12), k
    assert 1.0 < f1["fd_skeleton"] < 2.0
    # ... yet the features do respond to the texture itself
    f3 = B.texture_features(_texture(sigma=5.0))
    assert f3["glcm_contrast_d1"] < 0.7 * f1["glcm_contrast_d1"]
    assert f3["glcm_correlation_d1"] > f1["glcm_correlation_d1"]


# ---------------------------------------------------------------------------
# integration: loading, knee / image features, QA drawing
# ---------------------------------------------------------------------------
def test_load_grayscale_rgb_and_unreadable(tmp_path):
    from PIL import Image

    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    p = tmp_path / "K1.png"
    Image.fromarray(rgb).save(p)
    g = load_grayscale(p)
    assert g.dtype == np.float32 and g.shape == (40, 50)
    assert float(g[0, 0]) == pytest.approx((0.299 * 200 + 0.587 * 100) / 255, abs=1e-6)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        load_grayscale(bad)


def test_knee_and_image_features(tmp_path):
    from PIL import Image

    img, _ = synthetic_knees(centres=(250, 750), joints=(260, 290), Wimg=1000, H=800,
                             noise=0.03, cortex=12.0)
    p = tmp_path / "P7.png"
    Image.fromarray((img * 255).astype(np.uint8)).save(p)
    df, failures = B.image_features(p, "P7")
    assert failures == []
    assert len(df) == 2
    assert list(df["knee"]) == ["left", "right"]
    assert (df["patient_id"] == "P7").all()
    assert "tibia_glcm_contrast_d1" in df and "femur_fd_skeleton" in df
    assert "jsw_mean" in df and "tibia_cort_index" in df
    # lengths are scale-free: divided by the plateau width
    assert df["jsw_mean"].between(0.02, 0.12).all()
    # drawn tibial cortex 12 px on a ~200 px plateau
    ok = df["tibia_cort_thickness"].dropna()
    assert len(ok) >= 1
    assert (abs(ok * df.loc[ok.index, "qa_plateau_width_px"] - 12.0) <= 3.0).all()
    df2, failures2 = B.image_features(tmp_path / "missing.jpg", "X")
    assert df2.empty and failures2 and "missing.jpg" in failures2[0]


def test_draw_detections_draws_boxes_and_lines():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, _ = synthetic_knees(centres=(250, 750), joints=(260, 300), Wimg=1000)
    dets = B.localise_knees(img)
    fig, ax = plt.subplots()
    B.draw_detections(ax, img, dets)
    assert len(ax.patches) == 2 * len(dets)
    assert len(ax.lines) >= 4 * len(dets)
    plt.close(fig)


def test_cohort_biomarkers_cache_status_rois_and_qa(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from PIL import Image

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    two, _ = synthetic_knees(centres=(250, 750), joints=(260, 290), Wimg=1000, H=800, noise=0.03, cortex=12.0)
    one, _ = synthetic_knees(noise=0.02, seed=1)
    Image.fromarray((two * 255).astype(np.uint8)).save(data_dir / "a.png")
    Image.fromarray((one * 255).astype(np.uint8)).save(data_dir / "b.png")
    Image.fromarray(np.full((300, 300), 20, np.uint8)).save(data_dir / "blank.png")
    (data_dir / "broken.jpg").write_bytes(b"not an image")
    cohort = pd.DataFrame({"patient_id": ["A", "B", "C", "D"],
                           "image_path": ["a.png", "b.png", "blank.png", "broken.jpg"],
                           "image_sha256": ["sa", "sb", "sc", "sd"], "batch": ["x", "y", "x", "y"]})
    cache = tmp_path / "cache"
    bio = B.cohort_biomarkers(cohort, data_dir, roi_size=32, cache=cache, progress=False)
    st = bio.status.set_index("patient_id")
    assert list(st.index) == ["A", "B", "C", "D"]  # every image has a status row
    assert list(st["status"]) == ["localised", "localised", "failed", "failed"]
    assert list(st["n_knees"]) == [2, 1, 0, 0]
    assert st.at["C", "reason"] and "broken.jpg" in st.at["D", "reason"]
    assert list(bio.knees["patient_id"]) == ["A", "A", "B"] and list(bio.knees["side"]) == ["left", "right", "single"]
    assert bio.rois.shape == (3, 64, 32) and bio.rois.dtype == np.uint8
    assert bio.rois.std() > 5  # percentile-normalised texture, not a blank tile
    assert bio.localised_ids == {"A", "B"}
    assert not [c for c in bio.feature_columns if c.startswith("qa_")] and "tibia_fd_binary" in bio.feature_columns
    pat = bio.patients().set_index("patient_id")
    assert list(pat.index) == ["A", "B"] and pat.at["A", "n_knees"] == 2
    assert pat.at["A", "jsw_mean"] == pytest.approx(bio.knees.loc[bio.knees.patient_id == "A", "jsw_mean"].mean())
    assert len(list((cache / f"biomarkers-v{B.BIOMARKER_CACHE_VERSION}-roi32").glob("*.npz"))) == 4
    assert not list(cache.rglob("*.tmp"))

    # the second run reads the cache: no image is decoded or analysed again
    def boom(*a, **k):
        raise AssertionError("cache not used")

    monkeypatch.setattr(bio_cohort, "process_image", boom)
    again = B.cohort_biomarkers(cohort, data_dir, roi_size=32, cache=cache, progress=False)
    pd.testing.assert_frame_equal(again.knees, bio.knees)
    np.testing.assert_array_equal(again.rois, bio.rois)
    assert again.qa[0].detections[0].tibia_roi == bio.qa[0].detections[0].tibia_roi
    # another ROI size is another cache key; limit marks the rest as skipped
    monkeypatch.undo()
    small = B.cohort_biomarkers(cohort, data_dir, roi_size=16, cache=cache, limit=1, progress=False)
    assert small.rois.shape == (2, 32, 16) and list(small.status["status"]) == ["localised"] + ["skipped"] * 3
    only_processed = B.qa_sheets(small, per_page=1)
    assert len(only_processed) == 1  # skipped images get no QA panel
    plt.close(only_processed[0])
    with pytest.raises(ValueError, match="dataset folder"):
        B.cohort_biomarkers(cohort, data_dir, roi_size=32, cache=data_dir / "cache", progress=False)

    figs = B.qa_sheets(bio, per_page=3, ncols=3)
    assert len(figs) == 2
    texts = [t.get_text() for ax in figs[1].axes for t in ax.texts]
    assert any("broken.jpg" in t for t in texts)  # the failure reason is written on the panel
    boxes = [p for ax in figs[0].axes for p in ax.patches]
    assert len(boxes) == 2 * 3  # two ROIs per localised knee, on the thumbnails
    thumb_w = bio.qa[0].thumbnail.shape[1]
    assert all(0 <= p.get_x() <= thumb_w for p in boxes)
    for f in figs:
        plt.close(f)


def test_limit_takes_every_class_in_its_share_even_when_the_cohort_is_not_sorted():
    # the real spreadsheet's order: long runs of one class, the rare class at one end
    cohort = pd.DataFrame({"diagnosis": ["osteopenia"] * 150 + ["osteoporosis"] * 50 + ["normal"] * 36})
    picked = cohort.loc[sorted(bio_cohort._evenly_spaced(cohort, 45)), "diagnosis"].value_counts()
    assert len(bio_cohort._evenly_spaced(cohort, 45)) == 45
    assert picked.to_dict() == pytest.approx({"osteopenia": 29, "osteoporosis": 9, "normal": 7}, abs=1)
    assert bio_cohort._evenly_spaced(cohort, None) == set(range(len(cohort)))


# ----------------------------------------------------------------------------- what a small cohort cannot estimate


def test_biomarker_analyses_a_small_cohort_cannot_estimate_say_so():
    """Issue 28: on a small cohort a few knees are localised: the age screen has no biomarker with enough
    patients, the batch cannot be predicted where a training fold's images come from one batch, and the paired
    comparisons have no two patients of each class; each page says so in a sentence instead of stopping."""
    from osteo_helpers import biomarker_analysis as bm
    from osteo_helpers import splits

    cohort = pd.DataFrame({"patient_id": [f"P{i}" for i in range(12)], "age_years": np.arange(40, 64, 2),
                           "label_binary": [0, 1] * 6, "label_3class": [0, 2] * 6, "batch": ["a"] * 11 + ["b"]})
    patients = cohort[["patient_id"]].assign(tibia_fd_binary=np.linspace(1.2, 1.6, 12))
    table = bm.biomarker_age_table(patients.head(6), cohort, ["tibia_fd_binary"])
    assert table.empty and list(table.columns)[:2] == ["feature", "n"]
    assert bm.age_screen_text(table).startswith("**The biomarkers' relation to age is not estimable on this cohort:**")
    rows = cohort.assign(biomarker_localised=True, bio_tibia_fd_binary=patients["tibia_fd_binary"])
    folds = splits.make_folds(cohort.assign(split_group=cohort["patient_id"]), "label_3class", 2, 1, seed=0)
    metrics, oof = bm.predict_batch(rows, folds, 10, 0)  # batch b: one patient, so one fold trains on batch a only
    assert 0 < oof["patient_id"].nunique() <= 6
    assert bm.batch_screen(patients, cohort.set_index("patient_id")["batch"].map(lambda b: "a"), ["tibia_fd_binary"]
                           ).empty  # one batch: nothing to compare
    metrics, oof = bm.predict_batch(rows.assign(batch="a"), folds, 10, 0)
    assert metrics.empty and oof.empty
    assert bm.batch_text(metrics, pd.DataFrame(columns=["feature", "p_kruskal"]), 0, 1.0).startswith(
        "Batch predicted from the biomarkers: not estimable on this cohort")
    comp = pd.DataFrame({"model_a": "biomarker", "model_b": ["age", "clinical"], "diff": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan, "subset": "all", "n_patients": 3,
                         "conclusion": "not estimable: the patients both arms predicted are 1 normal and 2 low-BMD "
                                       "patients (at least 2 of each class are needed)"})
    text = bm.conclusion_text(comp, ("biomarker",), "age 55-42", 9)
    assert text.startswith("**The image-biomarker arms are not estimable against age or the clinical model")
    assert "- `biomarker` vs age (all): not estimable: the patients both arms predicted are 1 normal" in text
    comp = comp.assign(diff=[0.2, 0.1], ci_low=[0.1, -0.1], ci_high=[0.3, 0.3])
    text = bm.conclusion_text(comp, ("biomarker",), "age 55-42", 9)
    assert "`biomarker` score(s) higher overall, and no age band holds both classes" in text


def test_two_batches_are_told_apart_by_one_auroc():
    from osteo_helpers import biomarker_analysis as bm

    metrics = pd.DataFrame({"metric": ["balanced_accuracy", "auroc"], "value": [0.7, 0.8], "ci_low": [0.6, 0.7],
                            "ci_high": [0.8, 0.9], "chance": [0.5, 0.5]})
    text = bm.batch_text(metrics, pd.DataFrame({"feature": ["f"], "p_kruskal": [0.001]}), 20, 0.01)
    assert "AUROC **0.80" in text and "macro" not in text and "(the CI of the AUROC excludes 0.5)" in text
