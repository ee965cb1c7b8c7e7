"""spark-submit entry point: Fit a Gaussian mixture to a Parquet input and write the model directory with metrics.json.

    spark-submit --py-files dist/sparkgmm.zip jobs/fit_gmm.py --help

Same flags as ``python -m sparkgmm fit``; see README.md.
"""

import sys

from sparkgmm.cli import main

if __name__ == "__main__":
    sys.exit(main(["fit", *sys.argv[1:]]))
