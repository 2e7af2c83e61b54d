"""What a validation found, as one value: made by `validate.evaluate`, drawn and written by `report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Validation:
    """Everything a validation found; `write` puts it in a folder."""

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    coefficients: pd.DataFrame
    reliability: pd.DataFrame
    decision: pd.DataFrame
    flags: pd.DataFrame
    refused: pd.DataFrame
    scores: dict[tuple[str, str], np.ndarray]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
