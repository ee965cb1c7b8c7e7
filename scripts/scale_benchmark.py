"""Scale benchmark: sparkgmm on 1M, 10M and 100M rows x 16 features from Parquet, with bounded memory.

    .venv/bin/python scripts/scale_benchmark.py [--sizes 1M,10M,100M] [--data-dir /work/scale-data] [--features 16]
        [--k 8] [--iters 10] [--dtype float64|float32] [--block-storage X] [--no-mllib] [--json PATH]
        [--driver-memory 4g] [--seed 0]

What it does
- Data. For every size, a mixture of k well-separated Gaussians in d dimensions (fixed seed) is written to Parquet
  under --data-dir, streamed chunk by chunk (never held whole): d double columns f0..f{d-1}, uncompressed, one file
  per 10M rows, row groups of min(1M, rows/8) rows (so that even the smallest set gives each of the two cores its
  own input split). A set is written to a hidden temporary directory and renamed into place with a marker
  (`_scale_dataset.json`) once complete, so a killed write is never taken for a finished one; a complete set is
  reused. Free disk space is checked first: the sets still to write, plus the largest set's converted blocks
  (Spark's spilled cache or the library's local block files, both under SPARK_LOCAL_DIRS or /tmp).
- E-step alone. sparkgmm's pure NumPy E-step kernel (`sparkgmm.stats.accumulate`, called as the EM loop's E-step
  calls it: no hard counts, the k worst rows kept for re-seeding) on in-memory columnar blocks of the library's
  block size (float64, or float32 relative to the block mean with --dtype float32), 500k rows in each of two
  processes running at once (one BLAS thread each), under the generating mixture (a fit of these well-separated
  data lands next to it, and the E-step's arithmetic does not depend on the values). Median over 5 timed rounds of
  the slower process: seconds per 1M rows on 2 cores, the floor that Spark adds its overhead to.
- Fits. Each size is fitted in a fresh child process (this script with --child) that starts its own JVM:
  `local[2]`, `spark.driver.memory` from --driver-memory (4g: 100M x 16 doubles, 12.8 GB, cannot stay in memory
  and the cache must spill to disk), no UI. `GaussianMixture(k, inputCols=f0.., maxIter=--iters, tol=0,
  acceleration="none", seed)`, so exactly --iters EM iterations run; --dtype and --block-storage become the
  estimator params `dtype` and `blockStorage`, and are passed only when given. While the fit runs, a thread polls
  every second Spark's storage info (bytes of persisted RDDs in memory and on disk) and the peak memory of the
  Python worker processes. When the fit returns (before anything else runs in the session) the child reads its
  own peak RSS and the JVM's (`VmHWM` of each: `ru_maxrss` would not do, Linux carries it over from the parent
  across the fork and exec that started the child). With MLlib on (sizes up to 10M), the same child then fits
  `pyspark.ml.clustering.GaussianMixture(k, maxIter, tol=0)` on a VectorAssembler'd, cached DataFrame of the same
  Parquet data: one unmeasured 1-iteration fit (warm-up), then seconds per iteration = (wall time of a
  --iters-iteration fit - wall time of a 1-iteration fit) / (--iters - 1), so MLlib's set-up (initialisation
  sample, job planning) cancels out.

Reading the table (one row per size)
- convert s: turning the Parquet rows into sparkgmm's blocks (`summary.conversionSeconds`).
- s/iter: median wall time of one EM iteration (`summary.iterationSeconds`); rows/s = rows / s/iter.
- linear: (s/iter per row) / (the same at the next smaller size): what a row costs more as the data grows;
  target <= 1.2 at every size from 10M rows on (below, a pass's fixed costs make the smaller size dearer per row,
  so a ratio against it could not fail).
- E-step s/iter: the E-step alone, scaled to the rows; overhead = s/iter / E-step s/iter (what Spark adds:
  moving blocks to the Python workers, job launch, reduce); target <= 1.2 from 10M rows (below that a pass's fixed
  ~0.15 s of job launch dominates).
- py MiB: the driver's Python peak RSS (local mode: the driver process that runs the EM loop); target: the same
  at every size (within 10%). JVM MiB: the JVM's peak RSS (driver and executor: local mode). workers MiB: the
  largest peak RSS (VmHWM, which counts memory-mapped file pages too) of any Python worker process, then the
  largest anonymous RSS sampled (memory the worker itself allocated).
- cached mem/disk MiB: the largest bytes Spark held for persisted RDDs in memory and on disk during the fit
  (near 0 when the blocks live in local files instead of Spark's cache: `blockStorage="local-files"`).
  block MiB: `summary.blockBytes`, the bytes of the converted blocks (held as the `blockStorage` param says).
- MLlib s/iter and MLlib/ours: MLlib's seconds per iteration and its ratio to sparkgmm's.
MiB = 2^20 bytes. Timings on the shared 2-core machines move by about 20% between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

# benchtools.py sits next to this script: run as `python scripts/scale_benchmark.py`, scripts/ is on sys.path.
from benchtools import (MIB, ArgumentParser, Poller, UsageError, check_at_least, check_driver_memory, check_json_path,
                        check_k_rows, descendants, find_jvm, fmt, jvm_max_heap, logger, machine, parse_count,
                        own_status_kib, print_result, run_child_process, run_main, size_label, status_kib,
                        table_lines, write_json)

if TYPE_CHECKING:
    import numpy as np

# Heavy modules (numpy, pyarrow, pyspark, sparkgmm) are imported inside functions: the E-step processes must set
# their BLAS thread count before numpy loads, and the parent never needs pyspark.

DEFAULT_SIZES = "1M,10M,100M"
DEFAULT_DATA_DIR = "/work/scale-data"
MARKER = "_scale_dataset.json"  # Spark ignores files starting with "_" when it reads the directory
GENERATOR_VERSION = 1
ROWS_PER_FILE = 10_000_000
MAX_ROW_GROUP_ROWS = 1_000_000
MIN_ROW_GROUPS = 8
MLLIB_MAX_ROWS = 10_000_000
ESTEP_ROWS_PER_PROCESS = 500_000
ESTEP_ROUNDS = 5
POLL_SECONDS = 1.0
RESULT_PREFIX = "SCALE_RESULT "
DISK_MARGIN = 1 << 30
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PROG = "scale_benchmark"


log = logger(PROG)


# --- arguments ------------------------------------------------------------------------------------------------------

def parse_sizes(text: str) -> list[int]:
    sizes = [parse_count(part, "--sizes", kind="row count", examples="200k, 1M, 100M", unit="rows")
             for part in text.split(",") if part.strip()]
    if not sizes:
        raise UsageError("--sizes: give at least one size")
    if len(set(sizes)) != len(sizes):
        raise UsageError(f"--sizes: {text!r} repeats a size")
    return sorted(sizes)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated row counts (200k, 1M, 100M)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where the Parquet sets are written and reused")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iters", type=int, default=10, help="EM iterations per fit (tol=0, so exactly these)")
    parser.add_argument("--dtype", choices=["float64", "float32"], help="estimator param dtype (only if given)")
    parser.add_argument("--block-storage", help="estimator param blockStorage (only if given)")
    parser.add_argument("--no-mllib", action="store_true", help="skip MLlib's fits")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--driver-memory", default="4g", help="spark.driver.memory of each fit's JVM")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of the fits")
    # internal: one fit in this process
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--mllib", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.size_list = parse_sizes(args.sizes)
    check_at_least(args, (("features", 1), ("k", 1), ("iters", 2)))
    check_driver_memory(args.driver_memory, "4g, 4096m")
    if args.block_storage is not None and not args.block_storage.strip():
        raise UsageError("--block-storage: must not be empty")
    if args.json:
        check_json_path(args.json)
    check_k_rows(args.k, min(args.size_list), "the smallest size is smaller")
    if args.child and (args.rows is None or args.path is None):
        raise UsageError("--child needs --rows and --path")
    return args


def extra_params(args: argparse.Namespace) -> dict[str, str]:
    """The estimator params given on the command line (the library's defaults otherwise)."""
    extra = {}
    if args.dtype is not None:
        extra["dtype"] = args.dtype
    if args.block_storage is not None:
        extra["blockStorage"] = args.block_storage
    return extra


# --- data -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Truth:
    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    chol: np.ndarray  # Cholesky factors of the covariances, (k, d, d)

    def covariances(self) -> np.ndarray:
        return self.chol @ self.chol.transpose(0, 2, 1)


def generating_mixture(d: int, k: int, seed: int) -> Truth:
    """k components, means ~ N(0, 3^2) per coordinate (about 17 apart at d=16), covariances I + A A^T with A's
    entries ~ N(0, 0.3^2): separated by many standard deviations, so plain EM behaves."""
    import numpy as np

    rng = np.random.default_rng([seed, 2024])
    a = rng.normal(0.0, 0.3, (k, d, d))
    covariances = a @ a.transpose(0, 2, 1) + np.eye(d)
    return Truth(rng.dirichlet(np.full(k, 5.0)), rng.normal(0.0, 3.0, (k, d)), np.linalg.cholesky(covariances))


def sample_columns(truth: Truth, n: int, seed: int, chunk: int):
    """n rows drawn from ``truth``, columnar (d, n): reproducible per (seed, chunk number)."""
    import numpy as np

    rng = np.random.default_rng([seed, chunk])
    k, d = truth.means.shape
    labels = rng.choice(k, size=n, p=truth.weights)
    z = rng.standard_normal((d, n))
    xt = np.empty((d, n))
    for j in range(k):
        rows = np.flatnonzero(labels == j)
        if rows.size:
            xt[:, rows] = truth.chol[j] @ z[:, rows] + truth.means[j][:, None]
    return xt


@dataclass(frozen=True)
class Layout:
    rows: int
    features: int
    files: int
    row_group_rows: int

    @classmethod
    def of(cls, rows: int, features: int) -> Layout:
        return cls(rows, features, max(1, math.ceil(rows / ROWS_PER_FILE)),
                   max(1, min(MAX_ROW_GROUP_ROWS, math.ceil(rows / MIN_ROW_GROUPS))))

    @property
    def data_bytes(self) -> int:
        return self.rows * self.features * 8

    def file_rows(self) -> list[int]:
        base, extra = divmod(self.rows, self.files)
        return [base + (1 if i < extra else 0) for i in range(self.files)]


def dataset_dir(data_dir: Path, rows: int, d: int, k: int, seed: int) -> Path:
    return data_dir / f"gmm-{rows}x{d}-k{k}-seed{seed}"


def marker_for(layout: Layout, k: int, seed: int) -> dict:
    return {"rows": layout.rows, "features": layout.features, "k": k, "seed": seed, "files": layout.files,
            "row_group_rows": layout.row_group_rows, "generator": GENERATOR_VERSION}


def is_complete(path: Path, expected: dict) -> bool:
    try:
        found = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return all(found.get(key) == value for key, value in expected.items())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(data_dir: Path, name: str) -> None:
    """Partial writes of ``name`` left by killed runs (their writer process is gone) free their disk space."""
    for tmp in data_dir.glob(f".tmp-{name}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def write_dataset(path: Path, layout: Layout, truth: Truth, k: int, seed: int) -> float:
    """Stream ``layout.rows`` rows to Parquet in ``path`` (through a temporary directory); returns seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    names = [f"f{i}" for i in range(layout.features)]
    schema = pa.schema([(name, pa.float64()) for name in names])
    chunk = 0
    for number, file_rows in enumerate(layout.file_rows()):
        with pq.ParquetWriter(tmp / f"part-{number:05d}.parquet", schema, compression="none",
                              use_dictionary=False) as writer:
            for start in range(0, file_rows, layout.row_group_rows):
                n = min(layout.row_group_rows, file_rows - start)
                xt = sample_columns(truth, n, seed, chunk)
                chunk += 1
                writer.write_table(pa.Table.from_arrays([pa.array(column) for column in xt], schema=schema),
                                   row_group_size=n)
    seconds = time.perf_counter() - started
    (tmp / MARKER).write_text(json.dumps({**marker_for(layout, k, seed), "seconds": round(seconds, 1)}) + "\n")
    if path.exists():  # an incomplete or outdated set (no marker, or another generator): replaced
        shutil.rmtree(path)
    os.rename(tmp, path)
    return seconds


def spark_local_dir() -> Path:
    """Where Spark spills cached blocks in local mode: SPARK_LOCAL_DIRS, else spark.local.dir's default /tmp."""
    first = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")[0]
    return Path(first or "/tmp")


def check_disk(data_dir: Path, to_write: list[Layout], largest: Layout, cache_bytes_per_value: int) -> None:
    """Fail with one line unless the sets still to write and the largest set's spilled cache fit on disk."""
    needs: dict[int, list] = {}

    def need(path: Path, amount: int, what: str) -> None:
        device = os.stat(path).st_dev
        entry = needs.setdefault(device, [path, 0, []])
        entry[1] += amount
        entry[2].append(f"{what} {amount / 1e9:.1f} GB")

    need(data_dir, sum(layout.data_bytes for layout in to_write), "data")
    need(spark_local_dir(), largest.rows * largest.features * cache_bytes_per_value, "Spark spill")
    for path, amount, parts in needs.values():
        free = shutil.disk_usage(path).free
        if amount + DISK_MARGIN > free:
            raise SystemExit(f"{PROG}: error: not enough free disk under {path}: need "
                             f"{(amount + DISK_MARGIN) / 1e9:.1f} GB ({' + '.join(parts)} + 1 GB margin), "
                             f"{free / 1e9:.1f} GB free")


class Dataset(TypedDict):
    """A Parquet set on disk: where, the seconds its write took (None when reused) and its ``Layout``'s fields."""
    path: str
    write_seconds: float | None
    layout: dict[str, int]


def prepare_datasets(args: argparse.Namespace) -> dict[int, Dataset]:
    """Every requested set on disk, written where missing; returns per size its path and write seconds."""
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    plans = {}
    for rows in args.size_list:
        layout = Layout.of(rows, args.features)
        path = dataset_dir(data_dir, rows, args.features, args.k, args.seed)
        remove_stale_temporaries(data_dir, path.name)
        plans[rows] = (layout, path, is_complete(path, marker_for(layout, args.k, args.seed)))
    to_write = [layout for layout, _, complete in plans.values() if not complete]
    check_disk(data_dir, to_write, Layout.of(max(args.size_list), args.features), 4 if args.dtype == "float32" else 8)
    truth = generating_mixture(args.features, args.k, args.seed)
    datasets: dict[int, Dataset] = {}
    for rows, (layout, path, complete) in plans.items():
        if complete:
            log(f"reusing {path} ({size_label(rows)} rows)")
            datasets[rows] = {"path": str(path), "write_seconds": None, "layout": layout.__dict__}
            continue
        log(f"writing {size_label(rows)} rows x {args.features} to {path} ({layout.files} file(s), row groups of "
            f"{layout.row_group_rows} rows) ...")
        seconds = write_dataset(path, layout, truth, args.k, args.seed)
        log(f"  written in {seconds:.1f} s")
        datasets[rows] = {"path": str(path), "write_seconds": seconds, "layout": layout.__dict__}
    return datasets


# --- the E-step alone -----------------------------------------------------------------------------------------------

def _estep_worker(index: int, d: int, k: int, seed: int, dtype: str, rounds: int, barrier, results) -> None:
    """One process of the E-step measurement: its own rows, packed as the library packs them (``pack_block``, blocks
    of BLOCK_BYTES), answering the EM loop's E-step request (``EStep``: no hard counts, the k worst rows kept)."""
    os.environ.update(ONE_THREAD)  # before numpy loads in this fresh process
    import numpy as np

    from sparkgmm import Mixture
    from sparkgmm.passes import EStep, pack_block
    from sparkgmm.spark.engine.base import BLOCK_BYTES

    truth = generating_mixture(d, k, seed)
    request = EStep(Mixture(truth.weights, truth.means, truth.covariances()), worst=k)
    rows = sample_columns(truth, ESTEP_ROWS_PER_PROCESS, seed + 1, index).T
    per_block = max(1, BLOCK_BYTES // (np.dtype(dtype).itemsize * d))
    blocks = [pack_block(rows[start:start + per_block], None, dtype) for start in range(0, rows.shape[0], per_block)]
    del rows
    seconds = []
    for _ in range(rounds + 1):  # the first round warms up
        barrier.wait()
        started = time.perf_counter()
        for block in blocks:
            request.on_block(block)
        seconds.append(time.perf_counter() - started)
    results.put((index, seconds[1:], per_block))


def measure_estep(d: int, k: int, seed: int, dtype: str) -> dict:
    """Seconds of the E-step alone per 1M rows on 2 cores: two processes of 500k rows each, run at once."""
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    saved = {name: os.environ.get(name) for name in ONE_THREAD}
    os.environ.update(ONE_THREAD)  # inherited by the spawned processes before they import numpy
    try:
        workers = [context.Process(target=_estep_worker, args=(i, d, k, seed, dtype, ESTEP_ROUNDS, barrier, results))
                   for i in range(2)]
        for worker in workers:
            worker.start()
        per_worker: dict[int, list[float]] = {}  # process index -> seconds of its timed rounds
        while len(per_worker) < len(workers):
            try:
                index, times, block_rows = results.get(timeout=2)
                per_worker[index] = times
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):
                    for w in workers:
                        w.kill()
                    raise SystemExit(
                        f"{PROG}: error: the E-step measurement failed (see the traceback above)") from None
        for worker in workers:
            worker.join()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    rounds = [max(times) for times in zip(*per_worker.values(), strict=True)]
    return {"seconds_per_million": statistics.median(rounds), "min_seconds_per_million": min(rounds),
            "rounds": rounds, "dtype": dtype,
            "block_rows": block_rows,
            "rows_per_process": ESTEP_ROWS_PER_PROCESS}


# --- memory during a fit -------------------------------------------------------------------------------------------

class Sampler(Poller):
    """Every POLL_SECONDS: bytes of persisted RDDs in memory and on disk (Spark's storage info), and the peak RSS
    (VmHWM) and anonymous (not file-backed) RSS of the Python workers (descendants of the JVM). Keeps the maxima."""

    def __init__(self, sc, jvm_pid: int | None):
        super().__init__(POLL_SECONDS)
        self._sc, self._jvm = sc, jvm_pid
        self.mem_bytes = self.disk_bytes = self.worker_kib = self.worker_anon_kib = 0
        self.workers_seen: set[int] = set()
        self.errors: list[str] = []

    def sample(self) -> None:
        try:
            infos = list(self._sc._jsc.sc().getRDDStorageInfo())
            self.mem_bytes = max(self.mem_bytes, sum(int(info.memSize()) for info in infos))
            self.disk_bytes = max(self.disk_bytes, sum(int(info.diskSize()) for info in infos))
        except Exception as error:  # the session may be stopping; keep what was seen
            if len(self.errors) < 3:
                self.errors.append(repr(error))
        if self._jvm is not None:
            for pid, _name in descendants(self._jvm):
                peak, anon = status_kib(pid, "VmHWM"), status_kib(pid, "RssAnon")
                if peak is not None:
                    self.workers_seen.add(pid)
                    self.worker_kib = max(self.worker_kib, peak)
                if anon is not None:
                    self.worker_anon_kib = max(self.worker_anon_kib, anon)


# --- one fit, in a child process ------------------------------------------------------------------------------------

def start_session(driver_memory: str):
    from sparkgmm.spark.session import local_session

    spark = local_session("local[2]", "sparkgmm-scale-benchmark",
                          **{"spark.driver.memory": driver_memory, "spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def fit_sparkgmm(spark, args: argparse.Namespace) -> dict:
    """Fit sparkgmm on the Parquet set while sampling memory; returns the child's measurements of that fit."""
    from sparkgmm import GaussianMixture

    jvm = find_jvm(os.getpid())
    sampler = Sampler(spark.sparkContext, jvm)
    sampler.start()
    df = spark.read.parquet(args.path)
    columns = [f"f{i}" for i in range(args.features)]
    estimator = GaussianMixture(k=args.k, inputCols=columns, maxIter=args.iters, tol=0.0, acceleration="none",
                                seed=args.seed, **extra_params(args))
    started = time.perf_counter()
    model = estimator.fit(df)
    wall = time.perf_counter() - started
    python_peak_kib = own_status_kib("VmHWM")
    jvm_peak_kib = status_kib(jvm, "VmHWM") if jvm else None
    sampler.finish()
    summary = model.summary
    iteration_seconds = list(summary.iterationSeconds)
    return {
        "rows": args.rows, "input_partitions": df.rdd.getNumPartitions(),
        "num_iter": summary.numIter, "num_rows": summary.numRows, "num_passes": summary.numPasses,
        "log_likelihood": summary.logLikelihood, "iteration_seconds": iteration_seconds,
        "s_per_iter": statistics.median(iteration_seconds), "conversion_seconds": summary.conversionSeconds,
        "fit_seconds": wall, "summary_seconds": summary.seconds,
        "block_bytes": summary.blockBytes,
        "driver_python_peak_mib": python_peak_kib / 1024,
        "jvm_peak_mib": None if jvm_peak_kib is None else jvm_peak_kib / 1024,
        "jvm_pid_found": jvm is not None, "jvm_xmx": jvm_max_heap(jvm) if jvm else None,
        "workers_peak_mib": sampler.worker_kib / 1024, "workers_anon_mib": sampler.worker_anon_kib / 1024,
        "workers_seen": len(sampler.workers_seen),
        "cached_mem_bytes": sampler.mem_bytes, "cached_disk_bytes": sampler.disk_bytes,
        "storage_poll_errors": sampler.errors, "extra_params": extra_params(args),
    }


def fit_mllib(spark, args: argparse.Namespace) -> dict:
    """MLlib's seconds per iteration on a cached, assembled DataFrame of the same data (set-up cancels out)."""
    from pyspark.ml.clustering import GaussianMixture as MLlibGaussianMixture
    from pyspark.ml.feature import VectorAssembler

    columns = [f"f{i}" for i in range(args.features)]
    frame = VectorAssembler(inputCols=columns, outputCol="features").transform(spark.read.parquet(args.path))
    frame = frame.select("features").cache()
    started = time.perf_counter()
    frame.count()
    cache_seconds = time.perf_counter() - started

    def timed_fit(max_iter: int) -> tuple[float, int]:
        started = time.perf_counter()
        model = MLlibGaussianMixture(k=args.k, maxIter=max_iter, tol=0.0, seed=args.seed).fit(frame)
        return time.perf_counter() - started, model.summary.numIter

    timed_fit(1)  # warm-up: JIT, first jobs
    one, _ = timed_fit(1)
    many, iterations = timed_fit(args.iters)
    frame.unpersist()
    return {"mllib_s_per_iter": (many - one) / (args.iters - 1), "mllib_fit_1_seconds": one,
            "mllib_fit_n_seconds": many, "mllib_num_iter": iterations, "mllib_cache_seconds": cache_seconds}


def run_child(args: argparse.Namespace) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("sparkgmm").setLevel(logging.INFO)
    spark = start_session(args.driver_memory)
    try:
        result = fit_sparkgmm(spark, args)
        if args.mllib:
            result.update(fit_mllib(spark, args))
            jvm = find_jvm(os.getpid())
            result["jvm_peak_with_mllib_mib"] = (status_kib(jvm, "VmHWM") or 0) / 1024 if jvm else None
    finally:
        spark.stop()
    print_result(RESULT_PREFIX, result)


# --- the parent: sizes, table, targets ------------------------------------------------------------------------------

def child_command(args: argparse.Namespace, rows: int, path: str) -> list[str]:
    command = [sys.executable, os.path.abspath(__file__), "--child", "--rows", str(rows), "--path", path,
               "--features", str(args.features), "--k", str(args.k), "--iters", str(args.iters),
               "--driver-memory", args.driver_memory, "--seed", str(args.seed), "--sizes", str(rows)]
    if args.dtype is not None:
        command += ["--dtype", args.dtype]
    if args.block_storage is not None:
        command += ["--block-storage", args.block_storage]
    if not args.no_mllib and rows <= MLLIB_MAX_ROWS:
        command.append("--mllib")
    return command


def run_size(args: argparse.Namespace, rows: int, path: str) -> dict:
    log(f"fitting {size_label(rows)} rows in a fresh process (local[2], driver memory {args.driver_memory}) ...")
    result, returncode, seconds = run_child_process(child_command(args, rows, path), RESULT_PREFIX)
    if result is None:
        log(f"  {size_label(rows)}: the fit process failed (exit code {returncode})")
        return {"rows": rows, "failed": True, "returncode": returncode, "process_seconds": seconds}
    result.update(failed=False, process_seconds=seconds)
    if result["num_iter"] != args.iters:
        log(f"  warning: {result['num_iter']} EM iterations ran, not {args.iters}")
    log(f"  {size_label(rows)}: {result['s_per_iter']:.3f} s per iteration, process {seconds:.0f} s")
    return result


def derive(results: list[dict], estep: dict) -> None:
    """Add the columns computed across sizes: rows/s, linearity, E-step alone, overhead, MLlib ratio."""
    done = [r for r in results if not r["failed"]]
    for smaller, r in zip([None, *done], done, strict=False):
        r["rows_per_second"] = r["rows"] / r["s_per_iter"]
        r["linearity"] = (None if smaller is None else
                          (r["s_per_iter"] / r["rows"]) / (smaller["s_per_iter"] / smaller["rows"]))
        r["estep_s_per_iter"] = estep["seconds_per_million"] * r["rows"] / 1e6
        r["spark_overhead"] = r["s_per_iter"] / r["estep_s_per_iter"]
        if r.get("mllib_s_per_iter") is not None:
            r["mllib_ratio"] = r["mllib_s_per_iter"] / r["s_per_iter"]


COLUMNS = [  # header, width, value of a result row
    ("rows", 6, lambda r: size_label(r["rows"])),
    ("convert s", 9, lambda r: fmt(r["conversion_seconds"], ".1f")),
    ("s/iter", 7, lambda r: fmt(r["s_per_iter"], ".3f")),
    ("rows/s", 10, lambda r: fmt(r["rows_per_second"], ",.0f")),
    ("linear", 6, lambda r: fmt(r["linearity"], ".2f")),
    ("E-step s/it", 11, lambda r: fmt(r["estep_s_per_iter"], ".3f")),
    ("overhead", 8, lambda r: fmt(r["spark_overhead"], ".2f")),
    ("py MiB", 6, lambda r: fmt(r["driver_python_peak_mib"], ".0f")),
    ("JVM MiB", 7, lambda r: fmt(r["jvm_peak_mib"], ".0f")),
    ("workers MiB peak/anon", 20, lambda r: f"{r['workers_peak_mib']:.0f} / {r['workers_anon_mib']:.0f}"),
    ("cached mem/disk MiB", 19, lambda r: f"{r['cached_mem_bytes'] / MIB:.0f} / {r['cached_disk_bytes'] / MIB:.0f}"),
    ("block MiB", 9, lambda r: fmt(None if r["block_bytes"] is None else r["block_bytes"] / MIB, ".0f")),
    ("MLlib s/it", 10, lambda r: fmt(r.get("mllib_s_per_iter"), ".3f")),
    ("MLlib/ours", 10, lambda r: fmt(r.get("mllib_ratio"), ".2f", "-")),
]


def failed_row(r: dict) -> str:
    return f"{size_label(r['rows']):>6} | failed: the fit process exited with code {r['returncode']}"


def footnotes(results: list[dict], estep: dict, args: argparse.Namespace) -> list[str]:
    notes = [f"k={args.k}, d={args.features}, {args.iters} EM iterations (plain EM, tol=0), local[2], driver memory "
             f"{args.driver_memory}" + (f", params {extra_params(args)}" if extra_params(args) else "")]
    notes.append(f"E-step alone: {estep['seconds_per_million']:.3f} s per 1M rows on 2 processes x "
                 f"{estep['rows_per_process']:,} rows, {estep['dtype']} blocks of {estep['block_rows']} rows "
                 f"(median of {len(estep['rounds'])} rounds)")
    if not args.no_mllib:
        notes.append(f"MLlib: sizes up to {size_label(MLLIB_MAX_ROWS)}, (fit of {args.iters} iterations - fit of 1) / "
                     f"{args.iters - 1}, after a 1-iteration warm-up fit")
    return notes


OVERHEAD_TARGET_ROWS = 10_000_000


def target_lines(results: list[dict], args: argparse.Namespace) -> list[dict]:
    done = [r for r in results if not r["failed"]]
    largest = max(args.size_list)
    targets = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        status = "n/a" if ok is None else ("PASS" if ok else "MISS")
        targets.append({"target": name, "status": status, "detail": detail})

    failed = [size_label(r["rows"]) for r in results if r["failed"]]
    outcome = f"failed: {', '.join(failed)}" if failed else "every size completed"
    add(f"100M x {args.features} completes", (not failed) if largest >= 100_000_000 else None,
        f"largest size {size_label(largest)}; {outcome}")
    grown = [r for r in done if r["linearity"] is not None and r["rows"] >= OVERHEAD_TARGET_ROWS]
    if grown:
        worst = max(grown, key=lambda r: r["linearity"])
        add("s/iter within 1.2x of linear", worst["linearity"] <= 1.2,
            f"worst {worst['linearity']:.2f} at {size_label(worst['rows'])}, per row relative to the next smaller "
            "size")
    else:
        add("s/iter within 1.2x of linear", None,
            f"needs two completed sizes, the larger at least {size_label(OVERHEAD_TARGET_ROWS)}")
    if len(done) >= 2:
        peaks = [r["driver_python_peak_mib"] for r in done]
        add("driver Python peak the same at every size (within 10%)", max(peaks) <= 1.1 * min(peaks),
            f"{min(peaks):.0f} to {max(peaks):.0f} MiB")
    else:
        add("driver Python peak the same at every size (within 10%)", None, "needs two completed sizes")
    # The issue sets the overhead target at 20M rows; below ~10M a pass's fixed ~0.15 s of job launch dominates.
    large = [r for r in done if r["rows"] >= OVERHEAD_TARGET_ROWS]
    if large:
        worst = max(large, key=lambda r: r["spark_overhead"])
        add(f"Spark overhead <= 1.2x the E-step alone, from {size_label(OVERHEAD_TARGET_ROWS)} rows",
            worst["spark_overhead"] <= 1.2, f"worst {worst['spark_overhead']:.2f} at {size_label(worst['rows'])}")
    else:
        add(f"Spark overhead <= 1.2x the E-step alone, from {size_label(OVERHEAD_TARGET_ROWS)} rows", None,
            "no size that large")
    return targets


def run_parent(args: argparse.Namespace) -> list[dict]:
    """Write or reuse the data, time the E-step alone, fit every size; returns the results (run_main: exit code 1 if
    a fit failed)."""
    datasets = prepare_datasets(args)
    log("timing the E-step alone (2 processes, in memory) ...")
    estep = measure_estep(args.features, args.k, args.seed, args.dtype or "float64")
    log(f"  {estep['seconds_per_million']:.3f} s per 1M rows on 2 cores")
    results = []
    for rows in args.size_list:
        result = run_size(args, rows, datasets[rows]["path"])
        result["data"] = datasets[rows]
        results.append(result)
    derive(results, estep)
    targets = target_lines(results, args)
    print()
    for line in (table_lines(COLUMNS, results, failed_row) + [""]
                 + [f"* {note}" for note in footnotes(results, estep, args)] + [""]):
        print(line)
    for target in targets:
        print(f"{target['status']:>4}  {target['target']}: {target['detail']}")
    if args.json:
        write_json(args.json, {"settings": {key: value for key, value in vars(args).items()
                                            if key not in ("child", "rows", "path", "mllib")},
                               "estep": estep, "sizes": results, "targets": targets, "machine": machine()}, log)
    return results


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, argv, parse_args, run_child, run_parent)


if __name__ == "__main__":
    sys.exit(main())
