"""`osteo answer RUN`: what a finished run found, in the terminal."""

from __future__ import annotations

import argparse


def _answer(args: argparse.Namespace) -> int:
    from ..headline import headline  # deferred: imports torch, sklearn and scipy

    print("\n".join(headline(args.run)))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    ans = sub.add_parser(
        "answer", help="print the answer and headline numbers of a finished run",
        description="Print what a finished `osteo run` found, read from its folder: the run (profile, status, "
                    "commit), the answer in words (as the report's first page states it), the primary comparison "
                    "(binary AUROC of the residual fusion minus the clinical model) with its 95% CI, the clinical "
                    "and fusion AUROCs with CIs and the positive control (sex and age from the image). A folder "
                    "that is not a finished run is one line, exit status 2.")
    ans.add_argument("run", metavar="RUN", help="a run folder made by `osteo run` (e.g. outputs/fast)")
    ans.set_defaults(func=_answer)
