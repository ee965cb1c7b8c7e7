"""Shared fixtures: one session-scoped local[2] SparkSession, and the covariance types. Shared helpers are in
helpers.py."""

from __future__ import annotations

import os

import pytest

from helpers import TEST_JVM_OPTIONS
from sparkgmm.gaussian import COVARIANCE_TYPES


def _add_jvm_options(variable: str) -> None:
    os.environ[variable] = f"{os.environ.get(variable, '')} {TEST_JVM_OPTIONS}".strip()


# Before any JVM starts, for every JVM the suite starts: SPARK_SUBMIT_OPTS reaches each one spark-submit launches
# (this process's session, the jobs run as child processes, the Spark Connect server), SPARK_DAEMON_JAVA_OPTS the
# standalone master and workers (test_cluster passes the executors theirs).
_add_jvm_options("SPARK_SUBMIT_OPTS")
_add_jvm_options("SPARK_DAEMON_JAVA_OPTS")


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
