"""Shared fixtures: one session-scoped local[2] SparkSession, and small synthetic mixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparkgmm import Mixture
from sparkgmm.gaussian import COVARIANCE_TYPES


@pytest.fixture(scope="session")
def spark():
    from sparkgmm.spark.session import local_session

    session = local_session(
        "local[2]", "sparkgmm-tests",
        **{"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"},
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def make_mixture(covariance_type: str, n_components: int = 3, n_features: int = 3, seed: int = 0,
                 separation: float = 3.0) -> Mixture:
    """A random but well-conditioned mixture whose components overlap a little (so responsibilities are soft)."""
    rng = np.random.default_rng(seed)
    k, d = n_components, n_features
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(0.0, separation, (k, d))
    if covariance_type == "full":
        a = rng.normal(0.0, 0.5, (k, d, d))
        covariances = a @ a.transpose(0, 2, 1) + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(0.0, 0.5, (d, d))
        covariances = a @ a.T + np.eye(d)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.5, 2.0, (k, d))
    else:
        covariances = rng.uniform(0.5, 2.0, k)
    return Mixture(weights, means, covariances, covariance_type)


def write_format_1_model_dir(path, mixture: Mixture, spark_params: dict | None = None,
                             summary: dict | None = None) -> None:
    """A model directory as sparkgmm wrote it before format version 2, by hand: metadata.json and params.npz, with
    the Spark model's spark_params.json and summary.json when given."""
    path.mkdir(parents=True)
    metadata = {"format": "sparkgmm.mixture", "format_version": 1, "covariance_type": mixture.covariance_type,
                "n_components": mixture.n_components, "n_features": mixture.n_features}
    (path / "metadata.json").write_text(json.dumps(metadata))
    np.savez(path / "params.npz", weights=mixture.weights, means=mixture.means, covariances=mixture.covariances)
    for name, document in (("spark_params.json", spark_params), ("summary.json", summary)):
        if document is not None:
            (path / name).write_text(json.dumps(document))


def precisions_of(mixture: Mixture) -> np.ndarray:
    """The precisions scikit-learn's ``precisions_init`` wants (the test oracle may invert; the library never does)."""
    cov = mixture.covariances
    if mixture.covariance_type in ("full", "tied"):
        return np.linalg.inv(cov)
    return 1.0 / cov


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request) -> str:
    return request.param
