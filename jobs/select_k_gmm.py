"""spark-submit entry point: Fit every candidate k (and covariance type); write candidates.json/.csv and the best model.

    spark-submit --py-files dist/sparkgmm.zip jobs/select_k_gmm.py --help

Same flags as ``python -m sparkgmm select``; see README.md.
"""

import sys

from sparkgmm.cli import main

if __name__ == "__main__":
    sys.exit(main(["select", *sys.argv[1:]]))
