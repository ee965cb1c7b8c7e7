"""Submitted to the test cluster by test_cluster.py: where do the driver and each executor import sparkgmm from, and
could the executor's Python import it without what spark-submit shipped? Prints one JSON line."""

import json
import os
import subprocess
import sys

import sparkgmm
from pyspark.sql import SparkSession


def where(_rows):
    import sparkgmm as shipped  # on the executor: from --py-files, or not at all

    without_shipped = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    bare = subprocess.run([sys.executable, "-c", "import sparkgmm"], env=without_shipped, cwd="/",
                          capture_output=True, text=True)
    yield {"file": shipped.__file__, "cwd": os.getcwd(), "python": sys.executable,
           "bare_import_rc": bare.returncode, "bare_import_error": bare.stderr.strip().splitlines()[-1:]}


spark = SparkSession.builder.getOrCreate()
executors = spark.sparkContext.parallelize(range(8), 8).mapPartitions(where).collect()
print(json.dumps({"driver": sparkgmm.__file__, "driver_python": sys.executable, "executors": executors}))
spark.stop()
