"""`cohort check` and the manifest on a large cohort: time and peak memory.

Builds a cohort of N images (default 5,000) in a temporary folder by writing the published dataset's
images under new IDs and file names (each copy made unique by a few bytes after the JPEG's end, which
decoders ignore, so no two files are byte-identical), with a CSV table of the source patients' clinical
values under the new IDs and its spec (`data.export`); nothing is kept. Each measurement runs in a
fresh process: wall time and that process's peak resident set size.
Run: python benchmarks/bench_cohort.py [--images 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import write_result


def build(root: Path, n: int) -> Path:
    """The N-image cohort under root; returns its spec."""
    from osteo_helpers import data
    from osteo_helpers.data.export import SPEC_NAME, TABLE_NAME, export_table, spec_text

    source = data.Cohort.open()
    manifest = source.manifest()
    rows = data.modelling_table(manifest, source.clinical).reset_index(drop=True)
    clinical = source.clinical.set_index("patient_id").loc[rows["patient_id"]].reset_index()
    pick = [i % len(rows) for i in range(n)]
    ids = [f"K{i:05d}" for i in range(n)]
    (root / "images").mkdir(parents=True)
    images = {}
    for i, (k, pid) in enumerate(zip(pick, ids, strict=True)):
        payload = (source.root / rows.at[k, "image_path"]).read_bytes() + f"copy {i}".encode()
        (root / "images" / f"{pid}.jpg").write_bytes(payload)
        images[pid] = f"images/{pid}.jpg"
    big = clinical.iloc[pick].reset_index(drop=True).assign(patient_id=ids)
    big_manifest = manifest.set_index("patient_id").loc[rows["patient_id"].iloc[pick]].reset_index()
    big_manifest["patient_id"] = ids
    table, entries = export_table(big, big_manifest, source.spec, images)
    table.to_csv(root / TABLE_NAME, index=False)
    (root / SPEC_NAME).write_text(spec_text(source.spec, entries, False, "jpeg"))
    return root / SPEC_NAME


MANIFEST = "from osteo_helpers import data; import sys; data.Cohort.open(sys.argv[1]).manifest()"
#: runs a command and prints its peak RSS (KiB): each measurement gets its own parent, so peaks never mix
WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def measure(argv: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one fresh process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAP, *argv], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(int(done.stdout.split()[-1]) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--keep", type=Path, default=None, help="build the cohort here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "cohort"
        t0 = time.perf_counter()
        spec = build(root, args.images)
        built = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (root / "images").iterdir()) / 2**30
        manifest = measure([sys.executable, "-c", MANIFEST, str(spec)])
        check = measure([sys.executable, "-m", "osteo_helpers", "cohort", "check", str(spec), "--json"])
    write_result("cohort_check", {
        "images": args.images, "image_gib": round(size, 2), "build_seconds": round(built, 1),
        "manifest": manifest, "cohort_check": check})


if __name__ == "__main__":
    main()
