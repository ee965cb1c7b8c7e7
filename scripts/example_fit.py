"""Fit a Gaussian mixture end to end in local mode on generated data and print the fitted model.

    .venv/bin/python scripts/example_fit.py [--rows 200000] [--k 4] [--covariance-type full]
"""

from __future__ import annotations

import argparse
import logging
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sparkgmm import GaussianMixture, Mixture
from sparkgmm.spark.session import local_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--covariance-type", default="full")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)

    rng = np.random.default_rng(0)
    truth = Mixture(
        weights=rng.dirichlet(np.full(args.k, 5.0)),
        means=rng.normal(0.0, 10.0, (args.k, 3)),
        covariances=np.stack([np.diag(rng.uniform(0.5, 2.0, 3)) for _ in range(args.k)]),
    )
    X, _ = truth.sample(args.rows, seed=1)

    spark = local_session(app_name="sparkgmm-example", **{"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("WARN")
    with tempfile.TemporaryDirectory(prefix="sparkgmm-example-") as tmp:
        # Users fit Parquet: write the generated rows as Parquet, one numeric column per feature, and read it back.
        path = f"{tmp}/points.parquet"
        pq.write_table(pa.table({f"x{i}": X[:, i] for i in range(X.shape[1])}), path, row_group_size=50_000)
        df = spark.read.parquet(path)
        fit_and_print(df, truth, args)
    spark.stop()


def fit_and_print(df, truth: Mixture, args) -> None:
    model = GaussianMixture(k=args.k, covarianceType=args.covariance_type, inputCols=df.columns, seed=7).fit(df)
    summary = model.summary
    print(f"\nfitted {model.mixture!r}")
    print(f"iterations {summary.numIter}, converged {summary.converged}, "
          f"mean log-likelihood {summary.logLikelihood:.6f}, BIC {summary.bic:.1f}")
    order = np.argsort(model.means[:, 0])
    true_order = np.argsort(truth.means[:, 0])
    for j, t in zip(order, true_order):
        print(f"  weight {model.weights[j]:.4f} (true {truth.weights[t]:.4f})  "
              f"mean {np.array2string(model.means[j], precision=3)} (true {np.array2string(truth.means[t], precision=3)})")
    model.transform(df).show(5, truncate=60)


if __name__ == "__main__":
    main()
