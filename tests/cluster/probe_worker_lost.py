"""Last in the application test_cluster.py submits to its cluster of two 2-core workers (tests/cluster/
probe_application.py calls ``probe``): does a fit survive losing a worker mid-fit, and end with the model of the
same fit on both workers? Returns one report (run on its own, this script prints it as one JSON line).

A baseline fit runs on both workers. Then the same fit runs again, and in the pass of ``--trigger`` (an EM iteration,
after the initialisation, so both fits start from the same draws) an extra request (tests/faults/injection.py) loses
worker 1:

- a task of that pass on worker 1 claims a marker and holds (polling, bounded) until its own executor is gone, so
  the worker is certainly lost with a task of the pass running on it and the blocks its executor held;
- the first task on worker 0 to read a block, once worker 1 holds one, SIGKILLs worker 1's Worker JVM (the pid
  scripts/local_cluster.py records, checked against /proc) and waits until it is gone. The executor exits when its
  Worker dies; Spark must run the lost tasks again on worker 0, recomputing the blocks it lost from the input, and
  the fit goes on there: a running application gets no new executor on a dead worker, and worker 0's cores are all
  taken, so every later pass runs one task per core left (two).

Evidence: the markers, which processes are gone, the executors and cores left, the master's alive workers, and per
pass the tasks and failed attempts Spark's status tracker saw.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))

from injection import (
    PassHook, Untouched, alive, claim, cmdline, drain_listener_bus, kill_and_wait, model_report, parent_of,
    read_marker, wait_until,
)
from probe_local_faults import FEATURES, write_points
from pyspark import cloudpickle
from pyspark.sql import SparkSession

from sparkgmm import GaussianMixture

# imported by probe_application.py, this module's functions reach the executors by value (they cannot import it)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def worker_of(cwd: str, state_dir: str) -> str | None:
    """``work-<i>`` for an executor's working directory (standalone: <state>/work-<i>/<app>/<executor>)."""
    try:
        return Path(cwd).relative_to(state_dir).parts[0]
    except (ValueError, IndexError):
        return None


class WorkerLoss:
    """The extra request of the faulted pass (see the module docstring)."""

    description = "injected fault: lose worker 1"

    def __init__(self, marker: str, state_dir: str, survivor: str, victim: str, victim_pid: int,
                 timeout: float = 120.0):
        self.marker, self.state_dir, self.timeout = marker, state_dir, timeout
        self.survivor, self.victim, self.victim_pid = survivor, victim, victim_pid

    def empty(self, n_features: int) -> Untouched:
        return Untouched()

    def on_block(self, block) -> Untouched:
        here = worker_of(os.getcwd(), self.state_dir)
        held = self.marker + ".held"
        if here == self.victim and alive(self.victim_pid):
            executor = os.getppid()  # the pyspark daemon; its parent is this executor's JVM
            while executor and EXECUTOR_CLASS not in cmdline(executor):
                executor = parent_of(executor)
            claim(held, executor_pid=executor, worker=here)
            wait_until(lambda: not alive(self.victim_pid) and not alive(executor), self.timeout)
        elif here == self.survivor and not os.path.exists(self.marker):
            # hold the first block until a task of this pass runs on the victim (bounded: kill anyway after that)
            holding = wait_until(lambda: os.path.exists(held), self.timeout)
            if claim(self.marker, victim=self.victim, victim_pid=self.victim_pid, victim_task_running=holding):
                started = time.monotonic()
                gone = kill_and_wait(self.victim_pid, self.timeout)
                claim(self.marker + ".killed", gone=gone, seconds=time.monotonic() - started)
        return Untouched()


def worker_jvm(state_dir: str, name: str) -> int:
    """The pid of worker ``name``'s Worker JVM: recorded by scripts/local_cluster.py, checked against /proc (or found
    there by its work directory)."""
    work_dir = str(Path(state_dir) / name)

    def is_it(pid: int) -> bool:
        args = cmdline(pid)
        return WORKER_CLASS in args and "--work-dir" in args and args[args.index("--work-dir") + 1] == work_dir

    recorded = json.loads((Path(state_dir) / "cluster.json").read_text())["pids"]
    for pid in recorded:
        if is_it(pid):
            return pid
    found = [int(p) for p in os.listdir("/proc") if p.isdigit() and is_it(int(p))]
    if len(found) != 1:
        sys.exit(f"cannot find the Worker JVM of {work_dir}: {found}")
    return found[0]


def executor_jvms(state_dir: str) -> dict[str, list[int]]:
    """Executor JVMs running now, by worker (from /proc: their class and working directory)."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and EXECUTOR_CLASS in cmdline(int(entry)) and alive(int(entry)):
            try:
                worker = worker_of(os.readlink(f"/proc/{entry}/cwd"), state_dir)
            except OSError:
                continue
            found.setdefault(worker, []).append(int(entry))
    return found


def block_files_left(sc) -> list[str]:
    """sparkgmm's local block files left anywhere: in the local directories of the executors still running, and (the
    cluster runs on this machine) under the cluster's SPARK_LOCAL_DIRS, where the lost executor's were."""

    def on_executor(_):
        roots = [root for root in os.environ.get("SPARK_LOCAL_DIRS", "").split(",") if root]
        return [path for root in roots for path in glob.glob(os.path.join(root, "sparkgmm-*", "*"))]

    found = set(sc.parallelize(range(8), 8).flatMap(on_executor).collect())
    for root in filter(None, os.environ.get("SPARK_LOCAL_DIRS", "").split(",")):
        found.update(glob.glob(os.path.join(root, "**", "sparkgmm-*", "*"), recursive=True))
    return sorted(found)


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    if not wait_until(condition, timeout, poll=0.2):
        sys.exit(f"timed out waiting for {what}")


def probe(spark, state_dir: str, block_storage: str, trigger: str, workdir: Path) -> dict:
    """The baseline fit, then the fit that loses worker 1 in the pass of ``trigger``; its files go in ``workdir``."""
    sc = spark.sparkContext
    jsc = sc._jsc.sc()
    wait_for(lambda: sc.defaultParallelism == 4, "both executors to register")

    def executors() -> list[str]:
        ids = jsc.getExecutorIds()  # a Scala Seq, the driver excluded
        return sorted(ids.apply(i) for i in range(ids.size()))

    def where_tasks_run() -> list[str]:
        return sorted({worker_of(cwd, state_dir) for cwd in
                       sc.parallelize(range(8), 8).map(lambda _: os.getcwd()).collect()})

    def master_alive_workers() -> int:
        web_ui = json.loads((Path(state_dir) / "cluster.json").read_text())["web_ui"]
        with urllib.request.urlopen(f"{web_ui}/json/", timeout=10) as response:
            return json.load(response)["aliveworkers"]

    df = spark.read.parquet(write_points(workdir / "points.parquet", n=6000))
    # k-means||: a start some passes from the optimum, so that the pass of EM iteration 3 falls mid-fit (the default
    # start, searched on the sample, converges here in two iterations)
    gmm = GaussianMixture(k=3, inputCols=FEATURES, seed=5, tol=1e-6, maxIter=20, blockStorage=block_storage,
                          initMode="k-means||")
    report: dict = {"trigger": trigger, "block_storage": block_storage,
                    "before": {"parallelism": sc.defaultParallelism, "executors": executors(),
                               "workers_running_tasks": where_tasks_run(), "executor_jvms": executor_jvms(state_dir),
                               "master_alive_workers": master_alive_workers()}}
    with PassHook(sc, "baseline") as hook:
        baseline = gmm.fit(df)
    report["baseline"] = {"model": model_report(baseline), "passes": hook.report()}

    victim_pid = worker_jvm(state_dir, "work-1")
    victim_executors = executor_jvms(state_dir).get("work-1", [])
    marker = str(workdir / "worker-lost.marker")
    fault = WorkerLoss(marker, state_dir, survivor="work-0", victim="work-1", victim_pid=victim_pid)
    with PassHook(sc, "worker-lost", trigger, fault) as hook:
        faulted = gmm.fit(df)
    drain_listener_bus(sc)
    report["faulted"] = {
        "model": model_report(faulted),
        "passes": hook.report(),
        "injected_passes": [record.number for record in hook.injected],
        "marker": read_marker(marker),
        "held": read_marker(marker + ".held"),
        "killed": read_marker(marker + ".killed"),
        "victim_worker_pid": victim_pid,
        "victim_worker_alive": alive(victim_pid),
        "victim_executor_pids": victim_executors,
        "victim_executors_alive": [pid for pid in victim_executors if alive(pid)],
    }
    report["after"] = {"parallelism": sc.defaultParallelism, "executors": executors(),
                       "workers_running_tasks": where_tasks_run(), "executor_jvms": executor_jvms(state_dir),
                       "master_alive_workers": master_alive_workers(),
                       "persisted_rdds": sc._jsc.getPersistentRDDs().size(), "block_files_left": block_files_left(sc)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--block-storage", default="local-files")
    parser.add_argument("--trigger", default="EM iteration 3")
    args = parser.parse_args()
    spark = SparkSession.builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    print(json.dumps(probe(spark, str(Path(args.state_dir).resolve()), args.block_storage, args.trigger, Path.cwd())))
    spark.stop()


if __name__ == "__main__":
    main()
