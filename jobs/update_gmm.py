"""spark-submit entry point: Update a saved model online with the rows of a Parquet input; write the new model
directory and its metrics.json.

    spark-submit --py-files dist/sparkgmm.zip jobs/update_gmm.py --help

Same flags as ``python -m sparkgmm update``; see README.md.
"""

import sys

from sparkgmm.cli import main

if __name__ == "__main__":
    sys.exit(main(["update", *sys.argv[1:]]))
