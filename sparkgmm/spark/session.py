"""A SparkSession for local runs (examples, tests, benchmarks) that stays on this machine and this interpreter."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

# Each Spark task is one Python worker; two BLAS threads inside each of two tasks would oversubscribe two cores.
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def local_session(master: str = "local[2]", app_name: str = "sparkgmm", **conf: str) -> SparkSession:
    """Get or create a session on ``master`` bound to 127.0.0.1, with the Python workers running this interpreter
    (not whatever ``python3`` is first on PATH) with one BLAS thread each. ``conf`` adds Spark settings."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.showConsoleProgress", "false")
        # Driver-to-Python-worker traffic over Unix domain sockets instead of TCP: measured here, a two-task PySpark
        # job takes ~55 ms instead of ~95 ms, and an EM iteration is a handful of such jobs' worth of latency.
        .config("spark.python.unix.domain.socket.enabled", "true")
    )
    for name, value in WORKER_ENV.items():
        builder = builder.config(f"spark.executorEnv.{name}", value)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
