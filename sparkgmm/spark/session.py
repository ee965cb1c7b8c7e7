"""SparkSessions: ``local_session`` for local runs (examples, tests, benchmarks) that stay on this machine and this
interpreter, ``job_session`` for the command-line jobs, under spark-submit or not, and what the library asks of any
session, classic or Spark Connect (``is_connect``, ``spark_context``, ``default_parallelism``)."""

from __future__ import annotations

import logging
import os
import re
import sys

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

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


UNIX_SOCKETS = "spark.python.unix.domain.socket.enabled"


def speed_settings(unix_sockets: bool = True) -> dict[str, str]:
    """One BLAS thread per Python worker, and (``unix_sockets``) Unix-domain sockets between executor and worker
    (see README)."""
    settings = {f"spark.executorEnv.{name}": value for name, value in WORKER_ENV.items()}
    # Driver-to-Python-worker traffic over Unix domain sockets instead of TCP: measured here, a two-task PySpark job
    # takes ~55 ms instead of ~95 ms, and an EM iteration is a handful of such jobs' worth of latency.
    if unix_sockets:
        settings[UNIX_SOCKETS] = "true"
    return settings


def _workers_print_to_the_job(master: str | None) -> bool:
    """True for local masters: the Python workers are children of the driver's JVM and what they print to stderr
    is the job's own output.

    There, a job uses TCP between the JVM and its Python workers, not Unix-domain sockets. Whenever the JVM closes
    the socket of a worker that is still alive (a task killed because another one failed, a worker idle for a
    minute, every idle worker when the session stops), the worker, finding its input gone, writes an error report
    back before it exits. A closed Unix-domain socket refuses that write at once (EPIPE), and PySpark's daemon
    prints the BrokenPipeError's traceback (``spark.python.daemon.killWorkerOnFlushFailure``, on by default,
    re-raises it; off, the daemon prints it anyway); a closed TCP socket takes it silently. Measured on local[2]
    with Unix-domain sockets: 3-4 such tracebacks in every fit of a damaged file, one per worker after an idle
    minute, and one in about 7 session stops; with TCP none, for ~30-40 ms more per Spark job. Elsewhere the
    workers' stderr is the executors' log, and the jobs keep the faster sockets.
    """
    return master is not None and (master == "local" or master.startswith("local["))


def under_spark_submit() -> bool:
    """True when spark-submit started this Python process (it hands the driver JVM's gateway over in these)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def job_session(master: str | None, app_name: str, conf: dict[str, str]) -> SparkSession:
    """The session of a command-line job.

    Under spark-submit, what spark-submit was given (``--master``, ``--conf``, ``--name``, ...) wins: ``master`` and
    ``conf`` only fill in settings it left unset. Otherwise the job starts Spark itself on ``master`` (default
    ``local[2]``, bound to 127.0.0.1) with ``conf``. On a local master the Python workers talk to the JVM over TCP
    (``_workers_print_to_the_job``) unless ``conf`` or spark-submit says otherwise.
    """
    if not under_spark_submit():
        master = master or "local[2]"
        if _workers_print_to_the_job(master):
            conf = {UNIX_SOCKETS: "false", **conf}
        if master.startswith("local"):
            return local_session(master, app_name, **conf)
        return _builder(master, app_name, conf).getOrCreate()
    SparkContext._ensure_initialized()  # connects to spark-submit's JVM, so SparkConf() sees its settings
    given = SparkConf()
    if master and given.get("spark.master") not in (None, master):
        logger.warning("spark-submit's master %s wins over %s from the job's config", given.get("spark.master"), master)
    builder = SparkSession.builder
    unix_sockets = not _workers_print_to_the_job(given.get("spark.master") or master)
    for key, value in {**speed_settings(unix_sockets), **conf}.items():
        if given.contains(key):
            if given.get(key) != value and key in conf:
                logger.warning("spark-submit's %s=%s wins over %s from the job's config", key, given.get(key), value)
        else:
            builder = builder.config(key, value)
    return builder.getOrCreate()


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session: a client with no SparkContext and no JVM of its own (its class lives in
    ``pyspark.sql.connect``, which is not imported here: it needs the ``pyspark[connect]`` extras)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def spark_context(spark: SparkSession) -> SparkContext | None:
    """The session's SparkContext, or None under Spark Connect."""
    return None if is_connect(spark) else spark.sparkContext


_SPLITS = re.compile(r"\bRange \(0, 1, step=1, splits=(\d+)\)")


def default_parallelism(spark: SparkSession) -> int:
    """The cores the session's executors offer now: ``defaultParallelism`` of its SparkContext.

    A Connect client has no SparkContext to ask. ``spark.range`` without a number of partitions is split into
    ``spark.sql.leafNodeDefaultParallelism`` pieces, which defaults to the SparkContext's ``defaultParallelism``, and
    the physical plan names that number (``Range (0, 1, step=1, splits=N)``): explaining it is one planning request
    to the server (~10-20 ms once warm) that runs no job. Should the plan's text ever say something else, the
    partitions of the same range are counted by a small job instead."""
    sc = spark_context(spark)
    if sc is not None:
        return max(1, sc.defaultParallelism)
    from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame  # a Connect session has imported it

    probe = spark.range(0, 1)
    if not isinstance(probe, ConnectDataFrame):
        raise TypeError(f"a session with no SparkContext should be a Spark Connect session, not {type(spark)}")
    match = _SPLITS.search(probe._explain_string(mode="simple"))
    if match is not None:
        return max(1, int(match.group(1)))
    rows = spark.range(0, 1 << 16).select(F.spark_partition_id().alias("p")).agg(F.max("p")).collect()
    return max(1, rows[0][0] + 1)
