"""Build dist/sparkgmm.zip: the sparkgmm package as spark-submit's --py-files wants it.

    .venv/bin/python scripts/package.py [--output dist/sparkgmm.zip]

The zip holds the package's .py files only (no tests, no caches), with fixed timestamps so that the same source
gives the same bytes. Its dependencies (numpy, scipy, pyarrow, pandas) must be on every worker; see README.md.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_EPOCH = (1980, 1, 1, 0, 0, 0)


def build(output: Path) -> Path:
    sources = sorted(p for p in (ROOT / "sparkgmm").rglob("*.py") if "__pycache__" not in p.parts)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source in sources:
            entry = zipfile.ZipInfo(source.relative_to(ROOT).as_posix(), date_time=_EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, source.read_bytes())
    partial.replace(output)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "sparkgmm.zip")
    args = parser.parse_args()
    print(build(args.output.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
