"""Shared fixtures: one session-scoped local[2] SparkSession, and the covariance types. Shared helpers are in
helpers.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import TEST_JVM_OPTIONS
from sparkgmm.gaussian import COVARIANCE_TYPES


def _add_jvm_options(variable: str, options: str) -> None:
    os.environ[variable] = f"{os.environ.get(variable, '')} {options}".strip()


# Before any JVM starts, for every JVM the suite starts: SPARK_SUBMIT_OPTS reaches each one spark-submit launches
# (this process's session, the jobs run as child processes, the Spark Connect server), SPARK_DAEMON_JAVA_OPTS the
# standalone master and workers (test_cluster passes the executors theirs).
# No driver the suite starts binds a web UI port: children run side by side (see start_in_background below), and the
# second driver to want port 4040 prints "WARN Utils: Service 'SparkUI' could not bind on port 4040" into an output
# that a test reads for warnings of sparkgmm's own. A spark.* system property is a default every SparkConf loads.
_add_jvm_options("SPARK_SUBMIT_OPTS", f"{TEST_JVM_OPTIONS} -Dspark.ui.enabled=false")
_add_jvm_options("SPARK_DAEMON_JAVA_OPTS", TEST_JVM_OPTIONS)


# --- child processes started as soon as the suite is collected --------------------------------------------------------
#
# A test module may define ``start_in_background(workdir) -> helpers.Background``: when any of its tests is collected,
# it is called once, right after collection, so that a long child process (mostly JVM start-up, on about one core)
# runs while the tests before that module run on the other; its tests take it from the ``background`` fixture.

_started: dict[str, tuple] = {}


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    for module in {item.module for item in session.items if getattr(item, "module", None) is not None}:
        start = getattr(module, "start_in_background", None)
        if start is not None and module.__name__ not in _started:
            workdir = Path(tempfile.mkdtemp(prefix=f"sparkgmm-{module.__name__}-"))
            _started[module.__name__] = (start(workdir), workdir)


def pytest_sessionfinish(session, exitstatus):
    for child, workdir in _started.values():
        child.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def background(request):
    """(the module's child process started after collection, its working directory)."""
    return _started[request.module.__name__]


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
