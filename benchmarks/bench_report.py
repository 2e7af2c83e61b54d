"""The whole analysis as a user runs it: `run --profile fast` from a cold cache, a warm cache, and a rerun.

Three runs, side by side, each in a fresh process: (1) cold: empty image/biomarker cache and empty
run folder; (2) warm cache: the cache of (1), an empty run folder (every fold trained again);
(3) rerun: into the run folder of (2), so every fitted fold is reused. Reports wall time, the time of
every notebook (from provenance.json) and the peak resident memory of the largest process (the
notebooks run one after another, each in its own kernel). Take it on a quiet machine.
Run: python benchmarks/bench_report.py [--profile fast] [--no-book]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_result


def run(profile: str, out: Path, cache: Path, book: bool) -> dict[str, object]:
    env = {**os.environ, "OSTEO_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "osteo_helpers", "run", "--profile", profile, "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd + ([] if book else ["--no-book"]), check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    steps = json.loads((out / "provenance.json").read_text()).get("steps", [])
    return {"wall_seconds": round(seconds, 1), "steps": {s["name"]: s.get("seconds") for s in steps},
            "peak_rss_mib_largest_process": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--no-book", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache, first, second = Path(tmp) / "cache", Path(tmp) / "cold", Path(tmp) / "warm"
        result = {"profile": args.profile, "book": not args.no_book,
                  "cold": run(args.profile, first, cache, not args.no_book),
                  "warm_cache": run(args.profile, second, cache, not args.no_book),
                  "rerun_same_folder": run(args.profile, second, cache, not args.no_book)}
    write_result(f"report_{args.profile}", result, args.out)


if __name__ == "__main__":
    main()
