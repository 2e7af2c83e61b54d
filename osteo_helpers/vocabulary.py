"""The vocabulary of a patient's clinical inputs: their canonical names, kinds, units, category values and
meanings, and the spellings `predict` and a cohort spec accept. Plain constants (no numpy, pandas or
scikit-learn): the command line builds its options from them before it imports anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

NUMERIC_FEATURES: tuple[str, ...] = ("age_years", "height_m", "weight_kg", "bmi", "max_walking_km")
# Missing here means something (men, premenopausal women): imputed with an explicit indicator.
NUMERIC_WITH_INDICATOR: tuple[str, ...] = ("menopause_age_years", "years_since_menopause", "pregnancies")
BOOLEAN_FEATURES: tuple[str, ...] = (
    "joint_pain", "smoker", "diabetes", "hypothyroidism", "seizure_disorder", "estrogen_use", "dialysis",
    "family_history_osteoporosis", "prior_fracture", "postmenopausal",
    "diet_low_protein", "diet_low_fat", "diet_vegetarian", "diet_other_restriction",
    "mh_hypertension", "mh_disc_disease", "mh_hysterectomy", "mh_cholecystectomy", "mh_caesarean",
    "mh_arthritis", "mh_liver_disease", "mh_hypercholesterolaemia",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("sex", "occupation_group", "fracture_site")
INPUT_FEATURES: tuple[str, ...] = NUMERIC_FEATURES + NUMERIC_WITH_INDICATOR + BOOLEAN_FEATURES + CATEGORICAL_FEATURES
#: The canonical values of each categorical input: a cohort spec maps its own spellings onto these.
CATEGORY_VALUES: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "occupation_group": ("business_or_trade", "health", "homemaker", "manual", "office_or_teaching", "other",
                         "retired", "student"),
    "fracture_site": ("hip", "lower_limb", "none", "other", "spine", "unspecified", "upper_limb"),
}
#: The canonical unit of each numeric input and the factor that converts every other accepted unit to it.
UNITS: dict[str, dict[str, float]] = {
    "age_years": {"years": 1.0},
    "height_m": {"m": 1.0, "cm": 0.01, "in": 0.0254},
    "weight_kg": {"kg": 1.0, "lb": 0.45359237},
    "bmi": {"kg/m2": 1.0},
    "max_walking_km": {"km": 1.0, "m": 0.001, "mi": 1.609344},
    "menopause_age_years": {"years": 1.0},
    "years_since_menopause": {"years": 1.0},
    "pregnancies": {"count": 1.0},
}
#: What each unit is called in a sentence ("did you mean centimetres?").
UNIT_NAMES: dict[str, str] = {"m": "metres", "cm": "centimetres", "in": "inches", "kg": "kilograms", "lb": "pounds",
                              "km": "kilometres", "mi": "miles", "years": "years", "kg/m2": "kg/m2", "count": "count"}


#: the outcome and what it is derived from: never a model input
TARGET_COLUMNS = ("t_score", "z_score", "diagnosis")
#: the flag set where free text names the outcome itself (recorded, never an input)
MENTION_COLUMN = "text_mentions_outcome"
#: each row's image path, relative to the cohort folder (specs with an [images] column)
IMAGE_FILE = "image_file"


@dataclass(frozen=True)
class ColumnSpec:
    meaning: str
    unit: str = ""
    role: str = "input"  # input | target | id | excluded


#: what each canonical column means (a kept column's meaning comes from its spec)
COLUMN_SPECS: dict[str, ColumnSpec] = {
    "patient_id": ColumnSpec("the row's ID in the cohort's table; also names the image", role="id"),
    "person_id": ColumnSpec("the person a row belongs to (several images of one person)", role="id"),
    "site": ColumnSpec("site the row comes from", role="excluded"),
    "batch": ColumnSpec("acquisition batch", role="excluded"),
    "knee_side": ColumnSpec("which knee the image shows", role="excluded"),
    "view": ColumnSpec("radiographic view", role="excluded"),
    "joint_pain": ColumnSpec("knee joint pain reported"),
    "sex": ColumnSpec("sex"),
    "age_years": ColumnSpec("age at examination", "years"),
    "menopause_age_years": ColumnSpec("age at menopause (missing for men and premenopausal women)", "years"),
    "height_m": ColumnSpec("height", "m"),
    "weight_kg": ColumnSpec("body weight", "kg"),
    "smoker": ColumnSpec("current smoker"),
    "diabetes": ColumnSpec("diabetes mellitus"),
    "hypothyroidism": ColumnSpec("hypothyroidism"),
    "pregnancies": ColumnSpec("number of pregnancies (missing for men and some women)", "count"),
    "seizure_disorder": ColumnSpec("seizure disorder"),
    "estrogen_use": ColumnSpec("oestrogen use"),
    "dialysis": ColumnSpec("on dialysis"),
    "family_history_osteoporosis": ColumnSpec("family history of osteoporosis"),
    "max_walking_km": ColumnSpec("maximum walking distance", "km"),
    "t_score": ColumnSpec("T-score: defines the diagnosis", "SD", role="target"),
    "z_score": ColumnSpec("Z-score: derived from the same measurement", "SD", role="target"),
    "bmi": ColumnSpec("body-mass index", "kg/m^2"),
    "diagnosis": ColumnSpec("WHO class from the T-score", role="target"),
    "occupation_group": ColumnSpec("occupation grouped: " + ", ".join(CATEGORY_VALUES["occupation_group"])),
    "prior_fracture": ColumnSpec("any prior fracture (missing where the text is not about fractures)"),
    "fracture_site": ColumnSpec("site of prior fracture: " + ", ".join(CATEGORY_VALUES["fracture_site"])),
    "diet_low_protein": ColumnSpec("eating habits mention low/no protein"),
    "diet_low_fat": ColumnSpec("eating habits mention low/no fat"),
    "diet_vegetarian": ColumnSpec("eating habits mention a vegetarian diet"),
    "diet_other_restriction": ColumnSpec("other dietary restriction (sugar, salt, sour, red meat, calcium, onion)"),
    "mh_hypertension": ColumnSpec("medical history mentions (high) blood pressure"),
    "mh_disc_disease": ColumnSpec("medical history mentions disc disease"),
    "mh_hysterectomy": ColumnSpec("medical history mentions uterus removal"),
    "mh_cholecystectomy": ColumnSpec("medical history mentions gall-bladder removal"),
    "mh_caesarean": ColumnSpec("medical history mentions caesarean section"),
    "mh_arthritis": ColumnSpec("medical history mentions (rheumatoid) arthritis"),
    "mh_liver_disease": ColumnSpec("medical history mentions fatty liver or cirrhosis"),
    "mh_hypercholesterolaemia": ColumnSpec("medical history mentions cholesterol/triglycerides"),
    MENTION_COLUMN: ColumnSpec("free text names osteopenia/osteoporosis: the outcome itself", role="excluded"),
    "postmenopausal": ColumnSpec("woman with a recorded menopause age"),
    "years_since_menopause": ColumnSpec("age minus menopause age (women after menopause)", "years"),
    "source_row": ColumnSpec("row of the table this row came from", role="excluded"),
    IMAGE_FILE: ColumnSpec("the row's image, relative to the cohort folder", role="excluded"),
}


NUMBER_FIELDS: tuple[str, ...] = NUMERIC_FEATURES + NUMERIC_WITH_INDICATOR
TRUE_WORDS = frozenset({"yes", "y", "true", "1"})
FALSE_WORDS = frozenset({"no", "n", "false", "0"})
#: the spellings each category accepts (the canonical values, and m / f for sex) -> the canonical value
CATEGORY_SPELLINGS: dict[str, dict[str, str]] = {
    name: {v: v for v in values} | ({"m": "male", "f": "female"} if name == "sex" else {})
    for name, values in CATEGORY_VALUES.items()
}


def _unit_fields() -> dict[str, tuple[str, str]]:
    fields: dict[str, tuple[str, str]] = {}
    for name, units in UNITS.items():
        own = next(iter(units))
        if name.endswith(f"_{own}"):
            stem = name[: -len(own)]
            fields.update({stem + unit: (name, unit) for unit in units if unit != own})
    return fields


#: a number named for its unit in each other unit of `tabular.UNITS` (those a cohort spec accepts):
#: height_cm -> (height_m, cm), weight_lb -> (weight_kg, lb), max_walking_mi -> (max_walking_km, mi)
UNIT_FIELDS: dict[str, tuple[str, str]] = _unit_fields()
#: every option (without dashes) and CSV column of a clinical input
FIELDS: tuple[str, ...] = INPUT_FEATURES + tuple(UNIT_FIELDS)


def spellings(name: str) -> list[tuple[str, str | None]]:
    """(field, unit) of every way to give input ``name``: its own name (its own unit, None) first."""
    return [(name, None)] + [(field, unit) for field, (input_, unit) in UNIT_FIELDS.items() if input_ == name]


def field_of(name: str, unit: str) -> str:
    """The field that gives input ``name`` in ``unit``: height_m in cm -> height_cm."""
    return next((field for field, given in spellings(name) if given == unit), name)
