"""The predict job's Parquet output written by its scoring tasks with pyarrow, where the output is on this machine's
file system and Spark runs here (a local master).

Spark's own writer turns every Arrow batch back into rows and writes the probability lists value by value: at
10M x 16 (k=8) writing the 80M probabilities took longer than reading and writing all the input columns
(scripts/predict_benchmark.py). Here the task that scores a batch writes it, as it is, with Arrow's Parquet writer,
and returns only its counts of rows and scored rows, so the job also needs no second pass to count unscored rows.

The files are what Spark writes for these columns: the same Parquet types (32-bit integers for byte, short, int and
date, the standard three-level lists), the same compression (``spark.sql.parquet.compression.codec``), Spark's schema
in the footer (``org.apache.spark.sql.parquet.row.metadata``), names ``part-NNNNN-<uuid>-c000.<codec>.parquet``.
Floating-point columns get plain pages only: their values rarely repeat, so a dictionary (which Spark's writer
tries first) would be filled and dropped at every column chunk.
Only columns whose Parquet form is the same either way are written here (numbers, booleans, strings, binary, dates,
and the outputs); a timestamp or decimal column, another file system, or a cluster leaves the write to Spark.

Each task writes a hidden file and renames it into place once complete, under a name fixed by its partition, so a
retried or speculative attempt replaces the same file whole; hidden leftovers of failed attempts are removed when the
job has written everything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from ..files import local_path_of
from .scoring import ScoringPlan
from .session import spark_context

SPARK_SCHEMA_KEY = b"org.apache.spark.sql.parquet.row.metadata"
# Spark's spark.sql.parquet.compression.codec values -> (pyarrow's name, the file name's infix)
_CODECS = {"snappy": ("snappy", "snappy"), "gzip": ("gzip", "gz"), "zstd": ("zstd", "zstd"), "lz4": ("lz4", "lz4"),
           "none": ("none", None), "uncompressed": ("none", None)}
_SAME_IN_PARQUET = (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
                    T.StringType, T.BinaryType, T.DateType)
_ROW_GROUP_BYTES = 64 << 20  # Arrow bytes gathered per row group (Spark's row groups are up to 128 MiB encoded)
_COUNTS_SCHEMA = "rows long, scored long"


def _same_in_parquet(data_type: T.DataType) -> bool:
    if isinstance(data_type, T.ArrayType):
        return isinstance(data_type.elementType, T.DoubleType)
    return isinstance(data_type, _SAME_IN_PARQUET)


def local_directory(spark: SparkSession, uri: str, schema: T.StructType) -> Path | None:
    """Where to write ``schema``'s rows for ``uri`` with pyarrow, or None when Spark's writer must do it."""
    sc = spark_context(spark)
    if sc is None or not (sc.master or "").startswith("local"):
        return None
    if not all(_same_in_parquet(field.dataType) for field in schema.fields):
        return None
    if (spark.conf.get("spark.sql.parquet.compression.codec") or "snappy").lower() not in _CODECS:
        return None
    return local_path_of(uri)


def _write_task(task, directory: str, name: str, codec: str, prediction: int, spark_schema: str,
                batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: score the batches (``task``), write them to this partition's part file, yield the counts."""
    from pyspark import TaskContext

    context = TaskContext.get()
    partition, attempt = (context.partitionId(), context.attemptNumber()) if context is not None else (0, 0)
    compression, infix = _CODECS[codec]
    final = os.path.join(directory, f"part-{partition:05d}-{name}-c000{'.' + infix if infix else ''}.parquet")
    hidden = os.path.join(directory, f".part-{partition:05d}-{name}-{attempt}.writing")
    rows = scored = 0
    writer = None
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0
    try:
        for batch in task(batches):
            rows += batch.num_rows
            scored += batch.num_rows - batch.column(prediction).null_count
            pending.append(batch)
            pending_bytes += batch.nbytes
            if pending_bytes >= _ROW_GROUP_BYTES:
                writer = _write(writer, hidden, pending, compression, spark_schema)
                pending, pending_bytes = [], 0
        if pending:
            writer = _write(writer, hidden, pending, compression, spark_schema)
        if writer is not None:
            writer.close()
            os.replace(hidden, final)
    except BaseException:
        if writer is not None:
            writer.close()
        if os.path.exists(hidden):
            os.remove(hidden)
        raise
    yield pa.RecordBatch.from_pydict({"rows": pa.array([rows], pa.int64()), "scored": pa.array([scored], pa.int64())})


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary pages: all but the floating-point ones (and lists of them), whose values rarely
    repeat, so that the writer would fill a dictionary page per column chunk only to fall back to plain pages."""
    def floating(data_type: pa.DataType) -> bool:
        return pa.types.is_floating(data_type) or (pa.types.is_list(data_type) and floating(data_type.value_type))
    return [field.name for field in schema if not floating(field.type)]


def _write(writer, path: str, batches: list[pa.RecordBatch], compression: str, spark_schema: str):
    table = pa.Table.from_batches(batches)
    if writer is None:
        schema = table.schema.with_metadata({SPARK_SCHEMA_KEY: spark_schema.encode()})
        writer = pq.ParquetWriter(path, schema, compression=compression,
                                  use_dictionary=_dictionary_columns(schema))
    writer.write_table(table.replace_schema_metadata(writer.schema.metadata), row_group_size=table.num_rows)
    return writer


def write_scored(spark: SparkSession, plan: ScoringPlan, directory: Path, prediction_col: str) -> tuple[int, int]:
    """Score ``plan``'s rows and write them as Parquet part files into ``directory`` (created); returns the rows and
    the rows that could be scored. An input without rows gives one part file with the schema and no rows, as Spark
    writes."""
    from pyspark.sql.pandas.types import to_arrow_schema

    directory.mkdir(parents=True, exist_ok=True)
    codec = (spark.conf.get("spark.sql.parquet.compression.codec") or "snappy").lower()
    name = str(uuid.uuid4())
    task = partial(_write_task, plan.task, str(directory), name, codec, plan.schema.names.index(prediction_col),
                   plan.schema.json())
    counts = plan.selected.mapInArrow(task, _COUNTS_SCHEMA).collect()
    for leftover in directory.glob(f".part-*-{name}-*.writing"):  # of attempts that failed
        leftover.unlink(missing_ok=True)
    rows, scored = sum(r.rows for r in counts), sum(r.scored for r in counts)
    if not any(directory.glob("part-*")):
        schema = to_arrow_schema(plan.schema).with_metadata({SPARK_SCHEMA_KEY: plan.schema.json().encode()})
        compression, infix = _CODECS[codec]
        empty = directory / f"part-00000-{name}-c000{'.' + infix if infix else ''}.parquet"
        pq.write_table(schema.empty_table(), empty, compression=compression)
    return rows, scored
