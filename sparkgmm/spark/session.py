"""SparkSessions: ``local_session`` for local runs (examples, tests, benchmarks) that stay on this machine and this
interpreter, and ``job_session`` for the command-line jobs, under spark-submit or not."""

from __future__ import annotations

import logging
import os
import sys

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

logger = logging.getLogger("sparkgmm")

# Each Spark task is one Python worker; two BLAS threads inside each of two tasks would oversubscribe two cores.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def local_session(master: str = "local[2]", app_name: str = "sparkgmm", **conf: str) -> SparkSession:
    """Get or create a session on ``master`` bound to 127.0.0.1, with the Python workers running this interpreter
    (not whatever ``python3`` is first on PATH) with one BLAS thread each. ``conf`` adds Spark settings."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    loopback = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    return _builder(master, app_name, {**loopback, **conf}).getOrCreate()


def _builder(master: str, app_name: str, conf: dict[str, str]) -> SparkSession.Builder:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {"spark.ui.showConsoleProgress": "false", **speed_settings(), **conf}.items():
        builder = builder.config(key, value)
    return builder


def speed_settings() -> dict[str, str]:
    """One BLAS thread per Python worker, and Unix-domain sockets between executor and worker (see README)."""
    settings = {f"spark.executorEnv.{name}": value for name, value in WORKER_ENV.items()}
    # Driver-to-Python-worker traffic over Unix domain sockets instead of TCP: measured here, a two-task PySpark job
    # takes ~55 ms instead of ~95 ms, and an EM iteration is a handful of such jobs' worth of latency.
    settings["spark.python.unix.domain.socket.enabled"] = "true"
    return settings


def under_spark_submit() -> bool:
    """True when spark-submit started this Python process (it hands the driver JVM's gateway over in these)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def job_session(master: str | None, app_name: str, conf: dict[str, str]) -> SparkSession:
    """The session of a command-line job.

    Under spark-submit, what spark-submit was given (``--master``, ``--conf``, ``--name``, ...) wins: ``master`` and
    ``conf`` only fill in settings it left unset. Otherwise the job starts Spark itself on ``master`` (default
    ``local[2]``, bound to 127.0.0.1) with ``conf``.
    """
    if not under_spark_submit():
        master = master or "local[2]"
        if master.startswith("local"):
            return local_session(master, app_name, **conf)
        return _builder(master, app_name, conf).getOrCreate()
    SparkContext._ensure_initialized()  # connects to spark-submit's JVM, so SparkConf() sees its settings
    given = SparkConf()
    if master and given.get("spark.master") not in (None, master):
        logger.warning("spark-submit's master %s wins over %s from the job's config", given.get("spark.master"), master)
    builder = SparkSession.builder
    for key, value in {**speed_settings(), **conf}.items():
        if given.contains(key):
            if given.get(key) != value and key in conf:
                logger.warning("spark-submit's %s=%s wins over %s from the job's config", key, given.get(key), value)
        else:
            builder = builder.config(key, value)
    return builder.getOrCreate()
