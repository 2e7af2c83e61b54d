"""Validation across sites: leave one site out (internal-external validation), and what a site's size allows.

Each site in turn is the test set; the arm is fitted on every other site (the one cross-validation
driver, with a folds table whose ``fold`` is the site). A person with rows at two sites would sit
on both sides of some split: such persons are left out of this analysis and counted. Discrimination
(AUROC) and calibration (intercept and slope) are each pooled across sites by a random-effects
meta-analysis (`evaluation.pooled_sites`) with tau^2, Cochran's Q, I^2 and a 95% prediction interval
for a new site; the AUROC of all left-out predictions together is given beside it, with the caveat
that it mixes sites whose calibration differs.

What a "site" is comes from the data, in one place (`site_unit`): a cohort whose spec names a
``site`` column is analysed by site; the published cohort has none, and its acquisition batches (the
image-file formats) take their place and are called acquisition batches, never sites.

A site with one class has no AUROC and none is reported; a site whose smaller class is small gets
a sentence saying so (`site_notes`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from .. import evaluation
from ..arms import cross_validate
from ..arms.persons import person_key
from ..config import Profile
from ..wording import ci, counted, plural

#: fewer patients than this in a site's smaller class: its AUROC is reported with a warning
FEW = 15
SITE_METRICS = ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope")
#: the metrics meta-analysed across sites (random effects, with prediction intervals)
POOLED_METRICS = ("auroc", "calibration_intercept", "calibration_slope")
POOLED_RE = "pooled: random effects"
POOLED_OOF = "pooled: all left-out patients"
CROSS_VALIDATED = "cross-validated"
SITE_COLUMNS = ["model", "site", "estimate", "metric", "value", "ci_low", "ci_high", "pi_low", "pi_high", "tau2",
                "i2", "q", "q_p", "k", "n_patients", "n_low_bmd", "n_normal"]


class SiteUnit(NamedTuple):
    """Which column holds each row's site, and what a site is called in text and tables."""

    column: str
    word: str

    @property
    def plural(self) -> str:
        return plural(self.word)


def site_unit(rows: pd.DataFrame) -> SiteUnit:
    """Sites where the cohort has them (its spec's ``site`` column), else its acquisition batches: the one
    rule that makes the leave-one-out page read as a site analysis or as a batch analysis."""
    if "site" in rows.columns and rows["site"].notna().any():
        return SiteUnit("site", "site")
    return SiteUnit("batch", "acquisition batch")


def site_intro(unit: SiteUnit) -> str:
    """What is left out in turn on this cohort, said once: sites where the spec names them; otherwise the
    acquisition batches, which are not sites and whose left-out analysis tests little for a model that does
    not read the image."""
    if unit.word == "site":
        return (f"This cohort names a site for every row (column `{unit.column}`): each site in turn is left out, "
                "the arm is fitted on the other sites (the same driver and settings as the cross-validation, no "
                "screening threshold) and the left-out site is scored. This is internal-external validation across "
                "sites.")
    return (f"This cohort names no sites. Its images come in {unit.plural} (colour mode and size class of the "
            f"image files; chapter 1), which take the place of sites on this page: each {unit.word} in turn is "
            "left out, the arm is fitted on the others (the same driver and settings as the cross-validation, no "
            f"screening threshold) and the left-out {unit.word} is scored. They are {unit.plural} of one source, "
            "not centres. For a model that does not read the image (the clinical model; the residual fusion "
            f"wherever its image term stayed at zero) an {unit.word} is only a group of patients, so the "
            f"differences between {unit.plural} below are differences of case mix, not of acquisition.")


def site_folds(rows: pd.DataFrame, site: str, person: str | None = None, seed: int = 0
               ) -> tuple[pd.DataFrame, list[str]]:
    """The leave-one-site-out folds (``patient_id, seed, fold, site``; fold k holds the k-th site in
    sorted order as its test set) and the patients left out because their person spans sites."""
    sites = rows[site].astype(str)
    spanning: list[str] = []
    if person is not None:
        n_sites = sites.groupby(rows[person].to_numpy()).nunique()
        crossing = rows[person].isin(n_sites.index[n_sites > 1])
        spanning = sorted(rows.loc[crossing, "patient_id"].astype(str))
        sites = sites[~crossing]
    names = sorted(sites.unique())
    ids = rows.loc[sites.index, "patient_id"].astype(str)
    folds = pd.DataFrame({"patient_id": ids.to_numpy(), "seed": seed, "fold": sites.map(names.index).to_numpy(),
                          "site": sites.to_numpy()})
    return folds.sort_values(["fold", "patient_id"]).reset_index(drop=True), spanning


def leave_one_site_out(rows: pd.DataFrame, site: str, arms: tuple[str, ...], profile: Profile,
                       cache: Path | None = None, person: str | None = None, progress_bar: bool = False
                       ) -> dict[str, pd.DataFrame]:
    """Out-of-site predictions of each arm (binary; the OOF format plus ``site``), one fit per left-out site.

    Fitted folds are cached under ``cache`` beside the cross-validation folds, tagged
    ``_by_<site column>`` so the two never overwrite each other. With fewer than two sites no site can be
    left out: no table (`site_text` says so).
    """
    folds, spanning = site_folds(rows, site, person, profile.seed)
    if folds["fold"].nunique() < 2:
        return {}
    used = rows[~rows["patient_id"].astype(str).isin(spanning)].reset_index(drop=True)
    key = person_key(used)  # the out-of-fold tables' key of each row: its person where a person has several
    site_of = folds.set_index("patient_id")["site"].loc[key.index.astype(str)]
    site_of = site_of.set_axis(key.to_numpy().astype(str))
    site_of = site_of[~site_of.index.duplicated()]
    out = {}
    for name in arms:
        oof = cross_validate(name, used, folds[["patient_id", "seed", "fold"]], "binary", profile=profile,
                             cache=cache, tag=f"_by_{site}", screening=False, progress_bar=progress_bar)
        out[name] = oof.assign(site=site_of.loc[oof["patient_id"].astype(str)].to_numpy())
    return out


def _counts(oof: pd.DataFrame) -> dict[str, int]:
    y = oof["y_true"].to_numpy()
    return {"n_patients": len(y), "n_low_bmd": int(y.sum()), "n_normal": int(len(y) - y.sum())}


def _pooled_rows(name: str, by_site: dict[str, tuple[np.ndarray, np.ndarray]], counts: dict[str, int],
                 unit: str) -> list[dict]:
    """One row per metric of `POOLED_METRICS`: the random-effects mean, its CI, the prediction interval
    and the heterogeneity of the left-out sites."""
    rows = []
    for metric in POOLED_METRICS:
        pooled = evaluation.pooled_sites(by_site, metric)
        how = (f"{pooled['k']} {plural(unit)}, tau2 {pooled['tau2']:.3f}, I2 {pooled['i2']:.0%}" if pooled["k"] >= 2
               else f"not pooled: {pooled['k']} {unit}(s) with an estimate and a variance")
        rows.append({"model": name, "site": POOLED_RE, "metric": metric, "estimate": how, **counts,
                     **{k: pooled[k] for k in ("value", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2", "q",
                                               "q_p", "k")}})
    return rows


def site_results(oofs: dict[str, pd.DataFrame], n_boot: int, seed: int, groups: pd.Series | None = None,
                 cross_validated: pd.DataFrame | None = None, unit: str = "site") -> pd.DataFrame:
    """Per arm: every left-out site (``SITE_METRICS``, group-bootstrap CIs; two-class sites only), the
    random-effects pooled AUROC, calibration intercept and slope (with tau2, I2, Q and its p, and the 95%
    prediction interval for a new site), the AUROC of all left-out patients and, given a results table of
    the same arms (`evaluation.score_arms`), the cross-validated AUROC. ``unit``: what a site is called."""
    parts = []
    for name, oof in oofs.items():
        by_site = {}
        for site_name, part in oof.groupby("site", sort=True):
            counts = _counts(part)
            if min(counts["n_low_bmd"], counts["n_normal"]) == 0:
                continue
            table = evaluation.oof_metrics(part, n_boot, seed, groups=groups)
            parts.append(table[table["metric"].isin(SITE_METRICS)].assign(
                model=name, site=site_name, estimate=f"left-out {unit}", k=1, **counts))
            avg = evaluation.average_over_repeats(part)
            by_site[site_name] = (avg["y_true"].to_numpy(), avg[evaluation.prob_columns(avg)[1]].to_numpy())
        parts.append(pd.DataFrame(_pooled_rows(name, by_site, _counts(oof), unit)))
        together = evaluation.oof_metrics(oof, n_boot, seed, groups=groups)
        parts.append(together[together["metric"] == "auroc"].assign(model=name, site=POOLED_OOF,
                                                                    estimate="every left-out patient", **_counts(oof)))
        if cross_validated is not None:
            cv = cross_validated[(cross_validated["model"] == name) & (cross_validated["metric"] == "auroc")
                                 & (cross_validated["subset"] == "all")].head(1)
            parts.append(cv.assign(site=CROSS_VALIDATED, estimate=f"grouped cross-validation, all {plural(unit)} "
                                   "mixed", n_low_bmd=np.nan, n_normal=np.nan))
    return pd.concat(parts, ignore_index=True).reindex(columns=SITE_COLUMNS) if parts else \
        pd.DataFrame(columns=SITE_COLUMNS)


def site_table(table: pd.DataFrame, labels: dict[str, str] | None = None, metric: str = "auroc",
               unit: str = "site") -> pd.DataFrame:
    """One metric as a person reads it: one row per {unit} or pooled estimate, one column per arm
    (``value [CI]``; the pooled row adds its 95% prediction interval), with the class counts; never NaN."""
    digits = 3 if metric == "auroc" else 2
    part = table[table["metric"] == metric]

    def cell(row: pd.Series) -> str:
        text = ci(row["value"], row["ci_low"], row["ci_high"], digits, signed=metric == "calibration_intercept")
        if row["site"] == POOLED_RE and np.isfinite(row["pi_low"]):
            text += f"; 95% PI [{row['pi_low']:.{digits}f}, {row['pi_high']:.{digits}f}]"
        return text

    cells = part.assign(cell=[cell(r) for _, r in part.iterrows()],
                        model=[(labels or {}).get(m, m) for m in part["model"]])
    wide = cells.pivot_table(index="site", columns="model", values="cell", aggfunc="first", sort=False)
    counts = part.drop_duplicates("site").set_index("site")[["n_patients", "n_low_bmd", "n_normal"]]
    out = counts.join(wide).reset_index().rename(columns={"site": unit})
    out[["n_low_bmd", "n_normal"]] = out[["n_low_bmd", "n_normal"]].astype("Int64").astype(str).replace("<NA>", "")
    out.columns.name = None
    return out.fillna("not defined")


def site_counts(y: pd.Series, sites: pd.Series) -> pd.DataFrame:
    """Patients, low-BMD and normal patients per site (``site, n_patients, n_low_bmd, n_normal``)."""
    table = pd.DataFrame({"site": sites.astype(str).to_numpy(), "y": y.to_numpy(int)})
    out = table.groupby("site").agg(n_patients=("y", "size"), n_low_bmd=("y", "sum")).reset_index()
    return out.assign(n_normal=out["n_patients"] - out["n_low_bmd"])


def site_notes(counts: pd.DataFrame, few: int = FEW, unit: str = "site") -> list[str]:
    """Sentences on the sites whose class sizes limit what their metrics can say (from the counts alone);
    ``unit`` names what a site is (``batch`` for the published cohort)."""
    notes = []
    for row in counts.itertuples(index=False):
        smaller, n_small = min(("normal", row.n_normal), ("low-BMD", row.n_low_bmd), key=lambda c: c[1])
        if n_small == 0:
            notes.append(f"{unit.capitalize()} {row.site} holds no {smaller} patient "
                         f"({counted(row.n_patients, 'patient')}): it "
                         "has no AUROC, AUPRC or calibration slope, and none is reported for it.")
        elif n_small < few:
            notes.append(f"{unit.capitalize()} {row.site} holds only {n_small} {smaller} "
                         f"patient{'s' if n_small > 1 else ''} "
                         f"(of {row.n_patients}): its AUROC rests on {n_small} patient{'s' if n_small > 1 else ''} "
                         "of that class and its interval is wide; read it as a rough check, not an estimate.")
    return notes


def _left_out(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of single left-out sites (not pooled, not cross-validated)."""
    return table[~table["site"].isin([POOLED_RE, POOLED_OOF, CROSS_VALIDATED])]


def prediction_interval_words(k: int, unit: str = "site") -> str:
    """What a 95% prediction interval from k sites rests on: t with k - 2 degrees of freedom."""
    if k < 3:
        return f"with {k} {plural(unit)} there is no prediction interval (it needs three)"
    t = stats.t.ppf(0.975, k - 2)
    return (f"its t has k - 2 = {k - 2} degree{'s' if k > 3 else ''} of freedom (t = {t:.1f})"
            + (f", so {k} {plural(unit)} say almost nothing about a new one" if k == 3 else ""))


def heterogeneity_words(pooled: pd.Series, scale: str = "") -> str:
    """'Q = 22.5 (2 df), p = 1.3e-05, I2 = 91%, tau2 = 1.05' from a pooled row of `site_results`."""
    return (f"Q = {pooled['q']:.1f} ({int(pooled['k']) - 1} df), p = {evaluation.format_p(pooled['q_p'])}, "
            f"I² = {pooled['i2']:.0%}, tau² = {pooled['tau2']:.3g}{scale}")


def _pooled_words(pooled: pd.Series, digits: int, signed: bool, unit: str) -> str:
    text = f"pooled {ci(pooled['value'], pooled['ci_low'], pooled['ci_high'], digits, signed)}"
    if np.isfinite(pooled["pi_low"]):
        text += (f", 95% prediction interval for a new {unit} [{pooled['pi_low']:.{digits}f}, "
                 f"{pooled['pi_high']:.{digits}f}] ({prediction_interval_words(int(pooled['k']), unit)})")
    return text


def calibration_words(table: pd.DataFrame, name: str, unit: str = "site") -> str:
    """The calibration of the left-out sites of one arm and its meta-analysis: each site's
    calibration-in-the-large, whether the sites differ beyond chance (Q), tau2 and the prediction interval."""
    rows = table[table["model"] == name]
    sites = _left_out(rows[rows["metric"] == "calibration_intercept"])
    pooled = rows[(rows["site"] == POOLED_RE) & (rows["metric"] == "calibration_intercept")]
    if len(sites) < 2 or pooled.empty or not np.isfinite(pooled["value"].iloc[0]):
        return ""
    pooled = pooled.iloc[0]
    each = ", ".join(f"{r.site} {ci(r.value, r.ci_low, r.ci_high, 2, signed=True)}" for r in sites.itertuples())
    differ = pooled["q_p"] < 0.05
    text = (f"Calibration-in-the-large of the left-out {plural(unit)} (0 is calibrated; below 0 the risk is "
            f"over-estimated): {each} (bootstrap intervals, each class's size held fixed; the meta-analysis uses "
            f"Wald variances, which also count the variation of the event rate); {heterogeneity_words(pooled)}. ")
    text += (f"The {plural(unit)} differ in calibration beyond chance: the same model over-estimates the risk in "
             f"some and under-estimates it in others, which {plural(unit)} drawn from one population would not "
             "show" if differ else f"No heterogeneity of calibration across {plural(unit)} is detectable")
    text += f"; {_pooled_words(pooled, 2, True, unit)}."
    slope = rows[(rows["site"] == POOLED_RE) & (rows["metric"] == "calibration_slope")]
    if len(slope) and np.isfinite(slope["value"].iloc[0]):
        text += (f" Calibration slope: {_pooled_words(slope.iloc[0], 2, False, unit)}; "
                 f"{heterogeneity_words(slope.iloc[0])}.")
    return text


def site_text(table: pd.DataFrame, counts: pd.DataFrame, labels: dict[str, str] | None = None,
              unit: str = "site") -> str:
    """What the leave-one-site-out table says, in sentences that follow its numbers (``unit``: `site_unit`'s
    word, e.g. "acquisition batch" for the published cohort)."""
    if table.empty:
        return (f"This cohort holds {len(counts)} {unit if len(counts) == 1 else plural(unit)}"
                + (f" ({', '.join(map(str, counts['site']))})" if len(counts) else "")
                + f": with fewer than two, no {unit} can be left out and the validation across {plural(unit)} is "
                "not estimable on this cohort.")
    lines = site_notes(counts, unit=unit)
    for name, part in table[table["metric"] == "auroc"].groupby("model", sort=False):
        label = (labels or {}).get(name, name)
        sites = _left_out(part)
        pooled = part[part["site"] == POOLED_RE].iloc[0]
        together = part[part["site"] == POOLED_OOF].iloc[0]
        text = [f"**{label}.** AUROC of each left-out {unit} from {sites['value'].min():.3f} to "
                f"{sites['value'].max():.3f} over {len(sites)} {plural(unit)}." if len(sites) else
                f"**{label}.** No {unit} holds both classes."]
        if np.isfinite(pooled["value"]):
            text.append(f"Random-effects {_pooled_words(pooled, 3, False, unit)}; "
                        f"{heterogeneity_words(pooled, ' (logit scale)')}. The pooled interval uses t with "
                        f"{int(pooled['k']) - 1} degrees of freedom, so with few {plural(unit)} it is wide by design.")
        else:
            text.append(f"There is no pooled estimate ({pooled['estimate']}).")
        calibration = calibration_words(table, name, unit)
        if calibration:
            text.append(calibration)
        text.append(f"All left-out patients together: {ci(*together[['value', 'ci_low', 'ci_high']])}.")
        cv = part[part["site"] == CROSS_VALIDATED]
        if len(cv):
            row = cv.iloc[0]
            inside = np.isfinite(pooled["ci_low"]) and pooled["ci_low"] <= row["value"] <= pooled["ci_high"]
            text.append(f"Cross-validated ({plural(unit)} mixed in every fold): "
                        f"{ci(*row[['value', 'ci_low', 'ci_high']])}"
                        + ("; it lies inside the pooled interval." if inside else
                           "; it lies outside the pooled interval." if np.isfinite(pooled["ci_low"]) else "."))
        lines.append(" ".join(text))
    return "\n\n".join(lines)
