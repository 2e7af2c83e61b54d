"""Write the README's numbers from a finished run: `scripts/readme_numbers.py outputs/fast [--readme README.md]`.

The block between the README's markers (`headline.README_START`, `headline.README_END`) is rewritten from the
run's provenance and tables (`headline.readme_block`): the answer, the primary comparison, the headline AUROCs
with their CIs and whether each is the same on every CPU, the positive control. Nothing else is touched; a run
that is not finished, or a README without the markers, is one line and exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from osteo_helpers.config import PROJECT_ROOT
from osteo_helpers.errors import UsageError
from osteo_helpers.fileio import atomic_write_text
from osteo_helpers.folders import shorten_paths
from osteo_helpers.headline import readme_block, replace_block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run folder, e.g. outputs/fast")
    parser.add_argument("--readme", default=str(PROJECT_ROOT / "README.md"), help="the file to rewrite")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    try:
        text = readme.read_text(encoding="utf-8")
        block = readme_block(args.run, shown_as=shorten_paths(str(Path(args.run).resolve())))
        new = replace_block(text, block)
    except (OSError, UsageError, ValueError) as exc:
        print(f"error: {readme}: {exc}" if isinstance(exc, ValueError) else f"error: {exc}", file=sys.stderr)
        return 2
    if new != text:
        atomic_write_text(readme, new)
    print(f"{readme}: the numbers of {args.run} ({'rewritten' if new != text else 'unchanged'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
