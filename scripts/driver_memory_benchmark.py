"""Driver memory benchmark: the driver's peak memory does not grow with the rows or with the input's partitions.

    .venv/bin/python scripts/driver_memory_benchmark.py [--rows 1M] [--features 8] [--k 4] [--iters 10]
        [--partitions 10,2000] [--factor 10] [--driver-memory 2g] [--seed 0] [--block-storage X]
        [--conf KEY=VALUE ...] [--nmt] [--json [PATH]]

Why
    sparkgmm's driver runs the EM loop: each pass broadcasts a request whose size depends on k and d, every task
    answers with a partial result of fixed size (O(k d^2) sums for an E-step; for a k-means|| round a cost and at
    most a fixed capacity of candidate rows, 3 x the oversampling (2k) + 64), and the answers are tree-reduced, so
    what reaches the driver is bounded by k, d and the number of tasks of a pass (one per core), never by the rows
    or by how many partitions the input has. The driver never holds rows.
    This script checks that claim end to end: it fits the same k and d at n and 10n rows, each read from 10 and from
    2,000 input partitions, and compares the driver's peak memory across the four cases.

What it does
- Four cases, each fitted in a fresh child process (this script with --child), so each starts its own JVM and no
  case inherits another's memory: (n, 10 partitions), (10n, 10), (n, 2,000), (10n, 2,000); n = --rows (default
  1,000,000), d = --features (8), k = --k (4); the factor 10 and the partition counts are --factor and --partitions.
- Session: `sparkgmm.spark.session.local_session` on `local[2]` (bound to 127.0.0.1), spark.driver.memory
  --driver-memory (2g, the same in every case), spark.ui.enabled=false, plus any --conf settings.
- Data, generated inside Spark so that nothing is held on the driver and the input partitions are real:
  `spark.range(rows, numPartitions=P)`, a component c = floor(k * rand(seed)) per row, and feature i =
  randn(seed + 1 + i) + mean[c, i] (means ~ N(0, 3^2), fixed by --seed): a mixture of k unit-covariance Gaussians,
  in exactly P input partitions (`df.rdd.getNumPartitions()` is reported to show it).
- Fit: `sparkgmm.GaussianMixture(k, inputCols=f0.., seed, maxIter=--iters, tol=0.0, acceleration="none")`, so exactly
  --iters plain EM iterations run (one pass each), plus the conversion (which also keeps the bounded sample that
  the default start searches on the driver).
- Measured in each child, right after `fit` returns and before anything else runs in the session:
  - Python driver peak: VmHWM of the child itself (/proc/self/status). Not `ru_maxrss`: Linux carries it over from
    the parent across the fork and exec that started the child.
  - JVM peak: VmHWM of the driver JVM, the `java` process whose parent is the child (found through /proc).
  - JVM heap after GC: `System.gc()`, then Runtime.totalMemory() - freeMemory() (through the Py4J gateway): what
    the JVM still holds after the fit, which unlike its RSS does not depend on when the collector chose to grow
    the heap. Also taken before the fit (after the session starts), for the difference.
  - Bytes returned to the driver: the sum of `resultSize` of the fit's stages in Spark's status store (every task
    result the driver received, serialized, including each task's metrics, roughly 1-2 KB per task), with the
    fit's jobs, stages and tasks counted from the same store.
  - rows (`summary.numRows`), input partitions, wall seconds of `fit`, conversion seconds, and seconds per
    iteration (median of `summary.iterationSeconds`).
  - During the fit a thread samples the JVM's RSS and heap every 0.5 s: when its peak happened (conversion or
    passes), how much of it was committed heap, and the largest RSS beyond the committed heap.
  - With --nmt the JVM runs with -XX:NativeMemoryTracking=summary and `jcmd VM.native_memory summary` is read
    after the fit: committed MiB per area (a diagnosis; tracking costs the JVM some memory of its own).
- The parent prints one row per case, the ratio of each memory column to the (n, 10 partitions) case, and a verdict
  per axis; `--json` prints the same results (every measurement, and each stage the fit ran) as JSON on stdout
  instead, `--json PATH` writes them to PATH as well as printing the table.

Verdicts and thresholds
- rows axis: the Python driver peak at 10n over n, at each partition count; partitions axis: at 2,000 over 10
  partitions, at each row count. The larger ratio of the two pairs decides.
- "flat" when that Python driver peak ratio is <= 1.10, "grows" otherwise. This is the claim being tested.
- The JVM's heap after GC is reported on the same line with its own threshold, 1.25 (the heap holds Spark's own
  bookkeeping, which is not sparkgmm's to bound); its peak RSS ratio is shown for information only.

Reading the JVM columns
- In local mode the driver JVM is also the executor: it runs every task (generating the rows, the Arrow conversion,
  writing the blocks, feeding the Python workers), so its RSS includes the tasks' work. On a cluster the executors
  do that work, not the driver.
- JVM peak (VmHWM) is mostly heap that G1 committed before it collected: garbage from the tasks, sized by G1's
  heuristics and the machine's load, not data the JVM keeps. "of it heap" is the committed heap in the sample
  (every 0.5 s) where the RSS was largest, "JVM non-heap" the largest RSS beyond the committed heap (metaspace,
  code, threads, GC structures, Arrow and Netty buffers), "heap GC" what the JVM still holds once the fit is done.
  The JVM peak is therefore noisy: the same case (10M rows from 10 partitions) peaked at 841 MiB in one run here
  and at 1,537 MiB (1,513 of it committed heap) in another. Its ratios are printed for information, not judged.
- Spark's status store (kept even with the UI disabled) holds per-job, per-stage and per-task records and SQL
  executions' plans and metrics, up to spark.ui.retainedJobs/retainedStages/retainedTasks and
  spark.sql.ui.retainedExecutions. sparkgmm's conversion reads the input through `coalesce(cores)`, so every
  stage of a fit has one task per core, not one per input partition: a fit records 19-20 jobs and 38-40 tasks (the
  "tasks" column) from 10 or from 2,000 input partitions alike, and no SQL execution (the conversion runs as an
  RDD job), so there is nothing per input partition for those settings to bound (pass them with --conf to check).
  With --nmt (Native Memory Tracking, 10M rows), the JVM's areas other than the Java heap differed by at most
  10 MiB each (12 MiB in all) between 10 and 2,000 partitions (metaspace 114/116, GC 52/62, code 27/37, threads
  28/27 MiB).
- Many input partitions cost time, not memory. Each input partition used to go through two Python evaluations in
  the conversion (the `mapInArrow` that packs blocks and the Python RDD stage that stores them), ~0.1 s each, and
  every pass then read one small file per input partition: from 2,000 partitions a fit of 1M rows took 207.7 s
  (conversion 189 s, 0.971 s/iter) against 11.4 s from 10. sparkgmm now merges the input to at most 4 partitions per
  core before packing (`MAX_PARTITIONS_PER_CORE` in sparkgmm/spark/blocks.py): the same case took 31.7 s
  (conversion 22 s, 0.649 s/iter) in the run below, on a machine busy with other work.

A run here (2026-11-25, 2-core machine shared with other work; the full table is what the script prints), after
the merge of input partitions
- Python driver peak 145-146 MiB in all four cases (ratios 1.00); JVM heap after GC 63-64 MiB in all four (49 MiB
  before the fit); the driver received 189-200 KiB of task results per fit over 38-40 tasks, whatever the rows
  or the partitions; the largest single stage result was 17 KiB.
- JVM peak RSS 738, 1,318, 830 and 1,030 MiB for (n, 10), (10n, 10), (n, 2,000), (10n, 2,000), most of it committed
  heap (627, 1,249, 786, 892 MiB) that G1 grew before collecting; the RSS beyond the committed heap moved between
  281 and 794 MiB from run to run. An earlier run (before the merge) saw 46-68 MiB more outside the heap with 2,000
  partitions, and Native Memory Tracking's areas outside the heap then differed by 12 MiB in all, so that
  difference was in memory NMT does not track (the C allocator's own, for instance) and was not attributed further.
MiB = 2^20 bytes. Seconds are noisy on the shared 2-core machines; memory is what this script is about.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

# benchtools.py sits next to this script: run as `python scripts/driver_memory_benchmark.py`, scripts/ is on sys.path.
from benchtools import (MIB, ArgumentParser, Poller, UsageError, check_at_least, check_driver_memory, check_json_path,
                        check_k_rows, find_jvm, fmt, jvm_max_heap, logger, machine, own_status_kib, parse_count,
                        print_result, run_child_process, run_main, status_kib, table_lines, write_json)

# numpy, pyspark and sparkgmm are imported inside the child's functions: the parent never needs them.

PROG = "driver_memory_benchmark"
RESULT_PREFIX = "DRIVER_MEMORY_RESULT "
PY_FLAT = 1.10  # Python driver peak ratio: the verdict
HEAP_FLAT = 1.25  # JVM heap after GC ratio: reported alongside
SAMPLE_SECONDS = 0.5  # the JVM's RSS and heap during the fit


log = logger(PROG)


# --- arguments ------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1M", help="n, the rows of the small cases (the large ones have --factor n)")
    parser.add_argument("--factor", type=int, default=10, help="rows of the large cases over n (default 10)")
    parser.add_argument("--partitions", default="10,2000", help="FEW,MANY input partitions (default 10,2000)")
    parser.add_argument("--features", type=int, default=8, help="d (default 8)")
    parser.add_argument("--k", type=int, default=4, help="components (default 4)")
    parser.add_argument("--iters", type=int, default=10, help="EM iterations per fit (tol=0, so exactly these)")
    parser.add_argument("--driver-memory", default="2g", help="spark.driver.memory of every case's JVM (default 2g)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the fits")
    parser.add_argument("--block-storage", help="estimator param blockStorage (the library's default if not given)")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra Spark setting for every case's session (repeatable)")
    parser.add_argument("--nmt", action="store_true",
                        help="diagnosis: run each JVM with Native Memory Tracking and report its areas after the fit")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="machine output: the results as JSON on stdout (no table), or also to PATH")
    # internal: one case in this process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--case-partitions", type=int, help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.n = parse_count(args.rows, "--rows")
    parts = [part.strip() for part in args.partitions.split(",")]
    if len(parts) != 2:
        raise UsageError(f"--partitions: {args.partitions!r} must be two counts, FEW,MANY (e.g. 10,2000)")
    args.few, args.many = (parse_count(part, "--partitions") for part in parts)
    if args.few >= args.many:
        raise UsageError(f"--partitions: {args.few} must be fewer than {args.many}")
    check_at_least(args, (("factor", 2), ("features", 1), ("k", 1), ("iters", 1)))
    check_k_rows(args.k, args.n, f"--rows is {args.n}")
    check_driver_memory(args.driver_memory, "2g, 2048m")
    args.conf_map = {}
    for item in args.conf:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--conf: {item!r} is not KEY=VALUE")
        if key.strip() in ("spark.driver.host", "spark.driver.bindAddress", "spark.master"):
            raise UsageError(f"--conf: {key.strip()} is fixed by this script (local[2] on 127.0.0.1)")
        args.conf_map[key.strip()] = value
    if args.json not in (None, "-"):
        check_json_path(args.json)
    if args.child and (args.case_rows is None or args.case_partitions is None):
        raise UsageError("--child needs --case-rows and --case-partitions")
    return args


def cases(args: argparse.Namespace) -> list[dict]:
    """The four cases, the first one the base of the ratios."""
    big = args.n * args.factor
    return [
        {"case": f"n, {args.few} parts", "rows": args.n, "partitions": args.few},
        {"case": f"{args.factor}n, {args.few} parts", "rows": big, "partitions": args.few},
        {"case": f"n, {args.many} parts", "rows": args.n, "partitions": args.many},
        {"case": f"{args.factor}n, {args.many} parts", "rows": big, "partitions": args.many},
    ]


# --- the JVM's native memory (jcmd) --------------------------------------------------------------------------------

_NMT_AREA = re.compile(r"^-\s*(.+?)\s+\(reserved=(\d+)KB, committed=(\d+)KB\)")
_NMT_TOTAL = re.compile(r"^Total: reserved=(\d+)KB, committed=(\d+)KB")


def native_memory(pid: int) -> dict[str, float] | None:
    """Committed MiB per area of the JVM's Native Memory Tracking summary (``jcmd <pid> VM.native_memory summary``;
    the JVM must run with -XX:NativeMemoryTracking=summary), with "Total"; None if jcmd fails."""
    try:
        jcmd = os.path.join(os.path.dirname(os.readlink(f"/proc/{pid}/exe")), "jcmd")
    except OSError:
        jcmd = "jcmd"
    try:
        output = subprocess.run([jcmd if os.path.exists(jcmd) else "jcmd", str(pid), "VM.native_memory", "summary"],
                                capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    areas = {}
    for line in output.splitlines():
        line = line.strip()
        total, area = _NMT_TOTAL.match(line), _NMT_AREA.match(line)
        if total:
            areas["Total"] = int(total.group(2)) / 1024
        elif area:
            areas[area.group(1)] = int(area.group(3)) / 1024
    return areas or None


# --- one case, in a child process -----------------------------------------------------------------------------------

def start_session(args: argparse.Namespace):
    from sparkgmm.spark.session import local_session

    conf = {**args.conf_map, "spark.driver.memory": args.driver_memory, "spark.ui.enabled": "false"}
    if args.nmt:
        options = conf.get("spark.driver.extraJavaOptions", "")
        conf["spark.driver.extraJavaOptions"] = f"{options} -XX:NativeMemoryTracking=summary".strip()
    spark = local_session("local[2]", "sparkgmm-driver-memory-benchmark", **conf)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def component_means(d: int, k: int, seed: int):
    """k means ~ N(0, 3^2) per coordinate: unit-covariance components about 3 sqrt(2d) apart."""
    import numpy as np

    return np.random.default_rng([seed, 2025]).normal(0.0, 3.0, (k, d))


def input_frame(spark, rows: int, partitions: int, d: int, k: int, seed: int):
    """``rows`` rows of a k-component mixture in exactly ``partitions`` partitions, generated by Spark's tasks."""
    from pyspark.sql import functions as F

    means = component_means(d, k, seed)
    frame = spark.range(rows, numPartitions=partitions).withColumn(
        "c", F.least(F.floor(F.rand(seed) * k), F.lit(k - 1)).cast("int"))
    columns = []
    for i in range(d):
        offsets = F.array(*[F.lit(float(means[j, i])) for j in range(k)])
        columns.append((F.randn(seed + 1 + i) + F.element_at(offsets, F.col("c") + 1)).alias(f"f{i}"))
    return frame.select(*columns)


def heap_committed_bytes(spark) -> int:
    """Heap the JVM has committed now (Runtime.totalMemory()): G1 grows it toward -Xmx as garbage builds up, and may
    give some back after a collection."""
    return int(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().totalMemory())


def heap_after_gc_bytes(spark) -> int:
    """Heap in use after a full collection (``System.gc()``, asked twice: the second finds what the first freed)."""
    lang = spark.sparkContext._jvm.java.lang
    runtime = lang.Runtime.getRuntime()
    for _ in range(2):
        lang.System.gc()
    return int(runtime.totalMemory() - runtime.freeMemory())


def _scala_seq(seq) -> list:
    items, iterator = [], seq.iterator()
    while iterator.hasNext():
        items.append(iterator.next())
    return items


def _option(value):
    return value.get() if value.isDefined() else None


def status_store_stages(spark) -> list[dict]:
    """Every stage Spark's status store holds: id, tasks, result bytes received by the driver, job description."""
    sc = spark.sparkContext
    store = sc._jsc.sc().statusStore()
    no_quantiles = sc._gateway.new_array(sc._jvm.double, 0)
    stages = []
    for stage in _scala_seq(store.stageList(None, False, False, no_quantiles, None)):
        stages.append({"stage": int(stage.stageId()), "attempt": int(stage.attemptId()),
                       "tasks": int(stage.numTasks()), "result_bytes": int(stage.resultSize()),
                       "status": str(stage.status().toString()), "description": _option(stage.description()),
                       "name": str(stage.name())})
    return stages


def status_store_counts(spark) -> dict:
    """How much Spark's status store holds: jobs, stages, tasks of those stages, SQL executions."""
    sc = spark.sparkContext
    counts: dict[str, int | None] = {"jobs": len(_scala_seq(sc._jsc.sc().statusStore().jobsList(None)))}
    try:
        counts["sql_executions"] = int(spark._jsparkSession.sharedState().statusStore().executionsCount())
    except Exception:  # not essential
        counts["sql_executions"] = None
    return counts


class JvmSampler(Poller):
    """Every SAMPLE_SECONDS during the fit: the JVM's resident set (VmRSS) and its committed and used heap. Keeps the
    sample with the largest RSS (when the JVM's peak happened and how much of it was committed heap) and the largest
    RSS beyond the committed heap (the JVM's memory outside the Java heap: metaspace, code, threads, GC structures,
    Arrow and Netty buffers)."""

    def __init__(self, spark, jvm: int | None):
        super().__init__(SAMPLE_SECONDS, sample_first=True)
        self._runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
        self._jvm = jvm
        self.started = time.perf_counter()
        self.peak: dict[str, float] | None = None  # the sample with the largest RSS, None until one is taken
        self.non_heap_mib = 0.0
        self.samples = 0

    def sample(self) -> None:
        rss = status_kib(self._jvm, "VmRSS") if self._jvm else None
        if rss is None:
            return
        try:
            committed, free = int(self._runtime.totalMemory()), int(self._runtime.freeMemory())
        except Exception:  # the gateway may be busy shutting down; keep what was seen
            return
        self.samples += 1
        rss_mib = rss / 1024
        self.non_heap_mib = max(self.non_heap_mib, rss_mib - committed / MIB)
        if self.peak is None or rss_mib > self.peak["rss_mib"]:
            self.peak = {"seconds_into_fit": time.perf_counter() - self.started, "rss_mib": rss_mib,
                         "heap_committed_mib": committed / MIB, "heap_used_mib": (committed - free) / MIB}


def fit_case(spark, args: argparse.Namespace) -> dict:
    from sparkgmm import GaussianMixture

    jvm = find_jvm(os.getpid(), children_only=True)  # the driver JVM: the child's own java process
    heap_before = heap_after_gc_bytes(spark)
    python_rss_before = own_status_kib("VmRSS")
    jvm_rss_before = status_kib(jvm, "VmRSS") if jvm else None
    stages_before = {(s["stage"], s["attempt"]) for s in status_store_stages(spark)}

    df = input_frame(spark, args.case_rows, args.case_partitions, args.features, args.k, args.seed)
    input_partitions = df.rdd.getNumPartitions()  # plans the query; runs no job
    params = {"blockStorage": args.block_storage} if args.block_storage else {}
    estimator = GaussianMixture(k=args.k, inputCols=[f"f{i}" for i in range(args.features)], seed=args.seed,
                                maxIter=args.iters, tol=0.0, acceleration="none", **params)
    sampler = JvmSampler(spark, jvm)
    sampler.start()
    started = time.perf_counter()
    model = estimator.fit(df)
    wall = time.perf_counter() - started
    sampler.finish()
    sampled_peak = sampler.peak
    # Peaks first, before anything else runs in this process or the session.
    python_peak_kib = own_status_kib("VmHWM")
    jvm_peak_kib = status_kib(jvm, "VmHWM") if jvm else None
    heap_committed = heap_committed_bytes(spark)
    nmt = native_memory(jvm) if args.nmt and jvm else None
    heap_after = heap_after_gc_bytes(spark)
    jvm_rss_after = status_kib(jvm, "VmRSS") if jvm else None

    stages = [s for s in status_store_stages(spark) if (s["stage"], s["attempt"]) not in stages_before]
    conversion = [s for s in stages if (s["description"] or "").startswith("sparkgmm: convert")]
    passes = [s for s in stages if s not in conversion]
    summary = model.summary
    iteration_seconds = list(summary.iterationSeconds)
    return {
        "rows": args.case_rows, "requested_partitions": args.case_partitions, "input_partitions": input_partitions,
        "num_rows": summary.numRows, "num_iter": summary.numIter, "num_passes": summary.numPasses,
        "log_likelihood": summary.logLikelihood, "block_storage": summary.blockStorage,
        "block_bytes": summary.blockBytes,
        "fit_seconds": wall, "conversion_seconds": summary.conversionSeconds,
        "iteration_seconds": iteration_seconds, "s_per_iter": statistics.median(iteration_seconds),
        "python_peak_mib": python_peak_kib / 1024, "python_rss_before_fit_mib": python_rss_before / 1024,
        "jvm_found": jvm is not None, "jvm_xmx": jvm_max_heap(jvm) if jvm else None,
        "jvm_peak_mib": None if jvm_peak_kib is None else jvm_peak_kib / 1024,
        "jvm_rss_before_fit_mib": None if jvm_rss_before is None else jvm_rss_before / 1024,
        "jvm_rss_after_fit_mib": None if jvm_rss_after is None else jvm_rss_after / 1024,
        "heap_before_fit_mib": heap_before / MIB, "heap_after_gc_mib": heap_after / MIB,
        "heap_committed_after_fit_mib": heap_committed / MIB, "native_memory_committed_mib": nmt,
        "jvm_sampled_peak": sampled_peak, "jvm_samples": sampler.samples,
        "jvm_heap_at_peak_mib": None if sampled_peak is None else sampled_peak["heap_committed_mib"],
        "jvm_peak_phase": None if sampled_peak is None else (
            "conversion" if sampled_peak["seconds_into_fit"] <= summary.conversionSeconds else "passes"),
        "jvm_non_heap_peak_mib": sampler.non_heap_mib if sampler.samples else None,
        "result_bytes": sum(s["result_bytes"] for s in stages),
        "conversion_result_bytes": sum(s["result_bytes"] for s in conversion),
        "pass_result_bytes": sum(s["result_bytes"] for s in passes),
        "largest_stage_result_bytes": max((s["result_bytes"] for s in stages), default=0),
        "stages": len(stages), "tasks": sum(s["tasks"] for s in stages),
        "conversion_tasks": sum(s["tasks"] for s in conversion),
        "largest_stage_tasks": max((s["tasks"] for s in stages), default=0),
        "status_store": status_store_counts(spark),
        "spark_conf": {key: spark.sparkContext.getConf().get(key) for key in sorted(
            {*args.conf_map, "spark.master", "spark.driver.memory", "spark.ui.enabled", "spark.driver.host",
             "spark.driver.extraJavaOptions"})},
        "stage_detail": stages,
    }


def run_child(args: argparse.Namespace) -> None:
    spark = start_session(args)
    try:
        result = fit_case(spark, args)
    finally:
        spark.stop()
    print_result(RESULT_PREFIX, result)


# --- the parent: the cases, the table, the verdicts -----------------------------------------------------------------

def child_command(args: argparse.Namespace, case: dict) -> list[str]:
    command = [sys.executable, os.path.abspath(__file__), "--child", "--case-rows", str(case["rows"]),
               "--case-partitions", str(case["partitions"]), "--rows", str(args.n), "--features", str(args.features),
               "--k", str(args.k), "--iters", str(args.iters), "--driver-memory", args.driver_memory,
               "--seed", str(args.seed)]
    if args.block_storage:
        command += ["--block-storage", args.block_storage]
    if args.nmt:
        command.append("--nmt")
    for key, value in args.conf_map.items():
        command += ["--conf", f"{key}={value}"]
    return command


def run_case(args: argparse.Namespace, case: dict) -> dict:
    log(f"{case['case']}: fitting {case['rows']:,} rows from {case['partitions']:,} partitions in a fresh process "
        f"(local[2], driver memory {args.driver_memory}) ...")
    # The child's stdout carries its result line; its stderr (Spark's start-up lines) goes to ours.
    found, returncode, seconds = run_child_process(child_command(args, case), RESULT_PREFIX)
    if found is None:
        log(f"  {case['case']}: the child process failed (exit code {returncode})")
        return {**case, "failed": True, "returncode": returncode, "process_seconds": seconds}
    result = {**case, **found, "failed": False, "process_seconds": seconds}
    if result["num_iter"] != args.iters:
        log(f"  warning: {result['num_iter']} EM iterations ran, not {args.iters}")
    if result["input_partitions"] != case["partitions"]:
        log(f"  warning: the input had {result['input_partitions']} partitions, not {case['partitions']}")
    log(f"  Python peak {result['python_peak_mib']:.0f} MiB, JVM peak {fmt(result['jvm_peak_mib'], '.0f')} MiB, "
        f"heap after GC {result['heap_after_gc_mib']:.0f} MiB, {result['fit_seconds']:.1f} s")
    return result


MEMORY = (("python_peak_mib", "py_ratio"), ("jvm_peak_mib", "jvm_ratio"), ("heap_after_gc_mib", "heap_ratio"))


def derive(results: list[dict]) -> None:
    """Ratios of each memory column to the first case (n rows, few partitions)."""
    base = results[0]
    for r in results:
        for column, ratio in MEMORY:
            ok = not r["failed"] and not base["failed"] and r.get(column) and base.get(column)
            r[ratio] = r[column] / base[column] if ok else None


COLUMNS = [  # header, width, value of a result row
    ("case", 16, lambda r: r["case"]),
    ("rows", 10, lambda r: f"{r['rows']:,}"),
    ("input parts", 11, lambda r: f"{r['input_partitions']:,}"),
    ("py peak MiB", 11, lambda r: fmt(r["python_peak_mib"], ".0f")),
    ("JVM peak MiB", 12, lambda r: fmt(r["jvm_peak_mib"], ",.0f")),
    ("of it heap", 10, lambda r: fmt(r["jvm_heap_at_peak_mib"], ",.0f")),
    ("JVM non-heap", 12, lambda r: fmt(r["jvm_non_heap_peak_mib"], ",.0f")),
    ("heap GC MiB", 11, lambda r: fmt(r["heap_after_gc_mib"], ".0f")),
    ("py x", 5, lambda r: fmt(r["py_ratio"], ".2f")),
    ("JVM x", 5, lambda r: fmt(r["jvm_ratio"], ".2f")),
    ("heap x", 6, lambda r: fmt(r["heap_ratio"], ".2f")),
    ("to driver KiB", 13, lambda r: fmt(r["result_bytes"] / 1024, ",.0f")),
    ("tasks", 5, lambda r: str(r["tasks"])),
    ("fit s", 6, lambda r: fmt(r["fit_seconds"], ".1f")),
    ("s/iter", 6, lambda r: fmt(r["s_per_iter"], ".3f")),
]


def failed_row(r: dict) -> str:
    return f"{r['case']:>16} | {r['rows']:>10,} | failed: the child exited with code {r['returncode']}"


def verdicts(results: list[dict], args: argparse.Namespace) -> list[dict]:
    """Per axis, the larger ratio over its two pairs of cases, for the Python peak, the heap after GC, the JVM peak."""
    by_key = {(r["rows"], r["partitions"]): r for r in results}
    big = args.n * args.factor
    axes = {
        f"rows ({args.factor}n vs n)": [((big, p), (args.n, p)) for p in (args.few, args.many)],
        f"partitions ({args.many:,} vs {args.few})": [((rows, args.many), (rows, args.few)) for rows in (args.n, big)],
    }
    out = []
    for axis, pairs in axes.items():
        found = {}
        for column in [column for column, _ in MEMORY] + ["jvm_non_heap_peak_mib"]:
            ratios = []
            for top, bottom in pairs:
                a, b = by_key.get(top), by_key.get(bottom)
                if a and b and not a["failed"] and not b["failed"] and a.get(column) and b.get(column):
                    ratios.append(a[column] / b[column])
            found[column] = max(ratios) if len(ratios) == len(pairs) else None
        py, heap, jvm = found["python_peak_mib"], found["heap_after_gc_mib"], found["jvm_peak_mib"]
        out.append({
            "axis": axis,
            "verdict": "n/a" if py is None else ("flat" if py <= PY_FLAT else "grows"),
            "python_peak_ratio": py,
            "heap_verdict": "n/a" if heap is None else ("flat" if heap <= HEAP_FLAT else "grows"),
            "heap_after_gc_ratio": heap, "jvm_peak_ratio": jvm, "jvm_non_heap_ratio": found["jvm_non_heap_peak_mib"],
        })
    return out


def verdict_lines(found: list[dict]) -> list[str]:
    lines = []
    for v in found:
        lines.append(
            f"{v['verdict'].upper():>5}  {v['axis']}: Python driver peak x{fmt(v['python_peak_ratio'], '.2f')} "
            f"(flat <= {PY_FLAT:.2f}); JVM heap after GC x{fmt(v['heap_after_gc_ratio'], '.2f')}: "
            f"{v['heap_verdict']} (<= {HEAP_FLAT:.2f}); information only: JVM peak RSS "
            f"x{fmt(v['jvm_peak_ratio'], '.2f')}, JVM non-heap x{fmt(v['jvm_non_heap_ratio'], '.2f')}")
    return lines


def notes(results: list[dict], args: argparse.Namespace) -> list[str]:
    done = [r for r in results if not r["failed"]]
    storage = done[0]["block_storage"] if done else args.block_storage
    lines = [
        f"d={args.features}, k={args.k}, {args.iters} plain EM iterations (tol=0), local[2], spark.driver.memory "
        f"{args.driver_memory} (-Xmx{done[0]['jvm_xmx'] if done else '?'}), spark.ui.enabled=false, blocks in "
        f"{storage}" + "".join(f", {key}={value}" for key, value in args.conf_map.items()),
        "py peak: VmHWM of the driver's Python process (the EM loop), read right after fit returns. Ratios (x) are "
        "to the first row.",
        "JVM peak: VmHWM of the driver JVM. In local mode the driver JVM also runs the executor's tasks (row "
        "generation, Arrow conversion, block writes, feeding the Python workers), so its RSS includes task work and "
        "how far G1 grew the heap toward -Xmx before collecting, which differs from run to run. of it heap: the "
        f"committed heap when the RSS was largest (sampled every {SAMPLE_SECONDS} s); JVM non-heap: the largest RSS "
        "beyond the committed heap; heap GC: heap in use after System.gc() once the fit is done, what the JVM retains.",
        "to driver: bytes of task results the driver received during the fit (sum of the stages' resultSize, each "
        "task's metrics included); tasks: the fit's tasks, from Spark's status store.",
    ]
    if done:
        low = min(r["heap_before_fit_mib"] for r in done)
        high = max(r["heap_before_fit_mib"] for r in done)
        lines.append(f"heap after GC before the fit (fresh session): {low:.0f}-{high:.0f} MiB; conversion tasks per "
                     f"case: {', '.join(str(r['conversion_tasks']) for r in done)} (the input is read through "
                     f"coalesce(cores)); largest stage: {max(r['largest_stage_tasks'] for r in done)} tasks; largest "
                     f"stage result: {max(r['largest_stage_result_bytes'] for r in done) / 1024:.0f} KiB; SQL "
                     f"executions recorded: {', '.join(str(r['status_store']['sql_executions']) for r in done)}")
        lines.append("JVM peak during: " + ", ".join(f"{r['case']}: {r['jvm_peak_phase'] or '?'}" for r in done)
                     + "; conversion s: " + ", ".join(f"{r['conversion_seconds']:.0f}" for r in done))
    return lines


def nmt_lines(results: list[dict]) -> list[str]:
    """With --nmt: committed MiB of the JVM's larger native memory areas, per case."""
    done = [r for r in results if not r["failed"] and r.get("native_memory_committed_mib")]
    if not done:
        return []
    def largest(area: str) -> float:
        return max(r["native_memory_committed_mib"].get(area, 0.0) for r in done)

    areas = sorted({area for r in done for area, mib in r["native_memory_committed_mib"].items() if mib >= 8},
                   key=lambda area: (area != "Total", -largest(area)))
    header = " | ".join([f"{'NMT committed MiB':>22}"] + [f"{r['case']:>16}" for r in done])
    lines = [header, "-" * len(header)]
    for area in areas:
        values = [fmt(r["native_memory_committed_mib"].get(area), ",.0f") for r in done]
        lines.append(" | ".join([f"{area:>22}"] + [f"{value:>16}" for value in values]))
    return lines + [""]


def run_parent(args: argparse.Namespace) -> list[dict]:
    """Fit the four cases, print the table and the verdicts (or the JSON); returns the results (run_main: exit code 1
    if a case failed)."""
    results = [run_case(args, case) for case in cases(args)]
    derive(results)
    found = verdicts(results, args)
    document = {"settings": {key: value for key, value in vars(args).items()
                             if key not in ("child", "case_rows", "case_partitions", "conf")},
                "thresholds": {"python_peak_ratio_flat": PY_FLAT, "heap_after_gc_ratio_flat": HEAP_FLAT},
                "cases": results, "verdicts": found, "notes": notes(results, args),
                "machine": machine()}
    if args.json == "-":
        print(json.dumps(document, indent=2))
    else:
        print()
        for line in (table_lines(COLUMNS, results, failed_row) + [""] + [f"* {note}" for note in notes(results, args)]
                     + [""] + nmt_lines(results)):
            print(line)
        for line in verdict_lines(found):
            print(line)
        if args.json:
            write_json(args.json, document, log)
    return results


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, argv, parse_args, run_child, run_parent)


if __name__ == "__main__":
    sys.exit(main())
