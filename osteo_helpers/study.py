"""The study of one run: profile, folders, the manifest, the cohort, folds and cached images.

Notebooks, the ablation command and tests open a `Study` and read everything through it,
so nothing downstream re-reads the spreadsheet or re-decodes an image.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import control, data, evaluation, progress, splits
from .ablation import (
    DECLARED_ORDER,
    FAMILY_TASKS,
    TSCORE_ARMS,
    declared_comparisons,
    groups_of,
    run_arms,
    singleton_patients,
    training_states,
    tscore_comparison,
    tscore_predictions,
    who_classes,
)
from .biomarkers import cohort_biomarkers
from .config import Profile, get_profile
from .data.plausibility import excluded_rows
from .features import FeatureRecipe, feature_matrix
from .figures import save
from .fileio import ChecksumError, atomic_to_csv, atomic_write_text, read_csv, read_verified, sha256_bytes
from .folders import cache_dir, ensure_outside_data
from .htmltable import table_html
from .images import ImageCache, PixelHashes
from .provenance import record_session
from .runfolder import RunPaths, run_paths
from .tasks import get_task, why_not_estimable

if TYPE_CHECKING:
    from IPython.display import HTML
    from matplotlib.figure import Figure

    from .biomarkers import BiomarkerData
    from .figures import SavedFigure

RUN_ID_ENV = "OSTEO_RUN_ID"


def with_biomarkers(rows: pd.DataFrame, bio: BiomarkerData) -> pd.DataFrame:
    """Rows plus patient-level biomarkers (``bio_<feature>``), ``biomarker_localised`` and ``roi_tiles``."""
    from .arms.classical import BIOMARKER_PREFIX  # deferred: imports torch

    patients = bio.patients()
    features = patients[["patient_id", *bio.feature_columns]].rename(
        columns={c: f"{BIOMARKER_PREFIX}{c}" for c in bio.feature_columns})
    out = rows.merge(features, on="patient_id", how="left", validate="one_to_one")
    out["biomarker_localised"] = out["patient_id"].isin(bio.localised_ids)
    tiles = {pid: bio.rois[np.flatnonzero(bio.knees["patient_id"].to_numpy() == pid)] for pid in bio.localised_ids}
    out["roi_tiles"] = [tiles.get(pid) for pid in out["patient_id"]]
    return out


def check_profile_on_data(profile: Profile, dataset: data.Cohort) -> None:
    """UsageError (one line, before any work) when the profile cannot run on this cohort: more folds
    than the smallest class has people. Reads the data as `Study.cohort` does; writes nothing."""
    cohort = data.modelling_table(dataset.manifest(), dataset.clinical)
    cohort = cohort[~cohort["patient_id"].isin(excluded_rows(cohort))]
    splits.check_fold_count(cohort, "label_3class", profile.n_folds, class_names=data.CLASSES_3)


class Study:
    """Open with `Study.open(profile, run_dir, data_dir, cohort=SPEC, **overrides)`."""

    #: the side of the images the report's figures show (the gallery, near-duplicate pairs)
    FIGURE_SIZE = 256

    def __init__(self, profile: Profile, paths: RunPaths, dataset: data.Cohort) -> None:
        self.profile = profile
        self.paths = paths
        self.dataset = dataset
        self._images: dict[int, np.ndarray] = {}
        self._oofs: dict[Any, dict[str, pd.DataFrame]] = {}
        self._tables: dict[tuple, pd.DataFrame] = {}  # results computed once per session
        self.control_oofs: dict[tuple[str, str], pd.DataFrame] = {}  # the positive control's, by (arm, target)

    @classmethod
    def open(cls, profile: str = "fast", run_dir: str | os.PathLike | None = None,
             data_dir: str | os.PathLike | None = None, *, cohort: data.Cohort | str | os.PathLike | None = None,
             **overrides: Any) -> Study:
        """``cohort``: the cohort the command line opened (`data.Cohort`, passed down as it is), or a cohort
        spec (TOML) to open, as a notebook's parameters name it; None: the published dataset, found in
        ``data_dir`` or the documented places."""
        prof = get_profile(profile, **overrides)
        dataset = data.Cohort.open(cohort, data_dir)
        paths = run_paths(run_dir, prof)
        ensure_outside_data(paths.root, "run folder", dataset.root)
        study = cls(prof, paths, dataset)
        if not os.environ.get(RUN_ID_ENV):  # `osteo run` keeps the record itself

            record_session(study.paths.root, prof, dataset, overrides)
        return study

    @property
    def data_dir(self) -> Path:
        """The cohort's folder (image paths in the manifest are relative to it)."""
        return self.dataset.root

    @property
    def run_id(self) -> str:
        """Identifies the run in every table caption (set by the pipeline; else the folder name)."""
        return os.environ.get(RUN_ID_ENV) or self.paths.root.name

    @cached_property
    def clinical(self) -> pd.DataFrame:
        return self.dataset.clinical

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """Built from the raw files and saved with the run (1 s; always fresh, never stale)."""
        manifest = self.dataset.manifest()
        self.save_table(manifest, "manifest")
        return manifest

    @cached_property
    def findings(self) -> dict[str, Any]:
        return self.dataset.findings(self.manifest)

    @cached_property
    def cohort(self) -> pd.DataFrame:
        """Patients with an image and their clinical inputs: what every model sees. Rows holding a value or
        an image outside the hard limits (`data.plausibility`) are left out, and listed in one line. Each row
        carries its image's decoded-pixel checksum (``pixel_sha256``); rows are in the order of their content
        (`splits.content_order`), so that folds and fits do not depend on the IDs or the table's order. The decode
        that makes a checksum also caches the letterboxes of the network, the encoder and the figures
        (`images.PixelHashes`)."""
        table = data.modelling_table(self.manifest, self.clinical)
        if self.excluded:
            table = table[~table["patient_id"].isin(self.excluded)]
            reasons = "; ".join(f"{pid}: {why}" for pid, why in self.excluded.items())
            progress.note(f"left out of training, outside the hard limits (data/plausibility.py): {reasons}")
        root = cache_dir(data_dir=self.data_dir)
        sizes = sorted({self.profile.image_size, self.recipe.size, self.FIGURE_SIZE})
        letterboxes = tuple(ImageCache(root, size) for size in sizes)
        table = table.assign(pixel_sha256=PixelHashes(root).of(table, self.data_dir, letterboxes))
        return table.iloc[splits.content_order(table)].reset_index(drop=True)

    @cached_property
    def people(self) -> pd.DataFrame:
        """`cohort` with one row per person, keyed as the out-of-fold tables are (`arms.persons.person_rows`):
        what subsets, subgroups and per-patient lookups of the out-of-fold tables are made from. The cohort
        itself when every person has one image."""
        from .arms.persons import person_rows  # deferred: imports torch

        return person_rows(self.cohort)

    def people_of(self, ids: Any) -> set[str]:
        """The keys in `people` (and in the out-of-fold tables) of the persons of these cohort rows (IDs of
        images): a subset made from image rows, such as those with a localised knee."""
        from .arms.persons import person_key  # deferred: imports torch

        return set(person_key(self.cohort).loc[list(ids)])

    @cached_property
    def excluded(self) -> dict[str, str]:
        """patient_id -> why the row cannot be used (a value or image outside the hard limits)."""
        return excluded_rows(data.modelling_table(self.manifest, self.clinical))

    def folds(self, group: str | None = "split_group") -> pd.DataFrame:
        """The outer folds all arms share (stratified by the 3-class label, grouped by image bytes)."""
        folds = splits.make_folds(self.cohort, "label_3class", self.profile.n_folds, self.profile.n_repeats,
                                  self.profile.seed, group=group)
        self.save_table(folds, "folds" if group else "folds_naive")
        return folds

    def images(self, size: int | None = None, progress: bool = True) -> np.ndarray:
        """Cached letterboxed images aligned with `cohort` rows, (N, size, size) uint8."""
        size = size or self.profile.image_size
        if size not in self._images:
            cache = ImageCache(cache_dir(data_dir=self.data_dir), size)
            self._images[size] = cache.load_all(self.cohort, self.data_dir, progress)
        return self._images[size]

    @cached_property
    def recipe(self) -> FeatureRecipe:
        """What the frozen pretrained encoder computes for every image (the profile's ``feature_*`` fields)."""
        return FeatureRecipe.of(self.profile)

    @cached_property
    def features(self) -> np.ndarray:
        """The frozen encoder's vector of every cohort image, aligned with `cohort` (computed once per image
        and view, then read from the cache)."""
        return feature_matrix(self.cohort, self.recipe, self.data_dir, threads=self.profile.num_threads)

    def rows(self, size: int | None = None, biomarkers: bool = False) -> pd.DataFrame:
        """The cohort with each patient's letterboxed image (column ``image``) and pretrained features
        (``features``): what every arm's ``fit(rows, y)`` receives. With ``biomarkers``, also the
        patient-level biomarkers (``bio_*``), ``biomarker_localised`` and the knees' ROI tiles (``roi_tiles``)."""
        table = self.cohort.assign(image=list(self.images(size, progress=False)), features=list(self.features))
        if biomarkers:
            table = with_biomarkers(table, self.biomarkers)
        return table

    @cached_property
    def biomarkers(self) -> BiomarkerData:
        """Knee localisation, ROIs and biomarkers of every cohort image (cached on disk by checksum)."""
        return cohort_biomarkers(self.cohort, self.data_dir, self.profile.roi_size, limit=self.profile.biomarker_limit)

    # -- the arms and their results (every notebook reads them through here) --------------------
    @cached_property
    def groups(self) -> pd.Series:
        """patient_id -> split group: what every bootstrap resamples (one person, one group). Keyed by
        the person where a person has several rows, as their out-of-fold tables are."""

        return groups_of(self.cohort)

    @cached_property
    def shared_folds(self) -> pd.DataFrame:
        return self.folds()

    def oofs(self, task: str, names: tuple[str, ...] | None = None, biomarkers: bool = False
             ) -> dict[str, pd.DataFrame]:
        """Out-of-fold tables of the arms (default: every declared arm) for ``task``, in the order given.

        Fitted folds are cached under the run's models folder, so each is trained once per run
        and every notebook reuses it. Each table is also written as ``oof/<arm>_<task>.csv``. A task
        this cohort cannot estimate (`not_estimable`) has no tables; nor has an arm it cannot fit.
        """

        names = tuple(names or DECLARED_ORDER)
        key = (task, names, biomarkers)
        if key not in self._oofs and self.not_estimable(task):
            self._oofs[key] = {}
        if key not in self._oofs:
            self._oofs[key] = run_arms(self.rows(biomarkers=biomarkers), self.shared_folds, task, names,
                                       self.profile, self.paths.models)
            for name, oof in self._oofs[key].items():
                self.save_oof(oof, name, task)
        return self._oofs[key]

    def unfitted(self) -> dict[str, str]:
        """The declared arms this cohort cannot fit, each with why (`arms.fittable`: the OST index without a
        weight, the T-score models without a T-score); they have no tables."""
        from .arms import fittable  # deferred: imports torch

        return fittable(DECLARED_ORDER, self.cohort)[1]

    def not_estimable(self, task: str) -> str | None:
        """Why ``task`` (binary, 3class, tscore) cannot be estimated on this cohort (`tasks.why_not_estimable`:
        no T-score, a class without patients), as words completing "not estimable on this cohort: ..."; None
        when it can."""
        return why_not_estimable(task, self.cohort)

    def save_oof(self, oof: pd.DataFrame, arm: str, task: str) -> Path:
        """Write an arm's out-of-fold table as ``oof/<arm>_<task>.csv`` (``patient_id, fold, seed, y_true,
        prob_<class>...``, the ablation command's format), so every metric of the report can be
        recomputed from the run folder alone."""
        folder = self.paths.root / "oof"
        folder.mkdir(exist_ok=True)
        return atomic_to_csv(oof, folder / f"{arm}_{task}.csv")

    def results(self, task: str, names: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Every arm's metrics with group-bootstrap CIs, on all patients and on the patients alone in
        their split group (sensitivity analysis); saved as ``results_<task>.csv``."""
        from .arms.foldcache import frame_digest  # deferred: imports torch

        key = ("results", task, names)
        if key in self._tables:
            return self._tables[key]
        p, oofs = self.profile, self.oofs(task, names)
        singletons, states = singleton_patients(self.cohort), self.training_states(task, tuple(oofs))
        inputs = {"task": task, "n_boot": p.n_boot, "seed": p.seed, "singletons": sorted(singletons),
                  "oofs": {name: frame_digest(oof) for name, oof in oofs.items()},
                  "groups": frame_digest(self.groups.reset_index()), "states": frame_digest(states)}
        table = self._reused(f"results_{task}", inputs, lambda: pd.concat(
            [evaluation.score_arms(oofs, task, p.n_boot, p.seed, self.groups),
             evaluation.score_arms(oofs, task, p.n_boot, p.seed, self.groups, singletons, "singletons"), states],
            ignore_index=True))
        self._tables[key] = table
        return table

    def _reused(self, name: str, inputs: dict[str, Any], compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """Table ``name`` as an earlier notebook of this run saved it, when it was made from the same
        ``inputs`` by the same package source and its file still has the SHA-256 recorded beside it
        (``tables/<name>.inputs.json``); else ``compute()``, saved with that record. The bootstrap
        tables take seconds each and several notebooks read them; a CSV reads back exactly."""
        from .arms.foldcache import code_version  # deferred: imports torch

        record, path = self.paths.tables / f"{name}.inputs.json", self.paths.tables / f"{name}.csv"
        digest = hashlib.sha256(json.dumps({**inputs, "code": code_version((".",))}, sort_keys=True,
                                           default=str).encode()).hexdigest()
        try:
            saved = json.loads(record.read_text())
            if saved["inputs"] == digest:
                return read_csv(io.BytesIO(read_verified(path, saved["sha256"])), dtype={"patient_id": str})
        except (OSError, ValueError, KeyError, TypeError, ChecksumError):
            pass
        table = compute()
        self.save_table(table, name)
        atomic_write_text(record, json.dumps({"inputs": digest, "sha256": sha256_bytes(path.read_bytes())}))
        return table

    def training_states(self, task: str, names: tuple[str, ...] | None = None) -> pd.DataFrame:
        """In how many folds each residual arm kept its untrained state (from the fold histories)."""

        return training_states(self.paths.models, tuple(names or DECLARED_ORDER), task, self.shared_folds)

    def classes(self, task: str) -> tuple[str, ...]:
        return get_task(task).classes

    def tscore_oofs(self) -> dict[str, pd.DataFrame]:
        """The T-score arms' own tables (predicted T-score mean and sd): the folds of their class views."""

        if "tscore" not in self._oofs:
            self._oofs["tscore"] = tscore_predictions(self.rows(), self.shared_folds, TSCORE_ARMS, self.profile,
                                                      self.paths.models)
            for name, oof in self._oofs["tscore"].items():
                self.save_oof(oof, name, "tscore")
        return self._oofs["tscore"]

    def tscore_regression(self) -> pd.DataFrame:
        """Every T-score arm's regression metrics: MAE, r, R^2, calibration, the no-information MAE and
        the coverage of its 95% predictive intervals, overall and per WHO class (``results_tscore.csv``)."""

        table = evaluation.tscore_regression(self.tscore_oofs(), self.profile.n_boot, self.profile.seed, self.groups,
                                             who_classes(self.people))
        self.save_table(table, "results_tscore")
        return table

    def tscore_coverage(self) -> pd.DataFrame:
        """Coverage of every T-score arm's 95% predictive intervals judged given the predictors (quarters of the
        predicted T-score) and per measured WHO class against what the model expects there
        (`evaluation.conditional_coverage`, column ``model``; ``coverage_tscore.csv``)."""
        p = self.profile
        parts = [evaluation.conditional_coverage(pred, 4, p.n_boot, p.seed, self.groups).assign(model=name)
                 for name, pred in self.tscore_oofs().items()]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()  # no T-score: no interval
        self.save_table(table, "coverage_tscore")
        return table

    def tscore_comparison(self) -> pd.DataFrame:
        """Paired MAE of the fusion and clinical T-score models (``comparisons_tscore.csv``)."""

        table = tscore_comparison(self.tscore_oofs(), self.profile.n_boot, self.profile.seed, self.groups)
        self.save_table(table, "comparisons_tscore")
        return table

    def positive_control(self) -> pd.DataFrame:
        """Sex and age from the image alone, for the pretrained encoder's head and the from-scratch CNN
        (`control.positive_control`), on the shared folds: ``positive_control.csv``, and the out-of-fold
        tables by (arm, target) in `control_oofs`."""

        p, self.control_oofs = self.profile, {}
        table = control.positive_control(self.rows(), self.shared_folds, p, self.paths.models, p.n_boot, p.seed,
                                         self.groups, save_oof=self.save_oof, oofs=self.control_oofs)
        self.save_table(table, "positive_control")
        return table

    def comparisons(self, tasks: tuple[str, ...] | None = None) -> pd.DataFrame:
        """The declared comparisons: the primary, and the secondary family of every task of
        `ablation.FAMILY_TASKS` Holm-adjusted as ONE family. Computed once per run and saved as
        ``comparisons.csv``, so every notebook reads the same ``p_holm``; ``tasks`` picks the rows returned."""
        from .arms.foldcache import frame_digest  # deferred: imports torch

        if ("comparisons",) not in self._tables:
            p, oofs = self.profile, {t: self.oofs(t) for t in FAMILY_TASKS}
            states = pd.concat([self.training_states(t) for t in FAMILY_TASKS], ignore_index=True)
            inputs = {"n_boot": p.n_boot, "seed": p.seed, "groups": frame_digest(self.groups.reset_index()),
                      "oofs": {f"{name}_{t}": frame_digest(oof) for t, by in oofs.items() for name, oof in by.items()},
                      "states": frame_digest(states)}
            self._tables[("comparisons",)] = self._reused("comparisons", inputs, lambda: declared_comparisons(
                oofs, p.n_boot, p.seed, self.groups, states=states))
        table = self._tables[("comparisons",)]
        return table if tasks is None else table[table["task"].isin(tasks)].reset_index(drop=True)

    def figure(self, fig: Figure, name: str, jpeg: bool = False) -> SavedFigure:
        """Save a figure under the run, stamped with the run and profile that made it (`figures.save`), for the
        notebook to show with its alt text; ``jpeg`` shows it as JPEG (radiograph sheets)."""
        saved = save(fig, self.paths.figures, name, stamp=f"run {self.run_id} · profile {self.profile.name}",
                     jpeg=jpeg)
        if os.environ.get(RUN_ID_ENV):  # the book shows the run's file, with the alt text
            saved.href = self._href(saved.path)
        return saved

    def _href(self, path: Path) -> str:
        """A run file's URL from the executed notebooks' folder (``../tables/x.csv``), under `osteo run`; else
        from the working folder (a notebook session's own)."""
        if os.environ.get(RUN_ID_ENV):
            return f"../{path.relative_to(self.paths.root).as_posix()}"
        return Path(os.path.relpath(path)).as_posix()

    def save_table(self, df: pd.DataFrame, name: str, index: bool = False) -> Path:
        """Write a table atomically into the run's tables folder."""
        return atomic_to_csv(df, self.paths.tables / f"{name}.csv", index=index)

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.paths.tables / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not produced yet; run the notebook that makes it first")
        return read_csv(path, dtype={"patient_id": str})

    def save_json(self, obj: Any, name: str) -> Path:
        return atomic_write_text(self.paths.tables / f"{name}.json", json.dumps(obj, indent=2, default=str))

    def caption(self, what: str) -> str:
        """A table caption naming the run and profile that made it, and the image encoder (plain text: an
        HTML caption shows Markdown's backticks as they are)."""
        return f"{what} — run {self.run_id}, profile {self.profile.name}, image: {self.recipe.describe()}"

    def table(self, shown: pd.DataFrame, what: str, csv: str, index: bool = False, save: bool = False) -> HTML:
        """``shown`` as the page shows it (`htmltable.table_html`), captioned by `caption`, with a link to the
        run's file that holds all of it: ``csv`` names a table of the run's tables folder (``comparisons``) or
        a file by its path in the run folder (``oof/fusion_binary.csv``); ``save`` writes ``shown`` as that
        table first. Under `osteo run` the link is relative to the executed notebooks' folder, where the book
        finds it too (`pipeline.build_book` copies every linked file); elsewhere, to the working folder."""
        from IPython.display import HTML  # deferred: imports IPython

        if save:
            self.save_table(shown, csv, index=index)
        path = self.paths.root / csv if "/" in csv else self.paths.tables / f"{csv}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the table to link is not in the run folder; save it first")
        return HTML(table_html(shown, self.caption(what), self._href(path), "All of it, as CSV", index=index))
