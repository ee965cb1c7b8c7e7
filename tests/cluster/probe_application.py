"""The one application test_cluster.py submits to its cluster of two 2-core workers: one driver JVM and one pair of
executors for all its questions, instead of one application each (every spark-submit costs a driver JVM, a
SparkContext and two executor JVMs to start). In order:

1. ``probe_parallelism.probe``: where the driver and executors import sparkgmm from, and passes while an executor
   leaves and a new one joins (it ends with two executors again);
2. the job scripts of ``--jobs`` (a JSON list of [script, arg, ...]), each run as spark-submit runs it (its file as
   ``__main__``, ``sys.argv`` set) in this driver: their ``run_job`` joins this session, so it leaves it running;
3. ``probe_worker_lost.probe``, last: it kills worker 1.

The session is started as a job starts its own under spark-submit (``job_session``), so the jobs run with the
settings they would have given a session of their own. Prints one JSON line: "parallelism", "jobs" (script, exit
code, seconds), "worker_lost" and "seconds" (per step).
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path

import probe_parallelism
import probe_worker_lost

from sparkgmm.spark.session import job_session


def run_script(script: str, args: list[str]) -> dict:
    """Run a job script as ``spark-submit script args...`` runs it in its driver; its exit code as it exits."""
    argv, started = sys.argv, time.perf_counter()
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return {"script": script, "exit_code": code, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--jobs", required=True, help="a JSON list of [script, arg, ...]")
    parser.add_argument("--block-storage", default="local-files")
    parser.add_argument("--trigger", default="EM iteration 3")
    args = parser.parse_args()
    workdir = Path.cwd()

    started = time.perf_counter()
    spark = job_session(None, "sparkgmm-cluster-tests", {})
    seconds = {"session": time.perf_counter() - started}
    report: dict = {"parallelism": probe_parallelism.probe(spark), "seconds": seconds}
    seconds["parallelism"] = time.perf_counter() - started - sum(seconds.values())
    report["jobs"] = [run_script(script, job_args) for script, *job_args in json.loads(args.jobs)]
    seconds["jobs"] = time.perf_counter() - started - sum(seconds.values())
    (workdir / "worker-lost").mkdir()
    report["worker_lost"] = probe_worker_lost.probe(spark, str(Path(args.state_dir).resolve()), args.block_storage,
                                                    args.trigger, workdir / "worker-lost")
    seconds["worker_lost"] = time.perf_counter() - started - sum(seconds.values())
    print(json.dumps(report))
    spark.stop()


if __name__ == "__main__":
    main()
