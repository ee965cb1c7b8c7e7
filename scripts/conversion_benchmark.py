"""Conversion benchmark: sparkgmm's first look at the data against Spark's own read floor, in one session.

    .venv/bin/python scripts/conversion_benchmark.py [--rows 10M] [--features 16] [--files 20]
        [--data-dir /tmp/sparkgmm-io] [--runs 3] [--engines rdd,dataframe] [--dtypes float64,float32]
        [--storages local-files,spark-cache] [--driver-memory 6g] [--json PATH]

What it does
- Data: N x d float64 columns f0.. in --files Parquet files under --data-dir (``parquet_data.py``; written once,
  reused when complete).
- One local[2] session (``sparkgmm.spark.session.local_session``, as the library's own local runs), and in it:
  - the floor: ``spark.read.parquet(dir).select(f0..).mapInArrow(task)`` where the task reads every batch and yields
    one row with its row count (the columns reach Python, nothing is done with them), collected;
  - ours: ``RddBlocks`` (engine rdd) or ``DataFrameBlocks`` (engine dataframe) constructed from the same DataFrame
    with ``inputCols`` = f0.. exactly as a fit constructs them (``features_column``, the fit's default storage
    level), for every engine x dtype x block storage asked for; the time is the constructor's (what a fit reports as
    ``conversion_seconds``); the blocks are then released (not timed), and their row count is checked.
- One warm-up round of everything first (JIT, page cache, Python workers), then --runs rounds, each running the
  floor and every configuration in turn, so that the machine's drift spreads over all of them; medians.
- The table: median seconds, the ratio to the floor's median, and MET when the ratio is <= 1.5 (MISS otherwise;
  a configuration with a failed run is a MISS, FAILED in the table).
Timings on the shared 2-core machines move by ~20% between runs: compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback

from benchtools import ArgumentParser, UsageError, check_json_path, logger, machine, parse_count, size_label
from parquet_data import ensure_dataset

TARGET_RATIO = 1.5
ENGINES = ("rdd", "dataframe")
DTYPES = ("float64", "float32")
STORAGES = ("local-files", "spark-cache")
log = logger("conversion_benchmark")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(prog="conversion_benchmark.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="10M")
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--data-dir", default="/tmp/sparkgmm-io")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--storages", default=",".join(STORAGES))
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    args.rows = parse_count(args.rows, "--rows")
    for name, allowed in (("engines", ENGINES), ("dtypes", DTYPES), ("storages", STORAGES)):
        values = [v for v in getattr(args, name).split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise UsageError(f"--{name}: {getattr(args, name)!r}; choose from {', '.join(allowed)}")
        setattr(args, name, values)
    if args.features < 1 or args.files < 1 or args.runs < 1:
        raise UsageError("--features, --files and --runs must be >= 1")
    if args.json:
        check_json_path(args.json)
    return args


def _count_rows(batches):
    import pyarrow as pa

    rows = 0
    for batch in batches:
        rows += batch.num_rows
    yield pa.RecordBatch.from_pydict({"rows": pa.array([rows], pa.int64())})


def floor_run(df, columns: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = sum(r[0] for r in df.select(*columns).mapInArrow(_count_rows, "rows long").collect())
    return time.perf_counter() - started, rows


def conversion_run(df, columns: list[str], engine: str, dtype: str, storage: str) -> tuple[float, int]:
    from pyspark import StorageLevel

    from sparkgmm.spark.engine.rdd import RddBlocks
    from sparkgmm.spark.features import features_column
    from sparkgmm.spark.engine.dataframe import DataFrameBlocks

    features = features_column(df, "features", columns)
    engine_class = RddBlocks if engine == "rdd" else DataFrameBlocks
    started = time.perf_counter()
    blocks = engine_class(df, features, None, StorageLevel.MEMORY_AND_DISK_DESER, dtype=dtype, block_storage=storage)
    seconds = time.perf_counter() - started
    rows = blocks.n_rows
    blocks.unpersist()
    return seconds, rows


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"conversion_benchmark.py: error: {error}", file=sys.stderr)
        return 2
    path = ensure_dataset(args.data_dir, args.rows, args.features, args.files)
    log(f"data: {path}")

    from sparkgmm.spark.session import local_session

    spark = local_session("local[2]", "conversion-benchmark", **{"spark.driver.memory": args.driver_memory,
                                                                  "spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.parquet(str(path))
    columns = [f"f{j}" for j in range(args.features)]
    configs = [("floor", None, None, None)] + [
        (f"{engine} {dtype} {storage}", engine, dtype, storage)
        for storage in args.storages for engine in args.engines for dtype in args.dtypes
        if storage == "local-files" or dtype == "float64" or len(args.dtypes) == 1
    ]
    times: dict[str, list[float]] = {name: [] for name, *_ in configs}
    failures: dict[str, str] = {}
    for round_ in range(args.runs + 1):
        for name, engine, dtype, storage in configs:
            if name in failures:
                continue
            try:
                if engine is None:
                    seconds, rows = floor_run(df, columns)
                else:
                    seconds, rows = conversion_run(df, columns, engine, dtype, storage)
                if rows != args.rows:
                    raise RuntimeError(f"{rows} rows, expected {args.rows}")
            except Exception as error:  # a failed run of ours is a MISS, reported as FAILED
                failures[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                log(f"{name}: FAILED: {failures[name]}")
                traceback.print_exc()
                continue
            label = "warm-up" if round_ == 0 else f"run {round_}"
            log(f"{label}: {name}: {seconds:.2f} s")
            if round_:
                times[name].append(seconds)
    spark.stop()

    floor = statistics.median(times["floor"]) if times["floor"] else None
    results = []
    for name, engine, _dtype, _storage in configs:
        median = statistics.median(times[name]) if times[name] and name not in failures else None
        ratio = None if median is None or floor is None else median / floor
        verdict = ("-" if engine is None else "FAILED (MISS)" if median is None
                   else "MET" if ratio is not None and ratio <= TARGET_RATIO else "MISS")  # no floor: no MET
        results.append({"what": name, "seconds": times[name], "median": median, "ratio": ratio, "verdict": verdict,
                        "error": failures.get(name)})
    title = (f"conversion of {size_label(args.rows)} x {args.features} float64 Parquet ({args.files} files), local[2], "
             f"medians of {args.runs} runs after a warm-up; target: <= {TARGET_RATIO}x the floor")
    print(title)
    print(f"{'what':>32} | {'median s':>8} | {'runs s':>24} | {'x floor':>7} | verdict")
    print("-" * 90)
    for r in results:
        runs = " ".join(f"{s:.1f}" for s in r["seconds"])
        median_text = "-" if r["median"] is None else f"{r['median']:.2f}"
        ratio_text = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        what = "floor: mapInArrow no-op read" if r["what"] == "floor" else r["what"]
        print(f"{what:>32} | {median_text:>8} | {runs:>24} | {ratio_text:>7} | {r['verdict']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine(), "rows": args.rows, "features": args.features, "files": args.files,
                       "runs": args.runs, "results": results}, out, indent=2)
    return 1 if failures or floor is None else 0


if __name__ == "__main__":
    sys.exit(main())
