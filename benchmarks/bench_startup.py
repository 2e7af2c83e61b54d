"""How long a command takes to answer from a cold process: help, a usage error, a spec error, one `predict`.

Each command runs ``--repeats`` times in a fresh interpreter; the median wall time is reported, with the
modules that cost most to import (``python -X importtime``) for `--help` and for `predict`. ``--python``
and ``--cwd`` point at another checkout's interpreter to time the code before a change in the same sitting.
A `predict` needs a bundle: ``--bundle DIR`` (default: a smoke `train-final` made once in a temporary
folder). Take it on a quiet machine.
Run: python benchmarks/bench_startup.py [--python PY --cwd DIR] [--bundle DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_result

ROOT = Path(__file__).resolve().parents[1]
KNEE = "normal/N1.JPEG"


def commands(bundle: Path, data: Path, bad_spec: Path) -> dict[str, list[str]]:
    return {
        "help": ["--help"],
        "predict --help": ["predict", "--help"],
        "usage error (--set epochs=x)": ["run", "--set", "epochs=x"],
        "spec error (run --cohort not-TOML)": ["run", "--cohort", str(bad_spec)],
        "predict one patient": ["predict", "--model", str(bundle), "--image", str(data / KNEE), "--age", "60",
                                "--sex", "female"],
    }


def seconds(python: str, cwd: Path, argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([python, "-m", "osteo_helpers", *argv], cwd=cwd, capture_output=True)
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 2)


def slowest_imports(python: str, cwd: Path, argv: list[str], n: int = 8) -> list[tuple[str, float]]:
    """The top-level imports that took longest (cumulative seconds), from ``python -X importtime``."""
    err = subprocess.run([python, "-X", "importtime", "-m", "osteo_helpers", *argv], cwd=cwd, capture_output=True,
                         text=True).stderr
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
            if cumulative.isdigit() and not name.startswith(" ") and "." not in name.strip():
                rows.append((name.strip(), round(int(cumulative) / 1e6, 2)))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--cwd", type=Path, default=ROOT)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "knee-osteoporosis")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="startup")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or Path(tmp) / "bundle"
        if args.bundle is None:
            subprocess.run([args.python, "-m", "osteo_helpers", "train-final", "--profile", "smoke", "--out",
                            str(bundle)], cwd=args.cwd, check=True, capture_output=True)
        bad = Path(tmp) / "bad.toml"
        bad.write_text("x = [\n")
        runs = commands(bundle, args.data_dir, bad)
        timed = {name: seconds(args.python, args.cwd, argv, args.repeats) for name, argv in runs.items()}
        imports = {name: slowest_imports(args.python, args.cwd, runs[name]) for name in ("help", "predict one patient")}
    write_result(args.name, {"python": args.python, "cwd": str(args.cwd), "median_seconds": timed,
                             "slowest_imports_seconds": imports})


if __name__ == "__main__":
    main()
