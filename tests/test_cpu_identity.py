"""The classical arms give the same numbers on every CPU (the README says so; issue 32): their out-of-fold
predictions on the published data, with the smoke profile's folds, against checksums stored beside this file.

The checksum is of derived numbers only (patient ID, fold, seed, label and each probability to 9 decimals),
never of the data. Rounding to 9 decimals keeps it to what a reader could see: a last-bit difference of a
BLAS kernel changes no digit there. A change of the arms, the folds or the data fails this test: then check
the new numbers and store their checksums (the failure prints them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

CHECKSUMS = Path(__file__).with_name("classical_oof_checksums.json")


def oof_checksum(oof: pd.DataFrame) -> str:
    """SHA-256 of an out-of-fold table in a fixed order, every number to 9 decimals."""
    table = oof.sort_values(["seed", "fold", "patient_id"]).reset_index(drop=True)
    text = table.to_csv(index=False, float_format="%.9f", lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.realdata
def test_the_classical_arms_predict_the_same_as_on_every_other_cpu(real_data_dir, tmp_path):
    from osteo_helpers.arms import run_arm
    from osteo_helpers.headline import CPU_IDENTICAL_ARMS
    from osteo_helpers.study import Study

    study = Study.open("smoke", tmp_path / "run", real_data_dir)
    got = {name: oof_checksum(run_arm(name, study.cohort, study.shared_folds, "binary", profile=study.profile,
                                      progress_bar=False)) for name in CPU_IDENTICAL_ARMS}
    stored = json.loads(CHECKSUMS.read_text(encoding="utf-8"))
    assert got == stored["binary"], f"out-of-fold checksums changed: {json.dumps(got, indent=1)}"
