"""Choose the frozen encoder's recipe on the positive control (sex, age), inside training folds: the step the
protocol declares (book/protocol.md). Prints the candidates' scores on the whole cohort (the choice) and the
nested estimate of the procedure, and writes both under outputs/encoder-choice/.

    .venv/bin/python scripts/choose_encoder_recipe.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile

from osteo_helpers.encoder_choice import CANDIDATES, candidate_rows, choose, nested_choice
from osteo_helpers.fileio import atomic_to_csv, atomic_write_text
from osteo_helpers.folders import output_root
from osteo_helpers.study import Study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        study = Study.open("fast", scratch, args.data_dir)
        cohort, profile = study.cohort, study.profile
        rows_of = {c: candidate_rows(cohort, c, study.data_dir) for c in CANDIDATES}
    table = choose(rows_of, set(cohort["patient_id"]), profile, profile.seed)
    choices, nested = nested_choice(rows_of, profile, profile.seed)
    out = output_root() / "encoder-choice"
    out.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(table, out / "candidates.csv")
    atomic_to_csv(choices, out / "nested_choices.csv")
    atomic_write_text(out / "nested_estimate.json", json.dumps(nested, indent=2))
    print(table.round(3).to_string())
    print(choices.to_string())
    print("nested estimate of the procedure:", {k: round(v, 3) for k, v in nested.items()})


if __name__ == "__main__":
    main()
