"""CPU results stay bit-identical across a change of the training code: save, then compare.

Fits every network arm of the smoke profile (real data, binary task, the T-score arm too) and
writes its out-of-fold table and training histories. Run it once on the old code with ``--save``
(into a folder outside the checkout), once on the new code with ``--compare``; any difference in
any value, to the last bit, is printed and the exit status is 1.

With ``--workers N`` the new code trains in N local worker processes: the same tables prove the
executor changes nothing, and the printed seconds (training only, the rows already loaded) give its
overhead against an in-process run.

Run: PYTHONPATH=. python benchmarks/cpu_identity.py --save /tmp/before
     PYTHONPATH=. python benchmarks/cpu_identity.py --compare /tmp/before [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from osteo_helpers import arms, executor
from osteo_helpers.study import Study

ARMS = ("tabular", "image", "fusion_concat", "fusion", "fusion_tscore")


def outputs(workers: int | None) -> dict[str, pd.DataFrame]:
    """OOF tables and histories of every network arm, trained from an empty fold cache."""
    if workers:
        executor.configure(executor.LocalWorkers(workers))
    study = Study.open("smoke", tempfile.mkdtemp(prefix="osteo-identity-"))
    rows, folds = study.rows(), study.folds()
    out = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        for name in ARMS:
            out[f"oof_{name}"] = arms.run_arm(name, rows, folds, "binary", profile=study.profile, cache=Path(cache),
                                              progress_bar=False)
            fit_task = "tscore" if name.endswith("_tscore") else "binary"
            out[f"history_{name}"] = arms.load_histories(Path(cache), name, fit_task)
    print(f"trained {len(ARMS)} network arms in {time.perf_counter() - start:.1f} s "
          f"({f'{workers} local workers' if workers else 'in-process'})")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, help="write the tables here (outside the checkout)")
    action.add_argument("--compare", type=Path, help="compare with the tables saved here")
    parser.add_argument("--workers", type=int, default=None, help="train in N local worker processes")
    args = parser.parse_args()
    tables = outputs(args.workers)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            table.to_pickle(args.save / f"{name}.pkl")
        print(f"saved {len(tables)} tables in {args.save}")
        return 0
    differ = []
    for name, table in tables.items():
        before = pd.read_pickle(args.compare / f"{name}.pkl")
        try:
            pd.testing.assert_frame_equal(before, table, check_exact=True)
        except AssertionError as exc:
            differ.append(f"{name}: {str(exc).splitlines()[0]}")
    for line in differ:
        print(f"differs: {line}")
    print(f"{len(tables) - len(differ)} of {len(tables)} tables bit-identical to {args.compare}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
