"""The RDD engine: from a DataFrame to persisted NumPy blocks, and passes over them as RDD jobs.

The features are converted once: the JVM hands each partition to Python as Arrow record batches
(``engine.arrow_rdd``), a task packs them into columnar float64 or float32 blocks (features x rows) of about
BLOCK_BYTES, and the blocks are stored: in files on the executors' local disks, or in Spark's cache. Every pass then
broadcasts what it is asked (``sparkgmm.passes``: E-steps, k-means|| rounds, samples), maps each partition of blocks
to one answer per request and tree-reduces them: no per-row Python objects, no accumulators. It needs a SparkContext
(a classic session); ``engine.dataframe.DataFrameBlocks`` does the same with DataFrames only (Spark Connect). What
both share (settings, the pass retry, the release) is ``engine.base.StoredBlocks``.
"""

from __future__ import annotations

import operator
from functools import partial

from collections.abc import Sequence

from pyspark import RDD
from pyspark.sql import Column, DataFrame

from ..failures import raise_input_error
from ..features import selected_features
from ..progress import track
from ..session import default_parallelism

from .arrow_rdd import packed_blocks
from .base import BLOCK_BYTES, MAX_PARTITIONS_PER_CORE, MAX_TASK_SKEW, StoredBlocks, describe_depth, named_jobs
from .tasks import (
    Description, answer_broadcast, describe_and_answer, describe_partition, merge_answers, merge_described_answers,
    number_blocks, remove_local_files, write_local_file,
)


class RddBlocks(StoredBlocks):
    """``StoredBlocks`` as a persisted RDD (``stored``): of the blocks themselves with ``spark-cache``, of where each
    partition's file is with ``local-files``.

    Every pass runs one task per core registered when it starts (``loop_rdd``), over partitions whose rows are
    balanced: an input whose partitions leave one task more than MAX_TASK_SKEW times its share is dealt out again,
    block by block. Results come back through a tree-reduce.
    """

    engine = "rdd"

    @property
    def _sc(self):
        return self.spark.sparkContext

    def _convert(self, selected: DataFrame) -> Description:
        # Each input partition costs the conversion two Python evaluations (~0.1 s) and every pass one more file to
        # open and blocks no larger than the partition: from 2,000 partitions a fit of 1M rows took 208 s against
        # 11 s from 10 (scripts/driver_memory_benchmark.py; 32 s once merged). More partitions than
        # MAX_PARTITIONS_PER_CORE per core are merged (no shuffle) before they are packed.
        limit = MAX_PARTITIONS_PER_CORE * self._parallelism()
        if selected.rdd.getNumPartitions() > limit:
            selected = selected.coalesce(limit)
        self._blocks: RDD = packed_blocks(selected, self.has_weight, self.target_block_bytes, self.dtype)
        # Fewer partitions than cores (one small Parquet file, say) would leave cores idle in every pass.
        dealt = self._blocks.getNumPartitions() < self._parallelism()
        if dealt:
            self._blocks = self._dealt(self._blocks)
        described = self._store("sparkgmm: convert features to blocks")
        parallelism = self._parallelism()
        skewed = described.largest_task > MAX_TASK_SKEW * described.rows / parallelism
        if skewed and not dealt and described.blocks >= 2 * parallelism:
            self.unpersist()
            self._blocks = self._dealt(self._blocks)
            self.rebalanced = True
            described = self._store("sparkgmm: convert features to blocks, balanced by rows")
        return described

    def _dealt(self, blocks: RDD) -> RDD:
        """The blocks dealt out round-robin over one partition per core: every partition gets as many full blocks."""
        return blocks.mapPartitionsWithIndex(number_blocks).partitionBy(self._parallelism()).values()

    def _store(self, description: str) -> Description:
        """Persist the blocks where ``block_storage`` says, in one job that also describes them."""
        store = self._new_store()
        if self.block_storage == "local-files":
            stored = self._blocks.mapPartitionsWithIndex(partial(write_local_file, store))
        else:
            stored = self._blocks
        self.stored = stored.persist(self._storage_level)

        def job() -> Description:
            loop = self.loop_rdd
            with self._named(description):
                return loop.mapPartitions(self._describe_task()).treeReduce(
                    Description.merge, depth=describe_depth(loop.getNumPartitions(), self.aggregation_depth)
                )

        return self._describe(description, job)

    @property
    def loop_rdd(self) -> RDD:
        """The stored partitions read by one task per core registered now: more tasks than cores would cost a wave of
        task launches per pass for nothing."""
        parallelism = self._parallelism()
        return self.stored.coalesce(parallelism) if self.stored.getNumPartitions() > parallelism else self.stored

    @property
    def n_tasks(self) -> int:
        """How many tasks a pass started now runs."""
        return self.loop_rdd.getNumPartitions()

    def task_rows(self) -> list[int]:
        """How many rows each task of a pass started now reads (one number per task: bounded by the cores)."""
        with self._named("sparkgmm: rows per task"):
            return self.loop_rdd.mapPartitions(describe_partition).map(operator.attrgetter("rows")).collect()

    def _pass_job(self, requests: list, job_name: str) -> list:
        """Broadcast the requests, one task per core answers them, tree-reduce the answers."""
        broadcast = self._sc.broadcast(requests)
        try:
            with self._named(job_name):
                return self.loop_rdd.mapPartitions(
                    partial(answer_broadcast, broadcast, self.n_features)
                ).treeReduce(merge_answers, depth=self.aggregation_depth)
        finally:
            broadcast.destroy()

    def _remove_local_files(self) -> None:
        tasks = self._parallelism()
        self._sc.parallelize(range(tasks), tasks).mapPartitions(partial(remove_local_files, self._store_id)).count()


def convert_and_answer(df: DataFrame, features: Column, weight_col: str | None, requests: Sequence, n_features: int,
                       *, dtype: str, aggregation_depth: int, description: str
                       ) -> tuple[Description, list | None]:
    """One pass over rows read, packed and answered in the same tasks, with nothing stored: the description of the
    rows (as the conversion's) and the merged answers to ``requests``, or None when the rows do not all have
    ``n_features`` features (then no request was answered). For work that reads its rows once (an online update of
    a micro-batch), where storing blocks for later passes costs more than the pass: one Spark job, named
    ``description``, instead of the conversion's job, the pass's and the release of the stored blocks. Needs a
    SparkContext."""
    spark = df.sparkSession
    sc = spark.sparkContext
    broadcast = sc.broadcast(list(requests))
    # Named from the start: finding the input's partitions can run a job of its own (the shuffle stages of its plan,
    # under adaptive query execution).
    try:
        with named_jobs(spark, description), track(spark, description):
            selected = selected_features(df, features, weight_col)
            limit = MAX_PARTITIONS_PER_CORE * default_parallelism(spark)
            if selected.rdd.getNumPartitions() > limit:
                selected = selected.coalesce(limit)
            packed = packed_blocks(selected, bool(weight_col), BLOCK_BYTES, dtype)
            return packed.mapPartitions(partial(describe_and_answer, broadcast, n_features)).treeReduce(
                merge_described_answers, depth=aggregation_depth)
    except BaseException as error:
        raise_input_error(error)  # a damaged input file, found by the job that reads its rows
        raise
    finally:
        broadcast.destroy()
