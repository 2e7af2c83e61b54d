"""The figures and the self-contained HTML page of an external validation (figures inlined as PNG).

The page fits a 1,280 px window without scrolling sideways: each metric table holds four metrics at
most, an estimate and its CI share one cell (they wrap between the two), long identifiers (hashed IDs)
are shortened, and every table links the CSV file that holds all of it. When some of the cohort's
images were training images, or the bundle does not record its training set, the title and every
metric table say so.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from .. import evaluation, plots
from ..figures import SavedFigure, save
from ..htmltable import short_ids, table_html
from ..wording import ci, counted, p_text
from .metrics import ALL_SITES, MODELS, NOT_IN_TRAINING
from .result import Validation

DISCRIMINATION = ("auroc", "auprc", "sensitivity", "specificity")
CALIBRATION = ("brier", "brier_scaled", "calibration_intercept", "calibration_slope")
PER_SITE = (("auroc", "sensitivity", "specificity"), ("brier", "calibration_intercept", "calibration_slope"))
HEADERS = {"auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier", "brier_scaled": "scaled Brier",
           "calibration_intercept": "calibration intercept", "calibration_slope": "calibration slope"}
SUBSETS = {"all": "All patients", "within_training_range": "Patients inside the training range",
           NOT_IN_TRAINING: "Patients none of whose images the bundle was trained on"}
#: the versions the figures draw (the intercept-only update sits between them; its numbers are in the tables)
FIGURE_VERSIONS = ("none", "logistic")
LABELS = {"fusion": "fusion (p_low_bmd)", "clinical": "clinical (p_low_bmd_clinical)"}
COUNTS = "patients (low BMD / normal)"
CAPTIONS = {"roc": "ROC and precision-recall curves of both models as saved (legend: AUROC, AUPRC with 95% CI)",
            "calibration": "calibration: observed against predicted, per bin", "decision_curve": "decision curve",
            "sites_auroc": "AUROC per site"}


def version_label(model: str, recalibration: str) -> str:
    return LABELS.get(model, model) + ("" if recalibration == "none" else f", recalibrated ({recalibration})")


def wide(metrics: pd.DataFrame, site: str = ALL_SITES, subset: str = "all",
         columns: tuple[str, ...] = DISCRIMINATION) -> pd.DataFrame:
    """One row per version (and site), the patients counted in one column, one column per metric, cells
    ``value [CI]``."""
    part = metrics[(metrics["subset"] == subset) & metrics["metric"].isin(columns)]
    if site != "*":
        part = part[part["site"] == site]
    part = part.assign(version=[m if r == "none" else f"{m}, recalibrated ({r})"
                                for m, r in zip(part["model"], part["recalibration"], strict=True)],
                       cell=[ci(v, lo, hi) for v, lo, hi in part[["value", "ci_low", "ci_high"]].itertuples(
                           index=False)])
    index = ["site", "version"] if site == "*" else ["version"]
    table = part.pivot_table(index=index, columns="metric", values="cell", aggfunc="first", sort=False)
    counts = part.groupby(index, sort=False)[["n_patients", "n_low_bmd", "n_normal"]].first()
    counts = pd.DataFrame({COUNTS: [f"{n} ({low} / {normal})" for n, low, normal in counts.itertuples(index=False)]},
                          index=counts.index)
    table = counts.join(table[[c for c in columns if c in table.columns]]).fillna("not defined")
    table.columns.name = None
    return table.reset_index().rename(columns=HEADERS)


def figures(folder: Path, result: Validation, stamp: str) -> dict[str, SavedFigure]:
    """roc.png, calibration.png, decision_curve.png and, with sites, sites_auroc.png, by name."""
    def by_version(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
        shown = table[table["recalibration"].isin(FIGURE_VERSIONS)]
        return {version_label(m, r): part for (m, r), part in shown.groupby(["model", "recalibration"], sort=False)}

    metrics, patients = result.metrics, result.predictions
    headline = metrics[(metrics["site"] == ALL_SITES) & (metrics["subset"] == "all")
                       & (metrics["recalibration"] == "none")].set_index(["model", "metric"])
    y = patients["y_true"].to_numpy(int)
    curves = {LABELS[m]: (y, patients[column].to_numpy(float)) for m, column in MODELS.items()}
    legend = {LABELS[m]: tuple(ci(*headline.loc[(m, metric), ["value", "ci_low", "ci_high"]])
                               if (m, metric) in headline.index else "" for metric in ("auroc", "auprc"))
              for m in MODELS}
    out = {"roc": plots.roc_pr_curves(curves, f"{result.summary['cohort']}: all patients, models as saved", legend),
           "calibration": evaluation.reliability_figure(by_version(result.reliability)),
           "decision_curve": evaluation.decision_curve_figure(by_version(result.decision))}
    sites = metrics[(metrics["site"] != ALL_SITES) & (metrics["recalibration"] == "none")]
    if not sites.empty:
        out["sites_auroc"] = plots.grouped_forest(sites, "site", "model", "auroc", "AUROC per site (95% CI)",
                                                  labels=LABELS)
    return {name: save(fig, folder, name, stamp=stamp) for name, fig in out.items()}


def difference_table(comparison: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "patients": [SUBSETS.get(s, s) for s in comparison["subset"]],
        "n": comparison["n_patients"],
        "fusion AUROC": [f"{v:.3f}" for v in comparison["value_a"]],
        "clinical AUROC": [f"{v:.3f}" for v in comparison["value_b"]],
        "fusion - clinical [95% CI]": [ci(d, lo, hi, signed=True) for d, lo, hi in
                                       comparison[["diff", "ci_low", "ci_high"]].itertuples(index=False)],
        "p": [p_text(p, max(1, n // 2)) for p, n in comparison[["p_value", "n_boot"]].itertuples(index=False)]})


def _table_html(table: pd.DataFrame, csv: str, what: str, caption: str | None = None) -> str:
    return table_html(table, caption, csv, what)


def _figure_html(saved: SavedFigure, caption: str) -> str:
    return f"<figure>{saved.img()}<figcaption>{html.escape(caption)}</figcaption></figure>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}
table.osteo-table{border-collapse:collapse;font-size:.85em;margin:.5em 0 .3em}
table.osteo-table th,table.osteo-table td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left;
vertical-align:top}table.osteo-table td{overflow-wrap:anywhere}
caption{text-align:left;font-weight:bold;color:#8a5a00;padding:.2em 0}.osteo-source{font-size:.8em;margin:0 0 1.5em}
.banner{background:#fff3cd;border:1px solid #e0c36b;padding:.6em}img{max-width:100%}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}"""


def _title(summary: dict[str, Any]) -> str:
    overlap = summary["training_overlap"]
    name = f"{Path(summary['bundle']).name} on {summary['cohort']}"
    return f"External validation of {name}" if overlap["external"] else f"Validation of {name}: {overlap['statement']}"


def html_page(result: Validation, flags: pd.DataFrame, saved: dict[str, SavedFigure]) -> str:
    """The report: what was scored, the metric tables, fusion minus clinical, per site, recalibration,
    inputs, refused rows, figures."""
    summary, metrics, esc = result.summary, result.metrics, html.escape
    overlap = summary["training_overlap"]
    warning = None if overlap["external"] else overlap["statement"]
    parts = [f"<h1>{esc(_title(summary))}</h1>", "<p><em>Research use only: not a medical device.</em></p>"]
    if warning:
        parts.append(f'<p class="banner"><strong>{esc(warning[0].upper() + warning[1:])}.</strong> Metrics on images '
                     "a model was trained on estimate how well it fits them, not how it does on new patients.</p>")
    elif overlap["persons"]:
        parts.append(f"<p>{esc(overlap['statement'][0].upper() + overlap['statement'][1:])}.</p>")
    if summary["profile"] == "smoke":
        parts.append('<p class="banner"><strong>smoke profile: the numbers mean nothing.</strong> The bundle was '
                     "trained with the smoke profile; this report proves that the code runs.</p>")
    s = {k: esc(str(v)) for k, v in summary.items()}
    parts.append(f"<p>Cohort: {s['cohort']} ({s.get('cohort_source', s['cohort'])}). "
                 f"{counted(summary['rows'], 'row')} given, {counted(summary['patients'], 'patient')} scored "
                 f"({s['n_low_bmd']} low BMD, {s['n_normal']} normal), {counted(summary['refused_rows'], 'row')} "
                 f"refused, {counted(summary['flagged_patients'], 'patient')} scored with an input the saved "
                 f"arms use outside what they saw in training. Bundle: {s['bundle']}, profile {s['profile']}, created "
                 f"{s['created']}, commit {s['commit']}; screening threshold {summary['threshold']:.4f} (p_low_bmd "
                 f"&ge; threshold). Intervals: 95% percentile, {s['n_boot']} bootstrap resamples of {s['resampled']}, "
                 "stratified by class.</p>")
    parts += [f"<p>{esc(n)}</p>" for n in result.notes]
    for subset, title in SUBSETS.items():
        if (metrics["subset"] == subset).any():
            parts.append(f"<h2>{esc(title)}</h2>")
            parts += [_table_html(wide(metrics, subset=subset, columns=columns), "metrics.csv",
                                  "every number, per model, recalibration, site and subset", warning)
                      for columns in (DISCRIMINATION, CALIBRATION)]
    if not result.comparison.empty:
        parts += ["<h2>Does the image add to the clinical model?</h2><p>The fusion's AUROC minus the clinical "
                  "model's, on the same patients (models as saved; paired bootstrap of persons). Positive: the knee "
                  "image adds discrimination to the clinical model on this cohort.</p>",
                  _table_html(difference_table(result.comparison), "comparison.csv", "the differences", warning)]
    if (metrics["site"] != ALL_SITES).any():
        parts.append("<h2>Per site</h2>")
        parts += [_table_html(wide(metrics, "*", columns=columns), "metrics.csv", "every site's numbers", warning)
                  for columns in PER_SITE]
    if not result.coefficients.empty:
        parts += ["<h2>Recalibration</h2><p>logit(p') = intercept + slope &middot; logit(p), fitted on every patient "
                  "(the coefficients to apply); the recalibrated rows above are cross-fitted. They apply the saved "
                  "probability threshold to the recalibrated probabilities, a different decision rule from the "
                  "bundle's.</p>", _table_html(result.coefficients.round(3), "recalibration.csv", "the coefficients")]
    parts.append("<h2>Inputs the bundle never saw</h2>")
    parts.append(_table_html(flags.round(3), "unseen_inputs.csv", "per input; every value in input_flags.csv")
                 if not flags.empty else "<p>None: every input lies inside the training range.</p>")
    refused = result.refused
    if not refused.empty:
        parts += [f"<h2>Refused rows ({summary['refused_rows']} rows, {len(refused)} problems)</h2>",
                  _table_html(short_ids(refused.head(50)), "refused.csv",
                              "every problem of every refused row" + (" (the first 50 shown)" if len(refused) > 50
                                                                      else ""))]
    parts += [_figure_html(figure, CAPTIONS.get(name, name)) for name, figure in saved.items()]
    parts.append('<p>Tables: <a href="predictions.csv">predictions.csv</a> (every patient scored, with '
                 "in_training_set and outside_training); facts: validation.json.</p>")
    body = "\n".join(parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(_title(summary))}</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
