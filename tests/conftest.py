"""Shared fixtures: one session-scoped local[2] SparkSession, and the covariance types. Shared helpers are in
helpers.py."""

from __future__ import annotations

import pytest

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


@pytest.fixture(params=COVARIANCE_TYPES)
def covariance_type(request) -> str:
    return request.param
