"""Problems that stop a run on a cohort, collected over every row, column and image, and grouped.

Reading a cohort never stops at its first bad cell: every problem is collected (`Problem`), so
that `cohort check` lists them all in one pass and `run`, `ablation` and `train-final` refuse the
cohort with all of them at once (`CohortProblemsError`, exit status 2, before any work). Problems
of one kind in one column are one line with a count, so that 5,000 rows with one problem read as
a single line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .errors import DataValidationError

#: how many rows (or images) a grouped line names before it says how many more there are
ROWS_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One problem in one row (or image): ``where`` and ``problem`` name its group, ``detail`` the value."""

    where: str  # "table.csv, column 'Sex'" or "images"
    problem: str  # what is wrong, the same for every row of the group
    row: int | None = None  # the row of the table file (the header is row 1)
    detail: str | None = None  # the value as entered, or the image and its error
    patient_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TableProblems:
    """The problems of a table read by `cohort check` and how many rows it has: kept in the table's
    ``attrs``, which pandas deep-copies at every operation, so it is immutable and never copied."""

    problems: tuple[Problem, ...] = ()
    rows: int = 0

    def __deepcopy__(self, memo: dict) -> TableProblems:
        return self


def _item(p: Problem) -> str:
    if p.row is None:
        return p.detail or ""
    return f"{p.row}" if p.detail is None else f"{p.row} ({p.detail})"


def group_lines(problems: Iterable[Problem | dict[str, Any]]) -> list[str]:
    """One line per (where, problem), in the order first met: how many rows (or images) and the first ones."""
    groups: dict[tuple[str, str], list[Problem]] = {}
    for p in problems:
        p = p if isinstance(p, Problem) else Problem(**p)
        groups.setdefault((p.where, p.problem), []).append(p)
    lines = []
    for (where, problem), items in groups.items():
        if all(p.row is None and p.detail is None for p in items):
            lines.append(f"{where}: {problem}")
            continue
        noun = "row" if items[0].row is not None else "image"
        shown = ", ".join(_item(p) for p in items[:ROWS_SHOWN])
        more = f" and {len(items) - ROWS_SHOWN} more" if len(items) > ROWS_SHOWN else ""
        count = f"{noun} " if len(items) == 1 else f"{len(items)} {noun}s: "
        lines.append(f"{where}: {problem}: {count}{shown}{more}")
    return lines


def count_text(problems: list[Problem | dict[str, Any]]) -> str:
    """"6 problems of 5 kinds": how many problems and groups (`group_lines`) a list holds."""
    kinds = len(group_lines(problems))
    return f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" + (f" of {kinds} kinds" if kinds > 1 else "")


class CohortProblemsError(DataValidationError, UsageError):
    """A cohort with problems that stop a command, every one of them (exit status 2, before any work).

    ``problems`` holds the lines the command line prints: one line when there is one group of
    problems, else a first line saying how many and one line per group.
    """

    def __init__(self, cohort: str, spec: str, problems: list[Problem | dict[str, Any]]) -> None:
        lines = group_lines(problems)
        if len(lines) == 1:
            self.problems = [f"cohort {cohort}: {lines[0]}"]
        else:
            self.problems = [f"cohort {cohort}: {count_text(problems)} stop this command (`osteo cohort check "
                             f"{spec}` lists them with every finding):", *lines]
        super().__init__("\n".join(self.problems))
