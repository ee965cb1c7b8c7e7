"""What checkpoints cost a fit: seconds per EM iteration with and without ``checkpointDir``, in one local[2] session.

    .venv/bin/python scripts/checkpoint_benchmark.py [--rows 1000000] [--features 8] [--k 8] [--iters 10]

Method: rows from a random full-covariance mixture, written to Parquet and read back; one unmeasured fit warms the
workers; then, alternately (three times each, the median reported), a fit of ``--iters`` iterations (tol 0, SQUAREM
off, a fixed seed) without checkpoints and one writing a checkpoint after every pass to a local directory. The time
of each checkpoint write (``CheckpointStore.save``: encode, write JSON and .npz, copy through Hadoop's FileSystem,
rename, delete the older one) is measured inside the fit. Both fits must end with the same parameters.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sparkgmm import GaussianMixture, Mixture
from sparkgmm.spark.checkpoints import CheckpointStore
from sparkgmm.spark.session import local_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("sparkgmm").setLevel(logging.ERROR)
    n, d, k = args.rows, args.features, args.k
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.3, (k, d, d))
    truth = Mixture(rng.dirichlet(np.full(k, 5.0)), rng.normal(0.0, 2.0, (k, d)), a @ a.transpose(0, 2, 1) + np.eye(d))
    X, _ = truth.sample(n, seed=1)

    save = CheckpointStore.save
    writes: list[float] = []

    def timed_save(self, *a, **kw):
        started = time.perf_counter()
        save(self, *a, **kw)
        writes.append(time.perf_counter() - started)

    spark = local_session("local[2]", "sparkgmm-checkpoint-benchmark", **{"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    with (tempfile.TemporaryDirectory(prefix="sparkgmm-checkpoint-benchmark-") as tmp,
          mock.patch.object(CheckpointStore, "save", timed_save)):  # every checkpoint write of the fits below timed
        path = Path(tmp) / "points.parquet"
        pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(d)}), path)
        df = spark.read.parquet(str(path))
        columns = [f"x{j}" for j in range(d)]

        def fit(checkpoint: bool):
            params = dict(k=k, inputCols=columns, seed=3, tol=0.0, maxIter=args.iters, acceleration="none")
            if checkpoint:
                params["checkpointDir"] = str(Path(tmp) / "checkpoints")
            model = GaussianMixture(**params).fit(df)
            return model, statistics.median(model.summary.iterationSeconds)

        fit(False)  # warm-up
        plain, checkpointed = [], []
        for _ in range(3):
            model_plain, seconds = fit(False)
            plain.append(seconds)
            model_checkpointed, seconds = fit(True)
            checkpointed.append(seconds)
        same = all(np.array_equal(getattr(model_plain, name), getattr(model_checkpointed, name))
                   for name in ("weights", "means", "covariances"))
    spark.stop()
    base, with_checkpoints = statistics.median(plain), statistics.median(checkpointed)
    print(f"{n:,} rows x {d} features, k={k} full, {args.iters} iterations, local[2]")
    print(f"{'':28}{'s/iter':>9}{'ratio':>8}")
    print(f"{'no checkpoints':28}{base:9.3f}{1.0:8.2f}")
    print(f"{'checkpoint after every pass':28}{with_checkpoints:9.3f}{with_checkpoints / base:8.2f}")
    print(f"checkpoint write: median {statistics.median(writes) * 1000:.1f} ms, max {max(writes) * 1000:.1f} ms over "
          f"{len(writes)} writes; same model with and without: {same}")


if __name__ == "__main__":
    main()
