"""README's first command: scripts/example.sh runs fit, predict, update and select through spark-submit in local
mode."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import Background
from sparkgmm import Mixture

pytestmark = [pytest.mark.spark, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def start_in_background(workdir: Path) -> Background:
    """Called by conftest.py as soon as the suite is collected: the example's three spark-submits are mostly JVM
    start-up on about one core, so they run while the tests before this module run. Measured here (2026-12-06):
    test_spark_fit.py alone 46.8 s and the example alone 49.8 s, 77 s side by side."""
    return Background(["bash", str(ROOT / "scripts" / "example.sh"), str(workdir)])


def test_example_runs_every_job_through_spark_submit(background):
    child, tmp_path = background
    result = child.finish(timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "select: best of 10 candidates by bic: k=4 diag" in result.stdout
    assert "update: 200000 new rows" in result.stdout and "seen 400000 rows in 2 batches" in result.stdout
    for output in ("example-model", "example-predictions", "example-model-updated", "example-selection"):
        assert (tmp_path / "out" / output / "_SUCCESS").exists()
    page = (tmp_path / "out" / "example-report.html").read_text()
    assert "k=4 diag" in page and page.count("data:image/png;base64,") >= 4  # every figure, embedded
    fitted = Mixture.load(tmp_path / "out" / "example-model")
    truth = Mixture.load(tmp_path / "data" / "example.parquet.truth")
    for mean in truth.means:
        assert np.min(np.linalg.norm(fitted.means - mean, axis=1)) < 0.05
    metrics = json.loads((tmp_path / "out" / "example-model" / "metrics.json").read_text())
    assert metrics["n_rows"] == 200_000 and metrics["converged"]
    scores = pq.read_table(tmp_path / "out" / "example-predictions")
    assert scores.column_names == ["id", "prediction", "probability", "log_density"] and scores.num_rows == 200_000
