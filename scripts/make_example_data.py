"""Write example data for the jobs: rows drawn from a known 4-component mixture in 3 features, as Parquet.

    .venv/bin/python scripts/make_example_data.py [--output data/example.parquet] [--rows 200000]

Columns: ``id`` (long), ``x0``, ``x1``, ``x2`` (double). The true mixture is written beside it as a model directory
(``<output>.truth``), loadable with ``sparkgmm.Mixture.load``, to compare fits against.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sparkgmm import Mixture


def example_mixture(n_components: int = 4, n_features: int = 3, seed: int = 0) -> Mixture:
    rng = np.random.default_rng(seed)
    return Mixture(
        weights=rng.dirichlet(np.full(n_components, 5.0)),
        means=rng.normal(0.0, 10.0, (n_components, n_features)),
        covariances=np.stack([np.diag(rng.uniform(0.5, 2.0, n_features)) for _ in range(n_components)]),
    )


def write(output: Path, rows: int, files: int = 4) -> None:
    truth = example_mixture()
    X, _ = truth.sample(rows, seed=1)
    staging = output.with_name(output.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(rows), files)):
        table = pa.table({"id": part.astype(np.int64), **{f"x{j}": X[part, j] for j in range(X.shape[1])}})
        pq.write_table(table, staging / f"part-{i:05d}.parquet")
    truth.save(output.with_name(output.name + ".truth"), overwrite=True)
    shutil.rmtree(output, ignore_errors=True)
    staging.replace(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("data/example.parquet"))
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    write(args.output, args.rows)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
