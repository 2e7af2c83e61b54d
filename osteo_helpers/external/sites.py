"""Validation across sites: leave one site out (internal-external validation), and what a site's size allows.

Each site in turn is the test set; the arm is fitted on every other site (the one cross-validation
driver, with a folds table whose ``fold`` is the site). A person with rows at two sites would sit
on both sides of some split: such persons are left out of this analysis and counted. The pooled
estimate is the random-effects mean of the per-site AUROCs (`evaluation.pooled_auroc`); the
AUROC of all left-out predictions together is given beside it, with the caveat that it mixes
sites whose calibration differs.

A site with one class has no AUROC and none is reported; a site whose smaller class is small gets
a sentence saying so (`site_notes`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import evaluation
from ..arms import cross_validate
from ..config import Profile

#: fewer patients than this in a site's smaller class: its AUROC is reported with a warning
FEW = 15
SITE_METRICS = ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope")
POOLED_RE = "pooled: random effects"
POOLED_OOF = "pooled: all left-out patients"
CROSS_VALIDATED = "cross-validated"
SITE_COLUMNS = ["model", "site", "estimate", "metric", "value", "ci_low", "ci_high", "n_patients", "n_low_bmd",
                "n_normal"]


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
    ``_by_<site column>`` so the two never overwrite each other.
    """
    folds, spanning = site_folds(rows, site, person, profile.seed)
    used = rows[~rows["patient_id"].astype(str).isin(spanning)].reset_index(drop=True)
    site_of = folds.set_index("patient_id")["site"]
    out = {}
    for name in arms:
        oof = cross_validate(name, used, folds[["patient_id", "seed", "fold"]], "binary", profile=profile,
                             cache=cache, tag=f"_by_{site}", screening=False, progress_bar=progress_bar)
        out[name] = oof.assign(site=site_of.loc[oof["patient_id"].astype(str)].to_numpy())
    return out


def _counts(oof: pd.DataFrame) -> dict[str, int]:
    y = oof["y_true"].to_numpy()
    return {"n_patients": len(y), "n_low_bmd": int(y.sum()), "n_normal": int(len(y) - y.sum())}


def site_results(oofs: dict[str, pd.DataFrame], n_boot: int, seed: int, groups: pd.Series | None = None,
                 cross_validated: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per arm: every left-out site (``SITE_METRICS``, group-bootstrap CIs; two-class sites only), the
    random-effects pooled AUROC, the AUROC of all left-out patients and, given a results table of the
    same arms (`evaluation.score_arms`), the cross-validated AUROC."""
    parts = []
    for name, oof in oofs.items():
        by_site = {}
        for site_name, part in oof.groupby("site", sort=True):
            counts = _counts(part)
            if min(counts["n_low_bmd"], counts["n_normal"]) == 0:
                continue
            table = evaluation.oof_metrics(part, n_boot, seed, groups=groups)
            parts.append(table[table["metric"].isin(SITE_METRICS)].assign(
                model=name, site=site_name, estimate="left-out site", **counts))
            avg = evaluation.average_over_repeats(part)
            by_site[site_name] = (avg["y_true"].to_numpy(), avg[evaluation.prob_columns(avg)[1]].to_numpy())
        pooled = evaluation.pooled_auroc(by_site)
        how = (f"{pooled['k']} sites, tau2 {pooled['tau2']:.3f}, I2 {pooled['i2']:.0%}" if pooled["k"] >= 2
               else f"not pooled: {pooled['k']} site(s) with a logit AUROC and a variance")
        parts.append(pd.DataFrame([{"model": name, "site": POOLED_RE, "metric": "auroc", "estimate": how,
                                    **{k: pooled[k] for k in ("value", "ci_low", "ci_high")}, **_counts(oof)}]))
        together = evaluation.oof_metrics(oof, n_boot, seed, groups=groups)
        parts.append(together[together["metric"] == "auroc"].assign(model=name, site=POOLED_OOF,
                                                                    estimate="every left-out patient", **_counts(oof)))
        if cross_validated is not None:
            cv = cross_validated[(cross_validated["model"] == name) & (cross_validated["metric"] == "auroc")
                                 & (cross_validated["subset"] == "all")].head(1)
            parts.append(cv.assign(site=CROSS_VALIDATED, estimate="grouped cross-validation, all sites mixed",
                                   n_low_bmd=np.nan, n_normal=np.nan))
    return pd.concat(parts, ignore_index=True)[SITE_COLUMNS]


def site_table(table: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The AUROCs as a person reads them: one row per site or pooled estimate, one column per arm
    (``value [CI]``), with the class counts; never NaN."""
    from ..report import ci

    part = table[table["metric"] == "auroc"]
    cells = part.assign(cell=[ci(v, lo, hi) for v, lo, hi in part[["value", "ci_low", "ci_high"]].itertuples(
        index=False)], model=[(labels or {}).get(m, m) for m in part["model"]])
    wide = cells.pivot_table(index="site", columns="model", values="cell", aggfunc="first", sort=False)
    counts = part.drop_duplicates("site").set_index("site")[["n_patients", "n_low_bmd", "n_normal"]]
    out = counts.join(wide).reset_index()
    out[["n_low_bmd", "n_normal"]] = out[["n_low_bmd", "n_normal"]].astype("Int64").astype(str).replace("<NA>", "")
    out.columns.name = None
    return out.fillna("not defined")


def site_counts(y: pd.Series, sites: pd.Series) -> pd.DataFrame:
    """Patients, low-BMD and normal patients per site (``site, n_patients, n_low_bmd, n_normal``)."""
    table = pd.DataFrame({"site": sites.astype(str).to_numpy(), "y": y.to_numpy(int)})
    out = table.groupby("site").agg(n_patients=("y", "size"), n_low_bmd=("y", "sum")).reset_index()
    return out.assign(n_normal=out["n_patients"] - out["n_low_bmd"])


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def site_notes(counts: pd.DataFrame, few: int = FEW, unit: str = "site") -> list[str]:
    """Sentences on the sites whose class sizes limit what their metrics can say (from the counts alone);
    ``unit`` names what a site is (``batch`` for the published cohort)."""
    notes = []
    for row in counts.itertuples(index=False):
        smaller, n_small = min(("normal", row.n_normal), ("low-BMD", row.n_low_bmd), key=lambda c: c[1])
        if n_small == 0:
            notes.append(f"{unit.capitalize()} {row.site} holds no {smaller} patient ({row.n_patients} patients): it "
                         "has no AUROC, AUPRC or calibration slope, and none is reported for it.")
        elif n_small < few:
            notes.append(f"{unit.capitalize()} {row.site} holds only {n_small} {smaller} "
                         f"patient{'s' if n_small > 1 else ''} "
                         f"(of {row.n_patients}): its AUROC rests on {n_small} patient{'s' if n_small > 1 else ''} "
                         "of that class and its interval is wide; read it as a rough check, not an estimate.")
    return notes


def site_text(table: pd.DataFrame, counts: pd.DataFrame, labels: dict[str, str] | None = None,
              unit: str = "site") -> str:
    """What the leave-one-site-out table says, in sentences that follow its numbers (``unit``: see `site_notes`)."""
    from ..report import ci

    lines = site_notes(counts, unit=unit)
    for name, part in table[table["metric"] == "auroc"].groupby("model", sort=False):
        label = (labels or {}).get(name, name)
        sites = part[part["estimate"] == "left-out site"]
        pooled = part[part["site"] == POOLED_RE].iloc[0]
        together = part[part["site"] == POOLED_OOF].iloc[0]
        text = [f"**{label}.** Left-out-{unit} AUROC from {sites['value'].min():.3f} to {sites['value'].max():.3f} "
                f"over {len(sites)} {_plural(unit)}." if len(sites) else f"**{label}.** No {unit} holds both classes."]
        if np.isfinite(pooled["value"]):
            text.append(f"Random-effects pooled AUROC {ci(*pooled[['value', 'ci_low', 'ci_high']])} "
                        f"({pooled['estimate']}); its interval uses t with {len(sites) - 1} degrees of freedom, so "
                        f"with few {_plural(unit)} it is wide by design.")
        else:
            text.append(f"There is no pooled estimate ({pooled['estimate']}).")
        intercepts = table[(table["model"] == name) & (table["metric"] == "calibration_intercept")
                           & (table["estimate"] == "left-out site")]["value"]
        if len(intercepts) > 1:
            text.append(f"Calibration-in-the-large of the left-out {_plural(unit)} ranges from "
                        f"{intercepts.min():+.2f} to {intercepts.max():+.2f} (0 is calibrated; `osteo validate "
                        "--recalibrate` refits the intercept on a new cohort).")
        text.append(f"All left-out patients together: {ci(*together[['value', 'ci_low', 'ci_high']])}.")
        cv = part[part["site"] == CROSS_VALIDATED]
        if len(cv):
            row = cv.iloc[0]
            inside = np.isfinite(pooled["ci_low"]) and pooled["ci_low"] <= row["value"] <= pooled["ci_high"]
            text.append(f"Cross-validated (sites mixed in every fold): {ci(*row[['value', 'ci_low', 'ci_high']])}"
                        + ("; it lies inside the pooled interval." if inside else
                           "; it lies outside the pooled interval." if np.isfinite(pooled["ci_low"]) else "."))
        lines.append(" ".join(text))
    return "\n\n".join(lines)
