"""Seconds per EM iteration: sparkgmm against Spark MLlib's GaussianMixture and scikit-learn, in one process.

    .venv/bin/python scripts/benchmark.py [--sizes 1000000:8:8,200000:32:16,100000:128:8] [--iters 5]

Method, per size n x d x k (full covariance):
- rows are drawn from a random k-component mixture, written to Parquet, read back, converted to an MLlib Vector
  column, repartitioned to the session's parallelism (one partition per core) and cached: that one cached DataFrame
  feeds both Spark engines in the same local[2] session. At d >= 32 the rows are scaled by 0.01, because on
  unit-scale data MLlib's linear-space densities underflow and it stops after two iterations.
- each engine first runs one unmeasured fit of 2 x --iters iterations (worker start-up, JVM warm-up).
- sparkgmm: a fit of --iters iterations (tol=0) from a fixed initial mixture; the per-iteration wall times are
  measured inside the fit (broadcast, Spark job, tree-reduce, M-step); the median is reported. "convert" is the
  rest of the fit: turning the DataFrame into cached NumPy blocks (once per fit) plus the final pass.
- MLlib, which times no iteration itself: fits with maxIter = 1, 2, ..., iters + 1 (tol=0), each timed whole; the
  difference between consecutive fits is one iteration's wall time (its set-up cancels out), and the median of those
  iters differences is reported, the same statistic as sparkgmm's.
- scikit-learn: the same protocol, in memory in this process (2 BLAS threads), started from the same initial
  parameters; its result is also compared with sparkgmm's (max relative difference of the means).
- GFLOP/s counts the multiply-adds sparkgmm's full-covariance E-step does: whitening 2nkd^2 and the scatter 2nkd^2,
  or nkd^2 from ``sparkgmm.stats.SYRK_MIN_FEATURES`` features on (a symmetric rank-k update), against float64 GEMM
  measured here on 2048 x 2048 matrices with 2 threads. The peers' work is shaped differently (MLlib: per-row
  BLAS), so they get no GFLOP/s: their seconds and ratios say it.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import tempfile
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.ml.clustering import GaussianMixture as MLlibGaussianMixture
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from sparkgmm import GaussianMixture, Mixture
from sparkgmm.stats import SYRK_MIN_FEATURES
from sparkgmm.spark.session import local_session

DEFAULT_SIZES = "1000000:8:8,200000:32:16,100000:128:8"


def gemm_gflops(repeats: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048))
    a @ a
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - started)
    return 2 * 2048**3 / statistics.median(times) / 1e9


def make_data(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, Mixture]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.3, (k, d, d))
    truth = Mixture(rng.dirichlet(np.full(k, 5.0)), rng.normal(0.0, 2.0, (k, d)),
                    a @ a.transpose(0, 2, 1) + np.eye(d))
    X, _ = truth.sample(n, seed=seed + 1)
    scale = 0.01 if d >= 32 else 1.0
    return X * scale, truth


def starting_mixture(X: np.ndarray, k: int, seed: int) -> Mixture:
    """The same start for every engine: k random rows as means, the data's covariance for every component."""
    rng = np.random.default_rng(seed)
    sample = X[rng.choice(X.shape[0], 20_000, replace=False)] if X.shape[0] > 20_000 else X
    means = sample[rng.choice(sample.shape[0], k, replace=False)]
    cov = np.cov(sample.T) + 1e-6 * np.eye(X.shape[1])
    return Mixture(np.full(k, 1.0 / k), means, np.stack([cov] * k))


def cached_frame(spark, X: np.ndarray, path: str):
    """``X`` written to Parquet at ``path`` as a list column, read back as an MLlib Vector column ``features``,
    one partition per core, cached and counted (the quality benchmark uses it too)."""
    n, d = X.shape
    features = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int64)).cast(pa.int32()),
                                        pa.array(X.ravel()))
    pq.write_table(pa.table({"features": features}), path, row_group_size=65_536)
    df = (spark.read.parquet(path).select(array_to_vector(F.col("features")).alias("features"))
          .repartition(spark.sparkContext.defaultParallelism).cache())
    df.count()
    return df


def time_fit(fit) -> float:
    started = time.perf_counter()
    fit()
    return time.perf_counter() - started


def median_iteration(fit_with_max_iter, iters: int) -> float:
    """The median wall time of one iteration of an engine that times none itself: fits with maxIter = 1 .. iters + 1,
    the differences of consecutive ones."""
    seconds = [time_fit(lambda: fit_with_max_iter(m)) for m in range(1, iters + 2)]  # noqa: B023 -- called at once
    return statistics.median(b - a for a, b in itertools.pairwise(seconds))


def estep_flops(n: int, d: int, k: int) -> float:
    """Multiply-adds (x2) of sparkgmm's full-covariance E-step: whitening, then the scatter matrices."""
    return 2.0 * n * k * d * d + (1.0 if d >= SYRK_MIN_FEATURES else 2.0) * n * k * d * d


def bench_size(spark, n: int, d: int, k: int, iters: int, tmp: str) -> dict:
    X, _ = make_data(n, d, k)
    start = starting_mixture(X, k, seed=1)
    df = cached_frame(spark, X, f"{tmp}/points-{n}x{d}.parquet")

    # Each engine first runs one whole fit of 2 * iters iterations, unmeasured: Python workers start, the JVM
    # compiles its hot paths. Both are then measured in their steady state.
    GaussianMixture(k=k, maxIter=2 * iters, tol=0.0, initialModel=start, acceleration="none").fit(df)
    ours = GaussianMixture(k=k, maxIter=iters, tol=0.0, initialModel=start, acceleration="none")
    started = time.perf_counter()
    model = ours.fit(df)
    ours_total = time.perf_counter() - started
    ours_iter = statistics.median(model.summary.iterationSeconds)
    convert = ours_total - sum(model.summary.iterationSeconds)

    def mllib(max_iter: int):
        return MLlibGaussianMixture(k=k, maxIter=max_iter, tol=0.0, seed=1).fit(df)

    mllib(2 * iters)
    mllib_iter = median_iteration(mllib, iters)
    mllib_ran = mllib(1 + iters).summary.numIter

    def sklearn(max_iter: int):
        precisions = np.linalg.inv(start.covariances)  # the oracle's input; sparkgmm itself never inverts
        model = SkGaussianMixture(k, covariance_type="full", max_iter=max_iter, tol=0.0, init_params="random_from_data",
                                  weights_init=start.weights, means_init=start.means, precisions_init=precisions,
                                  random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(X)

    sk_iter = median_iteration(sklearn, iters)
    reference = sklearn(iters)
    agreement = float(np.max(np.abs(model.means - reference.means_)) / np.max(np.abs(reference.means_)))
    df.unpersist()
    return dict(n=n, d=d, k=k, ours=ours_iter, convert=convert, mllib=mllib_iter, mllib_iters=mllib_ran,
                sklearn=sk_iter, agreement=agreement, flops=estep_flops(n, d, k))


def print_table(rows: list[dict], gemm: float, iters: int) -> None:
    print(f"\nfloat64 GEMM on this machine (2048^2, 2 threads): {gemm:.1f} GFLOP/s; medians over {iters} iterations")
    header = (f"{'n x d x k':>18} | {'sparkgmm s/it':>13} | {'MLlib s/it':>10} | {'sklearn s/it':>12} | "
              f"{'MLlib/ours':>10} | {'sklearn/ours':>12} | {'ours GF/s':>9} | {'% GEMM':>6} | {'convert s':>9} | "
              f"{'MLlib iters':>11} | {'vs sklearn':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        ours_gf = r["flops"] / r["ours"] / 1e9
        print(f"{r['n']:>9} x {r['d']:>3} x {r['k']:>2} | {r['ours']:13.3f} | {r['mllib']:10.3f} | "
              f"{r['sklearn']:12.3f} | "
              f"{r['mllib'] / r['ours']:9.2f}x | {r['sklearn'] / r['ours']:11.2f}x | {ours_gf:9.1f} | "
              f"{100 * ours_gf / gemm:5.0f}% | {r['convert']:9.2f} | {r['mllib_iters']:>11} | "
              f"{r['agreement']:10.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated n:d:k triples")
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sizes = [tuple(int(v) for v in size.split(":")) for size in args.sizes.split(",")]

    gemm = gemm_gflops()
    spark = local_session(app_name="sparkgmm-benchmark", **{"spark.driver.memory": "8g", "spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparkgmm-bench-") as tmp:
        for n, d, k in sizes:
            rows.append(bench_size(spark, n, d, k, args.iters, tmp))
            print(f"done {n} x {d} x {k}", flush=True)
    spark.stop()
    print_table(rows, gemm, args.iters)


if __name__ == "__main__":
    main()
