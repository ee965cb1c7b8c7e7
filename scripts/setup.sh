#!/usr/bin/env bash
# Set up a fresh machine for sparkgmm: checks Python >= 3.11 and Java 17+, creates .venv, installs sparkgmm with its
# test extra, which brings every optional extra (pyspark brings Spark itself; [connect] the Spark Connect client). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "setup: sparkgmm needs Python >= 3.11; $("$python" --version 2>&1) found" >&2; exit 1; }
command -v java >/dev/null \
  || { echo "setup: Spark needs Java 17 or newer on PATH (e.g. apt-get install openjdk-17-jre-headless)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
echo "setup: ready ($(.venv/bin/python -c 'import pyspark, numpy; print("pyspark", pyspark.__version__, "numpy", numpy.__version__)'))"
