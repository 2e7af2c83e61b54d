"""`osteo profiles`: every profile field, its value in each profile and what it accepts."""

from __future__ import annotations

import argparse

from ..config import PROFILE_PURPOSES, PROFILES, profile_table
from .options import text_table


def _profiles(args: argparse.Namespace) -> int:
    for name in PROFILES:
        print(f"{name}: {PROFILE_PURPOSES.get(name, '')}")
    print()
    print(text_table(profile_table()))
    print("\nOverride any field with --set FIELD=VALUE (run, ablation, train-final).")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    profiles = sub.add_parser("profiles", help="list the profiles and their fields",
                              description="Every profile field, its value in each profile and what it accepts.")
    profiles.set_defaults(func=_profiles)
