"""Seconds per EM iteration and conversion seconds of sparkgmm's two engines: the RDD engine and the DataFrame engine
in a classic session, and the DataFrame engine through a local Spark Connect server, for the same fit.

    .venv/bin/python scripts/connect_benchmark.py [--sizes 1000000:8:8,200000:32:16] [--iters 5] [--storage local-files]

Method, per size n x d x k (full covariance): rows from a random k-component mixture (``benchmark.make_data``) are
written to Parquet as d numeric columns. They are read back, repartitioned to one partition per core and cached
twice: once in the classic session's JVM, which both classic paths share, and once in the Connect server's own JVM
(both local[2] with the same driver memory). Each path runs one unmeasured fit of 2 x --iters iterations (worker
start-up, JVM warm-up), then the measured fit of --iters iterations (tol=0, SQUAREM off) from one fixed initial
mixture. "s/iter" is the median of the per-iteration wall times measured inside the fit (the pass's job plus the
M-step on the client), "convert s" the fit's conversion of the input to stored blocks
(``summary.conversionSeconds``), "fit s" the measured fit's wall time. Every path must end with the RDD engine's
parameters (the largest relative difference of the means is printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from benchmark import make_data, starting_mixture

from sparkgmm import GaussianMixture
from sparkgmm.spark.connect_server import LocalConnectServer
from sparkgmm.spark.session import default_parallelism, local_session

PATHS = (("rdd", "classic"), ("dataframe", "classic"), ("dataframe", "connect"))


def cached_input(spark, path: str):
    df = spark.read.parquet(path).repartition(default_parallelism(spark)).cache()
    df.count()
    return df


def measure(spark, df, engine: str, columns: list[str], start, iters: int, storage: str) -> dict:
    params = dict(k=start.n_components, inputCols=columns, tol=0.0, initialModel=start, acceleration="none",
                  engine=engine, blockStorage=storage)
    GaussianMixture(maxIter=2 * iters, **params).fit(df)  # warm-up, unmeasured
    started = time.perf_counter()
    model = GaussianMixture(maxIter=iters, **params).fit(df)
    seconds = time.perf_counter() - started
    summary = model.summary
    return dict(per_iter=statistics.median(summary.iterationSeconds), convert=summary.conversionSeconds,
                fit=seconds, means=model.means)


def bench_size(n: int, d: int, k: int, iters: int, storage: str, memory: str, tmp: str) -> list[dict]:
    X, _ = make_data(n, d, k)
    start = starting_mixture(X, k, seed=1)
    columns = [f"x{j}" for j in range(d)]
    path = f"{tmp}/points-{n}x{d}.parquet"
    pq.write_table(pa.table({name: X[:, j] for j, name in enumerate(columns)}), path, row_group_size=65_536)
    results = []
    spark = local_session(app_name="sparkgmm-connect-benchmark",
                          **{"spark.driver.memory": memory, "spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    df = cached_input(spark, path)
    for engine in ("rdd", "dataframe"):
        results.append(dict(engine=engine, session="classic", **measure(spark, df, engine, columns, start, iters,
                                                                         storage)))
    spark.stop()
    from pyspark.sql import SparkSession

    with LocalConnectServer("local[2]", {"spark.driver.memory": memory}) as server:
        # create() marks the process as a Connect client (pyspark's column functions then build Connect columns);
        # the mark goes when the client does, so that the next size's classic session works.
        remote = SparkSession.builder.remote(server.url).create()
        try:
            df = cached_input(remote, path)
            results.append(dict(engine="dataframe", session="connect",
                                **measure(remote, df, "dataframe", columns, start, iters, storage)))
        finally:
            remote.stop()
            os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    reference = results[0]
    for result in results:
        result.update(n=n, d=d, k=k, ratio=result["per_iter"] / reference["per_iter"],
                      agreement=float(np.max(np.abs(result["means"] - reference["means"]))
                                      / np.max(np.abs(reference["means"]))))
    return results


def print_table(rows: list[dict], iters: int, storage: str) -> None:
    print(f"\nblockStorage={storage}; medians over {iters} iterations; 'vs rdd' = s/iter over the RDD engine's")
    header = (f"{'n x d x k':>18} | {'engine':>9} | {'session':>7} | {'s/iter':>7} | {'vs rdd':>6} | "
              f"{'convert s':>9} | {'fit s':>6} | {'means vs rdd':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['n']:>9} x {r['d']:>3} x {r['k']:>2} | {r['engine']:>9} | {r['session']:>7} | "
              f"{r['per_iter']:7.3f} | {r['ratio']:5.2f}x | {r['convert']:9.2f} | {r['fit']:6.2f} | "
              f"{r['agreement']:12.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000:8:8,200000:32:16", help="comma-separated n:d:k triples")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--storage", default="local-files", choices=("local-files", "spark-cache"))
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [tuple(int(v) for v in size.split(":")) for size in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparkgmm-connect-bench-") as tmp:
        for n, d, k in sizes:
            rows.extend(bench_size(n, d, k, args.iters, args.storage, args.driver_memory, tmp))
            print(f"done {n} x {d} x {k}", flush=True)
    print_table(rows, args.iters, args.storage)


if __name__ == "__main__":
    main()
