"""The RDD engine: from a DataFrame to persisted NumPy blocks, and passes over them as Spark jobs.

The features are converted once: Spark hands each partition to Python as Arrow record batches (``mapInArrow``), a
task packs them into columnar float64 or float32 blocks (features x rows) of about BLOCK_BYTES, and the blocks are
stored: in files on the executors' local disks, or in Spark's cache (``FeatureBlocks``). Every pass then broadcasts
what it is asked (``sparkgmm.passes``: E-steps, k-means|| rounds, samples), maps each partition of blocks to one
answer per request and tree-reduces them: no per-row Python objects, no accumulators. It needs a SparkContext (a
classic session); ``frames.FrameBlocks`` does the same with DataFrames only (Spark Connect).
"""

from __future__ import annotations

import logging
import operator
import time
import uuid
from collections.abc import Iterator, Sequence
from functools import partial

from pyspark import StorageLevel
from pyspark.rdd import RDD
from pyspark.sql import Column, DataFrame

from ..options import DEFAULT_BLOCK_STORAGE
from .arrow_rdd import packed_blocks
from .failures import raise_input_error
from .progress import track
from .packing import (  # noqa: F401 (some are imported from here by other modules)
    BLOCK_BYTES, NUMERIC_TYPES, PACKED_SCHEMA, block_of, features_column, list_array_to_matrix, pack_partition,
    selected_features,
)
from .storage import (
    MAX_PARTITIONS_PER_CORE, MAX_TASK_SKEW, MISSING_LOCAL_FILE, Description, Stored, StoredBlocks, answer_partition,
    describe_depth, describe_partition, merge_answers, remove_local_files, write_local_file,
)

logger = logging.getLogger(__name__)


def _number_blocks(index: int, stored) -> Iterator[tuple[int, Stored]]:
    """Key each block by a running number (offset by the partition index) for a round-robin partitionBy."""
    for number, element in enumerate(stored):
        yield index + number, element


def _answer_partition(broadcast, n_features: int, stored) -> Iterator[list]:
    yield answer_partition(broadcast.value, n_features, stored)


class FeatureBlocks(StoredBlocks):
    """The training data as NumPy blocks stored once, with what the conversion pass learned about them.

    ``block_storage`` says where the blocks live between passes: ``"local-files"`` writes each partition's blocks to
    a file on its executor's local disk, memory-mapped by every later pass (the persisted RDD holds only where the
    files are, and Spark's locality runs each task where its file is); ``"spark-cache"`` persists the blocks
    themselves in Spark's block manager at ``storage_level``. A pass that finds a file missing (it ran on another
    host, or the directory was cleaned) rebuilds the files from the input, through the RDD's lineage, and runs
    again.

    Every pass runs one task per core registered when it starts (``loop_rdd``), over partitions whose rows are
    balanced: an input whose partitions leave one task more than MAX_TASK_SKEW times its share is dealt out again,
    block by block. Results are bounded by what a pass asks (never by the rows or the input's partitions) and come
    back through a tree-reduce. Use as a context manager, or call ``unpersist()``.
    """

    engine = "rdd"

    def __init__(
        self,
        df: DataFrame,
        features: Column,
        weight_col: str | None,
        storage_level: StorageLevel,
        aggregation_depth: int = 2,
        block_bytes: int | None = None,
        dtype: str = "float64",
        block_storage: str = DEFAULT_BLOCK_STORAGE,
        sample_rows: int = 0,
        sample_seed: tuple[int, ...] = (),
    ):
        started = time.perf_counter()
        super().__init__(df.sparkSession, storage_level, aggregation_depth, dtype, block_storage, sample_rows,
                         sample_seed)
        self._sc = self.spark.sparkContext
        has_weight = bool(weight_col)
        selected = selected_features(df, features, weight_col)
        # Each input partition costs the conversion two Python evaluations (~0.1 s) and every pass one more file to
        # open and blocks no larger than the partition: from 2,000 partitions a fit of 1M rows took 208 s against
        # 11 s from 10 (scripts/driver_memory_benchmark.py; 32 s once merged). More partitions than
        # MAX_PARTITIONS_PER_CORE per core are merged (no shuffle) before they are packed.
        limit = MAX_PARTITIONS_PER_CORE * self._parallelism()
        if selected.rdd.getNumPartitions() > limit:
            selected = selected.coalesce(limit)
        self._blocks: RDD = packed_blocks(selected, has_weight, block_bytes or BLOCK_BYTES, dtype)
        self.rdd: RDD | None = None
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
        self._described(described, time.perf_counter() - started)

    def _parallelism(self) -> int:
        return max(1, self._sc.defaultParallelism)

    def _dealt(self, blocks: RDD) -> RDD:
        """The blocks dealt out round-robin over one partition per core: every partition gets as many full blocks."""
        return blocks.mapPartitionsWithIndex(_number_blocks).partitionBy(self._parallelism()).values()

    def _store(self, description: str) -> Description:
        """Persist the blocks where ``block_storage`` says, in one job that also describes them."""
        # A new store each time: the files of a store that was removed stay removed (storage.write_local_file).
        self._store_id = uuid.uuid4().hex
        if self.block_storage == "local-files":
            stored = self._blocks.mapPartitionsWithIndex(partial(write_local_file, self._store_id))
        else:
            stored = self._blocks
        self.rdd = stored.persist(self._storage_level)
        self._sc.setJobDescription(description)
        try:
            with track(self.spark, description) as progress:
                loop = self.loop_rdd
                described = loop.mapPartitions(self._describe_task()).treeReduce(
                    Description.merge, depth=describe_depth(loop.getNumPartitions(), self.aggregation_depth)
                )
                progress.set_rows(described.rows)
            return described
        except BaseException as error:
            self.unpersist()
            raise_input_error(error)  # a damaged input file, found by the job that reads its rows
            raise

    @property
    def loop_rdd(self) -> RDD:
        """The stored partitions read by one task per core registered now: more tasks than cores would cost a wave of
        task launches per pass for nothing."""
        parallelism = self._parallelism()
        return self.rdd.coalesce(parallelism) if self.rdd.getNumPartitions() > parallelism else self.rdd

    @property
    def n_tasks(self) -> int:
        """How many tasks a pass started now runs."""
        return self.loop_rdd.getNumPartitions()

    def task_rows(self) -> list[int]:
        """How many rows each task of a pass started now reads (one number per task: bounded by the cores)."""
        self._sc.setJobDescription("sparkgmm: rows per task")
        return self.loop_rdd.mapPartitions(describe_partition).map(operator.attrgetter("rows")).collect()

    def run_pass(self, requests: Sequence, description: str) -> list:
        """One pass for ``sparkgmm.em``: broadcast the requests, one named Spark job, tree-reduce the answers. When
        a task finds its block file missing, the files are written again from the input and the pass runs again."""
        try:
            return self._run_pass(requests, description)
        except Exception as error:  # a Py4JJavaError carrying the Python worker's MissingLocalFile
            if MISSING_LOCAL_FILE not in str(error):
                raise
        self.rdd.unpersist()
        self.rdd.persist(self._storage_level)
        return self._run_pass(requests, description)

    def _run_pass(self, requests: Sequence, description: str) -> list:
        broadcast = self._sc.broadcast(list(requests))
        self._sc.setJobDescription(f"sparkgmm: {description}")
        try:
            with track(self.spark, description, total_rows=self.n_rows):
                return self.loop_rdd.mapPartitions(
                    partial(_answer_partition, broadcast, self.n_features)
                ).treeReduce(merge_answers, depth=self.aggregation_depth)
        finally:
            broadcast.destroy()

    def unpersist(self) -> None:
        """Release the stored blocks: the cached partitions, and the local files on every executor (the executors
        also remove them when they stop)."""
        if self.rdd is not None:
            self.rdd.unpersist()
            self.rdd = None
        if self.block_storage == "local-files":
            tasks = self._parallelism()
            self._sc.setJobDescription("sparkgmm: remove local block files")
            try:
                self._sc.parallelize(range(tasks), tasks).mapPartitions(
                    partial(remove_local_files, self._store_id)
                ).count()
            except Exception as error:  # best effort: a stopped context has nothing left to clean
                logger.warning("could not remove sparkgmm's local block files: %s", error)
        self._sc.setJobDescription(None)
