"""Run by tests/test_faults.py as one subprocess (one local[2,4] JVM: two cores, a task may fail 4 times): does a fit
survive real faults in the middle of an EM iteration, and end with the model of the same fit without them?

For each block storage, a baseline fit, then the same fit with one fault injected into the pass of ``--trigger``
(tests/faults/injection.py: an extra request in that pass, faulting on the first block of task 0, once):

- ``python-worker-killed``: the Python worker running the task SIGKILLs itself;
- ``task-raised``: the task raises RuntimeError.

Prints one JSON line: every model (weights, means, covariances, log-likelihood history, n_iter), the marker each
fault left (which process, task and attempt), and per pass the tasks and failed attempts Spark's status tracker saw.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection import PassHook, Untouched, alive, claim, model_report, read_marker

from sparkgmm import GaussianMixture
from sparkgmm.spark.session import local_session

FEATURES = ["x0", "x1", "x2"]
FAULTS = ("python-worker-killed", "task-raised")


class LocalFault:
    """The extra request: on the first block of task 0, once in the whole run, kill this Python worker or raise."""

    description = "injected fault"

    def __init__(self, kind: str, marker: str):
        self.kind = kind
        self.marker = marker

    def empty(self, n_features: int) -> Untouched:
        return Untouched()

    def on_block(self, block) -> Untouched:
        from pyspark import TaskContext

        if TaskContext.get().partitionId() == 0 and claim(self.marker, kind=self.kind):
            if self.kind == "python-worker-killed":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected fault: {self.kind}")
        return Untouched()


def write_points(path: Path, n: int = 4000, files: int = 4) -> str:
    """Three separated Gaussian components in 3-D (close enough that EM takes a few iterations: 6 here), shuffled,
    in ``files`` Parquet files."""
    rng = np.random.default_rng(11)
    means = np.array([[0.0, 0.0, 0.0], [4.0, -3.0, 1.5], [-3.5, 2.5, 4.5]])
    scales = np.array([1.0, 1.5, 0.7])
    labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    X = means[labels] + rng.normal(size=(n, 3)) * scales[labels, None]
    path.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(n), files)):
        pq.write_table(pa.table({name: X[rows, j] for j, name in enumerate(FEATURES)}), path / f"part-{i}.parquet")
    return str(path)


def block_files(sc) -> list[str]:
    """sparkgmm's local block files left in the executor's (here: the driver's) local directories."""
    roots = sc.parallelize([0], 1).map(lambda _: os.environ.get("SPARK_LOCAL_DIRS", "")).collect()[0]
    return [path for root in roots.split(",") if root for path in glob.glob(os.path.join(root, "sparkgmm-*", "*"))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--trigger", default="EM iteration 3")
    parser.add_argument("--storages", default="local-files,spark-cache")
    parser.add_argument("--faults", default=",".join(FAULTS))
    args = parser.parse_args()

    spark = local_session("local[2,4]", "sparkgmm-faults", **{"spark.ui.enabled": "false"})
    sc = spark.sparkContext
    sc.setLogLevel("WARN")
    df = spark.read.parquet(write_points(args.workdir / "points.parquet"))
    report: dict = {"master": sc.master, "input_partitions": df.rdd.getNumPartitions(), "trigger": args.trigger,
                    "fits": {}}
    for storage in args.storages.split(","):
        # k-means||: a start some passes from the optimum, so that the pass of EM iteration 3 falls mid-fit (the
        # default start, searched on the sample, converges here in two iterations)
        gmm = GaussianMixture(k=3, inputCols=FEATURES, seed=5, tol=1e-6, maxIter=20, blockStorage=storage,
                              initMode="k-means||")
        with PassHook(sc, f"baseline-{storage}") as hook:
            baseline = gmm.fit(df)
        report["fits"][f"baseline/{storage}"] = {"model": model_report(baseline), "passes": hook.report()}
        for fault in args.faults.split(","):
            marker = args.workdir / f"{fault}-{storage}.marker"
            with PassHook(sc, f"{fault}-{storage}", args.trigger, LocalFault(fault, str(marker))) as hook:
                model = gmm.fit(df)
            found = read_marker(str(marker))
            report["fits"][f"{fault}/{storage}"] = {
                "model": model_report(model),
                "passes": hook.report(),
                "injected_passes": [record.number for record in hook.injected],
                "marker": found,
                "faulted_process_alive": None if found is None else alive(found["pid"]),
            }
    report["persisted_rdds"] = sc._jsc.getPersistentRDDs().size()
    report["block_files_left"] = block_files(sc)
    print(json.dumps(report))
    spark.stop()


if __name__ == "__main__":
    main()
