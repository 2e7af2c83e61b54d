"""What several commands share: the profile and executor options, `--set`, the bundle's signing key, a
terminal table, the one-pass check of a cohort (`data check`, `cohort check`). Parser-building only reads
plain constants (`config`, `vocabulary`): nothing heavy is imported until a command runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import executor
from ..config import PROFILES, get_profile
from ..errors import UsageError


def add_profile_options(parser: argparse.ArgumentParser, default: str | None = "fast") -> None:
    profiles = sorted(PROFILES)
    parser.add_argument("--profile", choices=profiles, default=default, required=default is None,
                        help="named settings (" + ", ".join(profiles) + "; `osteo profiles` lists every field)"
                             + (f"; default {default}" if default else ""))
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="the dataset folder (default: $OSTEO_DATA_DIR, then data/raw, then "
                             "../shared/data/knee-osteoporosis); with --cohort, the cohort's folder when its spec "
                             "names none")
    parser.add_argument("--cohort", default=None, metavar="SPEC.toml",
                        help="a cohort spec (README: bring your own cohort); default: the published dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one profile field (repeatable), e.g. --set epochs=10; checked before any work")
    where = parser.add_argument_group("where the fits run (the results are the same; default: one after another, "
                                      "in this process)")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="N local worker processes train fits side by side, sharing the machine's GPUs (several "
                            "fits on one GPU, each with its share of its memory) and CPU cores")
    where.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="each fit a task on a Ray cluster: auto (the cluster of $RAY_ADDRESS, else a Ray instance "
                            "started on this machine) or the head's HOST:PORT; needs the extra: "
                            "pip install -e \".[ray]\"")
    where.add_argument("--fits-per-gpu", type=int, default=None, metavar="K",
                       help="with --ray: each fit takes 1/K of a GPU (default 4)")


def add_key_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--sign-key FILE`` on a command (``what`` says what the command does with it; `signing`)."""
    parser.add_argument("--sign-key", default=None, metavar="FILE",
                        help=f"{what} with the secret key in FILE (HMAC-SHA256 over every file of the bundle; "
                             "make a key with: openssl rand -hex 32 > FILE). Without it the bundle's checksums "
                             "catch damage, not a deliberate edit")


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`--set KEY=VALUE` pairs as text; the profile parses and checks each value (config.Profile)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def checked_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The `--set` values, after the profile accepted them, a cohort spec that can be read, and the executor of
    `--workers` / `--ray` (UsageError otherwise, before any work); the executor then runs every fit."""
    overrides = parse_overrides(args.set)
    profile = get_profile(args.profile, **overrides)
    if getattr(args, "cohort", None):
        from ..data.spec import load_spec  # deferred: imports numpy

        args.cohort = load_spec(args.cohort)  # a spec error is one line now, before torch; read once, passed on
    from ..models import require_weights  # deferred: imports torch, numpy and tqdm, only once the cheap checks passed

    require_weights(profile.encoder, profile.weights, profile.cnn_width)

    executor.configure(executor.from_options(args.workers, args.ray, args.fits_per_gpu))
    return overrides


def text_table(rows: list[dict[str, Any]]) -> str:
    """Rows as left-aligned columns, the header first: a table a person reads in a terminal."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def check_cohort(spec: str | None, data_dir: str | None, as_json: bool) -> int:
    """Every finding of a cohort (`data check` is the published dataset's), all in one pass; exit 2 when
    one of them stops `run` (a bad table value, an unreadable image, no image at all)."""
    from ..data.spec import load_spec  # deferred: imports numpy

    checked = load_spec(spec)  # a spec error is one line now, before the table and image libraries load
    from .. import data  # deferred: imports numpy
    from ..data.problems import CohortProblemsError, count_text  # deferred: imports numpy

    cohort = data.Cohort.open(checked, data_dir)
    findings = cohort.findings()
    print(json.dumps(findings) if as_json else data.format_findings(findings))
    fatal, lines = findings["fatal_problems"], findings["fatal_problem_lines"]
    if len(lines) == 1:
        raise CohortProblemsError(cohort.spec.name, cohort.spec.source, fatal)  # one line, as `run` says it
    if fatal:
        raise UsageError(f"{count_text(fatal)} stop run, ablation and train-final on this cohort (listed "
                         + ("in fatal_problem_lines)" if as_json else "above)"))
    return 0
