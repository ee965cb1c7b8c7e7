"""The RDD engine's conversion: the selected features as Arrow record batches straight into a Python RDD, packed into
blocks there.

The obvious route, ``df.mapInArrow(pack).rdd``, packs the blocks in one Python worker, hands them back to the JVM as
Arrow, and then has the JVM pickle each 2 MiB block for a second Python worker: the JVM's pickler writes a byte array
as a latin-1 string, byte by byte. At 10M x 16 float64 that round trip made the conversion ~3x Spark's read floor
(scripts/conversion_benchmark.py). Here the JVM turns the selected columns into Arrow record batches
(``Dataset.toArrowBatchRdd``, the serialization ``mapInArrow`` uses), a Python RDD reads those batches as they are
(framed bytes, no pickling) and packs them in the same task that stores them: the data crosses from the JVM to
Python once, as in a plain ``mapInArrow`` read.

``toArrowBatchRdd`` is internal to Spark's Dataset (public in its bytecode, reached through Py4J); where it is
missing or refuses, the conversion takes the ``mapInArrow(...).rdd`` route, which gives the same blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial

import pyarrow as pa
from pyspark.rdd import RDD
from pyspark.serializers import NoOpSerializer
from pyspark.sql import DataFrame

from .packing import PACKED_SCHEMA, block_of, pack_blocks, pack_partition
from .storage import Stored

logger = logging.getLogger(__name__)

# Rows per Arrow batch from the JVM: spark.sql.execution.arrow.maxRecordsPerBatch unless that is unset or <= 0.
_DEFAULT_BATCH_ROWS = 10_000


def _batches(schema: pa.Schema, messages: Iterator[bytes]) -> Iterator[pa.RecordBatch]:
    """Arrow IPC record batch messages (no schema of their own) as record batches, without copying the data."""
    for message in messages:
        yield pa.ipc.read_record_batch(pa.py_buffer(message), schema)


def _pack_messages(schema: pa.Schema, has_weight: bool, block_bytes: int, dtype: str,
                   messages: Iterator[bytes]) -> Iterator[Stored]:
    for block, invalid, ragged in pack_blocks(_batches(schema, messages), has_weight, block_bytes, dtype):
        yield Stored(block, invalid, ragged)


def _row_to_stored(has_weight: bool, dtype: str, row) -> Stored:
    block = block_of(row.rows, row.cols, row.x, row.w, row.h, row.origin, has_weight, dtype)
    return Stored(block, row.invalid, row.ragged)


def packed_blocks(selected: DataFrame, has_weight: bool, block_bytes: int, dtype: str) -> RDD:
    """An RDD of ``Stored`` blocks, one partition per partition of ``selected`` (``packing.selected_features``):
    ``packing.pack_blocks`` of each partition's rows, through Arrow batches where Spark offers them."""
    try:
        return through_arrow_batches(selected, has_weight, block_bytes, dtype)
    except Exception as error:  # a Spark without it (or another Dataset class): the general route
        logger.debug("Arrow batches straight to Python unavailable (%s); packing through mapInArrow", error)
        return through_map_in_arrow(selected, has_weight, block_bytes, dtype)


def through_arrow_batches(selected: DataFrame, has_weight: bool, block_bytes: int, dtype: str) -> RDD:
    """``packed_blocks`` from the JVM's Arrow batches of ``selected``, packed in the task that reads them."""
    from pyspark.sql.pandas.types import to_arrow_schema

    spark = selected.sparkSession
    batch_rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch", str(_DEFAULT_BATCH_ROWS)))
    # The explicit arguments fix what the Python side reads: 32-bit list offsets (largeVarTypes off).
    messages = selected._jdf.toArrowBatchRdd(batch_rows if batch_rows > 0 else _DEFAULT_BATCH_ROWS,
                                             spark.conf.get("spark.sql.session.timeZone"), False, False)
    schema = to_arrow_schema(selected.schema, prefers_large_types=False)
    batches = RDD(messages.toJavaRDD(), spark.sparkContext, NoOpSerializer())
    return batches.mapPartitions(partial(_pack_messages, schema, has_weight, block_bytes, dtype),
                                 preservesPartitioning=True)


def through_map_in_arrow(selected: DataFrame, has_weight: bool, block_bytes: int, dtype: str) -> RDD:
    """``packed_blocks`` packed by ``mapInArrow`` and brought to the RDD as rows (slow: see the module's note)."""
    packed = selected.mapInArrow(
        partial(pack_partition, has_weight=has_weight, block_bytes=block_bytes, dtype=dtype), PACKED_SCHEMA
    )
    return packed.rdd.map(partial(_row_to_stored, has_weight, dtype))
