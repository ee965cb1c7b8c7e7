"""spark-submit entry point: Score a Parquet input with a saved model: prediction, probability and log_density per row.

    spark-submit --py-files dist/sparkgmm.zip jobs/predict_gmm.py --help

Same flags as ``python -m sparkgmm predict``; see README.md.
"""

import sys

from sparkgmm.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
