"""First in the application test_cluster.py submits to its cluster of two 2-core workers (tests/cluster/
probe_application.py calls ``probe``): where do the driver and each executor import sparkgmm from, and could the
executor's Python import it without what spark-submit shipped? Then: does a pass run one task per core registered
when it starts, over partitions balanced by rows, while executors leave and join? Returns one report, the imports
under "imports" (run on its own, this script prints it as one JSON line).

The input is skewed (one of its eight partitions holds most rows). Its blocks are stored in local files; then one
executor is removed (its files and cached records go with it) and a pass runs on the other; then an executor is
asked for again and, once it has registered, a last pass runs on both. Every pass answers the same E-step.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from pyspark import StorageLevel, cloudpickle
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import sparkgmm
from sparkgmm import Mixture
from sparkgmm.passes import EStep
from sparkgmm.spark.engine.rdd import RddBlocks

# imported by probe_application.py, this module's functions reach the executors by value (they cannot import it)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

ROWS = [7000, 500, 500, 500, 500, 500, 250, 250]  # 10,000 rows in eight partitions, one holding 70%


def rows_of(index):
    rng = np.random.default_rng(index)
    return [(row.tolist(),) for row in rng.normal(index % 3, 1.0, (ROWS[index], 3))]


def wait_for(condition, what, timeout=120.0):
    """Poll a condition of the cluster's state (executors registering or leaving) up to a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def where_imported(_rows):
    import sparkgmm as shipped  # on the executor: from --py-files, or not at all

    without_shipped = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    bare = subprocess.run([sys.executable, "-c", "import sparkgmm"], env=without_shipped, cwd="/",
                          capture_output=True, text=True)
    yield {"file": shipped.__file__, "cwd": os.getcwd(), "python": sys.executable,
           "bare_import_rc": bare.returncode, "bare_import_error": bare.stderr.strip().splitlines()[-1:]}


def where_tasks_ran(blocks):
    """The executor working directory of every task of a pass started now (standalone: work-<i>/app/<executor>)."""
    return blocks.loop_rdd.mapPartitions(lambda _: [os.getcwd()]).collect()


def probe(spark):
    """The imports, then passes while an executor leaves and a new one joins; ends with two executors again."""
    sc = spark.sparkContext
    imports = {"driver": sparkgmm.__file__, "driver_python": sys.executable,
               "executors": sc.parallelize(range(8), 8).mapPartitions(where_imported).collect()}
    df = spark.createDataFrame(sc.parallelize(range(len(ROWS)), len(ROWS)).flatMap(rows_of), "features array<double>")
    mixture = Mixture(np.full(3, 1 / 3), np.array([[0.0] * 3, [1.0] * 3, [2.0] * 3]), np.ones((3, 3)), "diag")
    input_rows = sc.parallelize(range(len(ROWS)), len(ROWS)).map(lambda i: ROWS[i]).collect()
    report = {"imports": imports, "input_rows": input_rows}

    def snapshot(name, blocks):
        (stats,) = blocks.run_pass([EStep(mixture, count_hard=True)], f"probe: {name}")
        report[name] = {
            "parallelism": sc.defaultParallelism,
            "tasks": blocks.loop_rdd.getNumPartitions(),
            "task_rows": blocks.task_rows(),
            "executors": sorted(set(where_tasks_ran(blocks))),
            "log_likelihood": stats.log_likelihood,
            "hard_counts": stats.hard_counts.tolist(),
            "second": stats.second.ravel().tolist(),
        }

    jsc = sc._jsc.sc()
    with RddBlocks(df, F.col("features"), None, StorageLevel.MEMORY_AND_DISK, block_bytes=4096) as blocks:
        report["rebalanced"] = blocks.rebalanced
        snapshot("both executors", blocks)
        ids = jsc.getExecutorIds()  # a Scala Seq of ids, the driver excluded
        report["killed"] = jsc.killExecutor(sorted(ids.apply(i) for i in range(ids.size()))[0])
        wait_for(lambda: sc.defaultParallelism == 2, "one executor to leave")
        snapshot("one executor", blocks)
        # Ask for two executors in all again (the kill lowered the application's target).
        no_locality = getattr(getattr(sc._jvm.scala.collection.immutable, "Map$"), "MODULE$").empty()
        report["requested"] = jsc.requestTotalExecutors(2, 0, no_locality)
        wait_for(lambda: sc.defaultParallelism == 4, "a new executor to register")
        snapshot("a new executor joined", blocks)
    return report


if __name__ == "__main__":
    session = SparkSession.builder.getOrCreate()
    print(json.dumps(probe(session)))
    session.stop()
