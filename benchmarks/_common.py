"""Shared set-up for the benchmark scripts: the real cohort and its cached images, or a carried cache."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def machine() -> dict[str, object]:
    info: dict[str, object] = {"platform": platform.platform(), "cpus": torch.get_num_threads(),
                               "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_cohort(size: int, carried: Path | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The modelling cohort and its letterboxed images: from the real data, or from a carried .npz cache."""
    if carried is not None:
        cohort = pd.read_csv(carried / "cohort.csv", dtype={"patient_id": str})
        images = np.load(carried / f"images_{size}.npz")["images"]
        return cohort, images
    from osteo_helpers.study import Study

    study = Study.open("fast", image_size=size)
    return study.cohort, study.images(size, progress=False)


def write_result(name: str, result: dict[str, object], out_dir: Path | None = None) -> Path:
    out_dir = out_dir or Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M"), **result}, indent=2))
    print(json.dumps(result, indent=2))
    return path
