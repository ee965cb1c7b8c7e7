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
from functools import partial

from pyspark import RDD
from pyspark.serializers import NoOpSerializer
from pyspark.sql import DataFrame

from .tasks import PACKED_SCHEMA, pack_arrow_messages, pack_partition, stored_of_row

logger = logging.getLogger(__name__)

# Rows per Arrow batch from the JVM: spark.sql.execution.arrow.maxRecordsPerBatch unless that is unset or <= 0.
_DEFAULT_BATCH_ROWS = 10_000


def packed_blocks(selected: DataFrame, has_weight: bool, block_bytes: int, dtype: str) -> RDD:
    """An RDD of ``tasks.Stored`` blocks, one partition per partition of ``selected``
    (``features.selected_features``): ``tasks.pack_blocks`` of each partition's rows, through Arrow batches where
    Spark offers them."""
    try:
        return through_arrow_batches(selected, has_weight, block_bytes, dtype)
    except Exception as error:  # a Spark without it (or another Dataset class): the general route
        logger.debug("Arrow batches straight to Python unavailable (%s); packing through mapInArrow", error)
        return through_map_in_arrow(selected, has_weight, block_bytes, dtype)


def through_arrow_batches(selected: DataFrame, has_weight: bool, block_bytes: int, dtype: str) -> RDD:
    """``packed_blocks`` from the JVM's Arrow batches of ``selected``, packed in the task that reads them."""
    from pyspark.sql.pandas.types import to_arrow_schema

    spark = selected.sparkSession
    batch_rows = int(spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") or _DEFAULT_BATCH_ROWS)
    # The explicit arguments fix what the Python side reads: 32-bit list offsets (largeVarTypes off).
    messages = selected._jdf.toArrowBatchRdd(batch_rows if batch_rows > 0 else _DEFAULT_BATCH_ROWS,
                                             spark.conf.get("spark.sql.session.timeZone"), False, False)
    schema = to_arrow_schema(selected.schema, prefers_large_types=False)
    batches: RDD[bytes] = RDD(messages.toJavaRDD(), spark.sparkContext, NoOpSerializer())
    return batches.mapPartitions(partial(pack_arrow_messages, schema, has_weight, block_bytes, dtype),
                                 preservesPartitioning=True)


def through_map_in_arrow(selected: DataFrame, has_weight: bool, block_bytes: int, dtype: str) -> RDD:
    """``packed_blocks`` packed by ``mapInArrow`` and brought to the RDD as rows (slow: see the module's note)."""
    packed = selected.mapInArrow(
        partial(pack_partition, has_weight=has_weight, block_bytes=block_bytes, dtype=dtype), PACKED_SCHEMA
    )
    return packed.rdd.map(partial(stored_of_row, has_weight, dtype))
