"""Benchmark input shared by conversion_benchmark.py and predict_benchmark.py: N x d float64 columns f0..f{d-1}
drawn from a fixed mixture of 8 Gaussians, written as Parquet files under a directory, reused when complete.

A set is written into a hidden sibling directory and renamed into place with a marker file (``_dataset.json``,
which Spark ignores as it starts with ``_``), so a killed write is never taken for a finished set. Row groups are
the pyarrow default (one per file at the default sizes). Heavy modules are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MARKER = "_dataset.json"
GENERATOR_VERSION = 1


def dataset_dir(root: str, rows: int, features: int, files: int) -> Path:
    return Path(root) / f"gmm-{rows}x{features}-{files}files"


def ensure_dataset(root: str, rows: int, features: int, files: int, seed: int = 0) -> Path:
    """The directory of the set (written now unless a complete one is there)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = dataset_dir(root, rows, features, files)
    spec = {"rows": rows, "features": features, "files": files, "seed": seed, "version": GENERATOR_VERSION}
    marker = target / MARKER
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return target
    staging = target.with_name(f".{target.name}.writing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    k = 8
    means = rng.normal(0.0, 6.0, size=(k, features))
    scales = rng.uniform(0.5, 2.0, size=(k, features))
    weights = rng.dirichlet(np.full(k, 2.0))
    names = [f"f{j}" for j in range(features)]
    per_file = [rows // files + (1 if i < rows % files else 0) for i in range(files)]
    for index, n in enumerate(per_file):
        labels = rng.choice(k, size=n, p=weights)
        X = means[labels] + scales[labels] * rng.standard_normal((n, features))
        table = pa.table({name: X[:, j] for j, name in enumerate(names)})
        pq.write_table(table, staging / f"part-{index:05d}.parquet")
    (staging / MARKER).write_text(json.dumps(spec))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target
