"""The figures and the self-contained HTML page of an external validation (figures inlined as PNG)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from .. import evaluation, plots
from ..report import ci
from .metrics import ALL_SITES

HEADLINE = ("auroc", "auprc", "brier", "brier_scaled", "calibration_intercept", "calibration_slope", "sensitivity",
            "specificity")
PER_SITE = ("auroc", "brier", "calibration_intercept", "calibration_slope", "sensitivity", "specificity")
#: the versions the figures draw (the intercept-only update sits between them; its numbers are in the tables)
FIGURE_VERSIONS = ("none", "logistic")
LABELS = {"fusion": "fusion (p_low_bmd)", "clinical": "clinical (p_low_bmd_clinical)"}


def version_label(model: str, recalibration: str) -> str:
    return LABELS.get(model, model) + ("" if recalibration == "none" else f", recalibrated ({recalibration})")


def wide(metrics: pd.DataFrame, site: str = ALL_SITES, subset: str = "all",
         columns: tuple[str, ...] = HEADLINE) -> pd.DataFrame:
    """One row per version (and site), one column per metric, cells ``value [CI]``."""
    part = metrics[(metrics["subset"] == subset) & metrics["metric"].isin(columns)]
    if site != "*":
        part = part[part["site"] == site]
    part = part.assign(version=[version_label(m, r) for m, r in zip(part["model"], part["recalibration"],
                                                                    strict=True)],
                       cell=[ci(v, lo, hi) for v, lo, hi in part[["value", "ci_low", "ci_high"]].itertuples(
                           index=False)])
    index = ["site", "version"] if site == "*" else ["version"]
    table = part.pivot_table(index=index, columns="metric", values="cell", aggfunc="first", sort=False)
    counts = part.groupby(index, sort=False)[["n_patients", "n_low_bmd", "n_normal"]].first()
    table = counts.join(table[[c for c in columns if c in table.columns]]).fillna("not defined")
    table.columns.name = None
    return table.reset_index()


def figures(folder: Path, reliability: pd.DataFrame, decision: pd.DataFrame,
            metrics: pd.DataFrame, stamp: str) -> dict[str, Path]:
    """calibration.png, decision_curve.png and, with sites, sites_auroc.png; their paths by name."""
    def by_version(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
        shown = table[table["recalibration"].isin(FIGURE_VERSIONS)]
        return {version_label(m, r): part for (m, r), part in shown.groupby(["model", "recalibration"], sort=False)}

    out = {"calibration": evaluation.reliability_figure(by_version(reliability)),
           "decision_curve": evaluation.decision_curve_figure(by_version(decision))}
    sites = metrics[(metrics["site"] != ALL_SITES) & (metrics["recalibration"] == "none")]
    if not sites.empty:
        out["sites_auroc"] = plots.grouped_forest(sites, "site", "model", "auroc", "AUROC per site (95% CI)",
                                                  labels=LABELS)
    paths = {}
    for name, fig in out.items():
        plots.save(fig, folder, name, stamp=stamp)
        paths[name] = folder / f"{name}.png"
    return paths


def _table_html(table: pd.DataFrame) -> str:
    return f'<div class="wide">{table.to_html(index=False, border=0, classes="t", na_rep="", escape=True)}</div>'


def _figure_html(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(alt)}</figcaption></figure>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}table.t th,table.t td{padding:.25em .6em;
border-bottom:1px solid #ddd;text-align:left}.banner{background:#fff3cd;border:1px solid #e0c36b;padding:.6em}
img{max-width:100%}.wide{overflow-x:auto}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}"""


def html_page(summary: dict[str, Any], metrics: pd.DataFrame, coefficients: pd.DataFrame, flags: pd.DataFrame,
              refused: pd.DataFrame, notes: list[str], figure_paths: dict[str, Path]) -> str:
    """The report: what was scored, the headline table, per-site table, recalibration, inputs, figures."""
    esc = html.escape
    parts = [f"<h1>External validation of {esc(summary['bundle'])}</h1>",
             "<p><em>Research use only: not a medical device.</em></p>"]
    if summary["profile"] == "smoke":
        parts.append('<p class="banner"><strong>smoke profile: the numbers mean nothing.</strong> The bundle was '
                     "trained with the smoke profile; this report proves that the code runs.</p>")
    s = {k: esc(str(v)) for k, v in summary.items()}
    parts.append(f"<p>Cohort: {s['cohort']}. {s['rows']} rows given, {s['patients']} patients scored "
                 f"({s['n_low_bmd']} low BMD, {s['n_normal']} normal), {s['refused_patients']} refused, "
                 f"{s['flagged_patients']} scored with an input the saved arms use outside what they saw in "
                 f"training. Bundle: profile {s['profile']}, created {s['created']}, commit {s['commit']}; "
                 f"screening threshold {summary['threshold']:.4f} (p_low_bmd &ge; threshold). Intervals: 95% "
                 f"percentile, {s['n_boot']} bootstrap resamples of {s['resampled']}, stratified by class.</p>")
    parts += [f"<p>{esc(n)}</p>" for n in notes]
    parts += ["<h2>All patients</h2>", _table_html(wide(metrics))]
    if (metrics["subset"] == "within_training_range").any():
        parts += ["<h2>Patients inside the training range</h2>",
                  _table_html(wide(metrics, subset="within_training_range"))]
    if (metrics["site"] != ALL_SITES).any():
        parts += ["<h2>Per site</h2>", _table_html(wide(metrics, "*", columns=PER_SITE))]
    if not coefficients.empty:
        parts += ["<h2>Recalibration</h2><p>logit(p') = intercept + slope &middot; logit(p), fitted on every patient "
                  "(the coefficients to apply); the recalibrated rows above are cross-fitted. They apply the saved "
                  "probability threshold to the recalibrated probabilities, a different decision rule from the "
                  "bundle's.</p>", _table_html(coefficients.round(4))]
    parts += ["<h2>Inputs the bundle never saw</h2>",
              _table_html(flags) if not flags.empty else "<p>None: every input lies inside the training range.</p>"]
    if not refused.empty:
        shown = refused.head(50)
        parts += [f"<h2>Refused rows ({len(refused)} problems)</h2>", _table_html(shown)]
    parts += [_figure_html(path, name.replace("_", " ")) for name, path in figure_paths.items()]
    parts.append("<p>Tables: metrics.csv (every number above), predictions.csv, refused.csv, unseen_inputs.csv, "
                 "input_flags.csv, reliability.csv, decision_curve.csv, recalibration.csv; facts: "
                 "validation.json.</p>")
    body = "\n".join(parts)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>External validation</title>'
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
