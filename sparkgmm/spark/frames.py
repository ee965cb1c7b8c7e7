"""The DataFrame engine: ``blocks.FeatureBlocks``' conversion and passes with DataFrame operations only, for sessions
without a SparkContext (Spark Connect clients) and, with ``engine="dataframe"``, classic ones.

The conversion is the same ``mapInArrow`` packing task, and the packed rows are persisted as a DataFrame: with
``spark-cache`` the blocks themselves (Spark's columnar cache, at the storage level), with ``local-files`` one row per
partition saying where its blocks are: the task that computes a cached partition writes its blocks to a file on its
executor's local disk, so Spark's cache locality runs later tasks where the file is. A pass is one Spark job,
``stored.coalesce(cores).mapInArrow(task)``, where ``task`` carries the pass's requests in its closure (the plan
carries them to the executors: there is no broadcast) and yields one row per task, its pickled answers. With many
tasks, shuffle levels merge groups of those rows first (as ``treeReduce`` would, ``aggregationDepth`` deep), and the
client merges the few rows it collects (at most about one per core) in a tree.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame

from ..options import DEFAULT_BLOCK_STORAGE
from .failures import raise_input_error
from .progress import track
from .packing import BLOCK_BYTES, PACKED_SCHEMA, block_of, pack_blocks, pack_partition, selected_features
from .session import default_parallelism, spark_context
from .storage import (
    MAX_PARTITIONS_PER_CORE, MAX_TASK_SKEW, MISSING_LOCAL_FILE, Description, Stored, StoredBlocks,
    answer_partition, describe_depth, describe_partition, merge_answers, remove_local_files, write_local_file,
)

logger = logging.getLogger(__name__)

# Under Spark Connect every operation of a pass carries this tag and one naming the pass (the server turns them into
# the Spark jobs' tags), where a classic session names the jobs with a job description.
JOB_TAG = "sparkgmm"
_LOCATION_SCHEMA = "stored binary"  # a pickled storage.Stored holding a LocalFile: one row per stored partition
_ANSWER_SCHEMA = "answer binary"  # one task's pickled answers


def _binary_batch(name: str, value: bytes) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: pa.array([value], pa.binary())})


def _binary_values(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Buffer]:
    for batch in batches:
        for value in batch.column(0):
            yield value.as_buffer()


def _packed_elements(has_weight: bool, dtype: str, batches: Iterator[pa.RecordBatch]) -> Iterator[Stored]:
    """The blocks of packed rows (``PACKED_SCHEMA``), read from the Arrow batches without copying them."""
    for batch in batches:
        rows, cols = batch.column("rows").to_pylist(), batch.column("cols").to_pylist()
        invalid, ragged = batch.column("invalid").to_pylist(), batch.column("ragged").to_pylist()
        x, w, h, origin = (batch.column(name) for name in ("x", "w", "h", "origin"))
        for i in range(batch.num_rows):
            block = block_of(rows[i], cols[i], x[i].as_buffer(), w[i].as_buffer(), h[i].as_buffer(),
                             origin[i].as_buffer(), has_weight, dtype)
            yield Stored(block, invalid[i], ragged[i])


def _stored_elements(block_storage: str, has_weight: bool, dtype: str,
                     batches: Iterator[pa.RecordBatch]) -> Iterator[Stored]:
    if block_storage == "local-files":
        return (pickle.loads(value) for value in _binary_values(batches))
    return _packed_elements(has_weight, dtype, batches)


def _write_task(store: str, has_weight: bool, dtype: str,
                batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body that computes a cached partition from packed rows: its blocks go to a file on this executor's
    local disk, and the one row it yields says where."""
    yield from _written(store, _packed_elements(has_weight, dtype, batches))


def _pack_and_write_task(store: str, has_weight: bool, block_bytes: int, dtype: str,
                         batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``_write_task`` straight from the input's rows: the blocks never travel back to the JVM."""
    packed = (Stored(*element) for element in pack_blocks(batches, has_weight, block_bytes, dtype))
    yield from _written(store, packed)


def _written(store: str, elements: Iterator[Stored]) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext

    context = TaskContext.get()
    index = context.partitionId() if context is not None else 0
    for element in write_local_file(store, index, elements):
        yield _binary_batch("stored", pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL))


def _describe_task(describe: Callable, block_storage: str, has_weight: bool, dtype: str,
                   batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for description in describe(_stored_elements(block_storage, has_weight, dtype, batches)):
        yield _binary_batch("answer", pickle.dumps(description, protocol=pickle.HIGHEST_PROTOCOL))


def _answer_task(requests: list, n_features: int, block_storage: str, has_weight: bool, dtype: str,
                 batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body of a pass: one task's answers to every request, as one row."""
    answers = answer_partition(requests, n_features, _stored_elements(block_storage, has_weight, dtype, batches))
    yield _binary_batch("answer", pickle.dumps(answers, protocol=pickle.HIGHEST_PROTOCOL))


def tree_merge(items: list, merge: Callable) -> object:
    """Merge ``items`` pairwise, level by level (a tree of depth log2(len(items)))."""
    while len(items) > 1:
        items = [merge(items[i], items[i + 1]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


def _merge_task(merge: Callable, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body of a merge level: the answers of a group of tasks, merged into one row."""
    answers = [pickle.loads(value) for value in _binary_values(batches)]
    if answers:
        merged = tree_merge(answers, merge)
        yield _binary_batch("answer", pickle.dumps(merged, protocol=pickle.HIGHEST_PROTOCOL))


def merge_levels(tasks: int, depth: int) -> list[int]:
    """The partitions of each shuffle level that merges ``tasks`` answers before the client collects them: the rule
    of ``RDD.treeAggregate`` (levels while more than ``scale + n / scale`` remain, ``scale`` = tasks ** (1 / depth))."""
    scale = max(math.ceil(tasks ** (1.0 / depth)), 2)
    levels = []
    remaining = float(tasks)
    while remaining > scale + remaining / scale:
        remaining /= scale
        levels.append(int(remaining))
    return levels


class FrameBlocks(StoredBlocks):
    """The training data as NumPy blocks stored once, like ``blocks.FeatureBlocks`` (same attributes, ``run_pass``,
    ``task_rows``, ``unpersist``), with DataFrame operations only.

    Input partitions beyond MAX_PARTITIONS_PER_CORE per core are merged before packing (``coalesce``, which leaves
    fewer alone). Without a SparkContext the number of input partitions is not known before a job has read them, so
    the blocks are dealt out over the cores (a round-robin ``repartition`` of the packed rows, converted again from
    the input) after the conversion pass has found fewer stored partitions than cores, or one task holding more than
    MAX_TASK_SKEW times its share of the rows. A pass that finds a block file missing rebuilds the files from the
    input (the persisted DataFrame's plan) and runs again. Use as a context manager, or call ``unpersist()``.
    """

    engine = "dataframe"

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
        self._has_weight = bool(weight_col)
        self.stored: DataFrame | None = None
        self._stored_partitions: int | None = None  # known when fewer than the cores
        parallelism = self._parallelism()
        # See FeatureBlocks for the cost of many input partitions. coalesce never adds partitions, so it is a no-op
        # on an input that has no more than the limit (which a Connect client cannot ask without running a job).
        self._selected = selected_features(df, features, weight_col).coalesce(MAX_PARTITIONS_PER_CORE * parallelism)
        self._block_bytes = block_bytes or BLOCK_BYTES
        described, tasks = self._store(None, "sparkgmm: convert features to blocks")
        too_few = tasks < parallelism and described.blocks > tasks
        skewed = (described.largest_task > MAX_TASK_SKEW * described.rows / parallelism
                  and described.blocks >= 2 * parallelism)
        self.rebalanced = too_few or skewed
        if self.rebalanced:
            self.unpersist()
            described, tasks = self._store(parallelism, "sparkgmm: convert features to blocks, balanced by rows")
        self._described(described, time.perf_counter() - started)

    def _parallelism(self) -> int:
        return default_parallelism(self.spark)

    def _decoding(self) -> tuple:
        return self.block_storage, self._has_weight, self.dtype

    def _store(self, dealt: int | None, description: str) -> tuple[Description, int]:
        """Persist the packed rows (or, for local files, where the files their tasks wrote are), dealt out round-robin
        over ``dealt`` partitions if given, in one job that also describes them; returns the description and the
        number of tasks of that job."""
        # A new store each time: the files of a store that was removed stay removed (storage.write_local_file).
        self._store_id = uuid.uuid4().hex
        weight, dtype = self._has_weight, self.dtype
        if self.block_storage == "local-files" and dealt is None:
            stored = self._selected.mapInArrow(
                partial(_pack_and_write_task, self._store_id, weight, self._block_bytes, dtype), _LOCATION_SCHEMA
            )
        else:
            stored = self._selected.mapInArrow(
                partial(pack_partition, has_weight=weight, block_bytes=self._block_bytes, dtype=dtype), PACKED_SCHEMA
            )
            if dealt is not None:
                stored = stored.repartition(dealt)
            if self.block_storage == "local-files":
                stored = stored.mapInArrow(partial(_write_task, self._store_id, weight, dtype), _LOCATION_SCHEMA)
        self.stored = stored.persist(self._storage_level)
        self._stored_partitions = None
        parallelism = self._parallelism()
        try:
            with track(self.spark, description) as progress:
                described = self._merged(self._loop_frame(parallelism), partial(_describe_task, self._describe_task()),
                                         Description.merge, description, parallelism)
                progress.set_rows(described.rows)
        except BaseException as error:
            self.unpersist()
            raise_input_error(error)  # a damaged input file, found by the job that reads its rows
            raise
        if dealt is not None or described.tasks < parallelism:  # else coalesce(parallelism) merged some
            self._stored_partitions = dealt or described.tasks
        return described, described.tasks

    def _merged(self, frame: DataFrame, task: Callable, merge: Callable, description: str, tasks: int,
                depth: int | None = None):
        """One named job: ``task`` (a mapInArrow body yielding one pickled answer per task) over ``frame``, the
        answers merged in shuffle levels (``merge_levels``) and then on the client. The description's tree is deep
        enough that the client gets a few answers whatever the number of tasks (``describe_depth``)."""
        answers = frame.mapInArrow(partial(task, *self._decoding()), _ANSWER_SCHEMA)
        depth = describe_depth(tasks, self.aggregation_depth) if depth is None else depth
        for partitions in merge_levels(tasks, depth):
            answers = answers.repartition(partitions).mapInArrow(partial(_merge_task, merge), _ANSWER_SCHEMA)
        with self._named(description):
            rows = answers.collect()
        return tree_merge([pickle.loads(row[0]) for row in rows], merge)

    def _loop_frame(self, parallelism: int) -> DataFrame:
        """The stored partitions read by one task per core registered now."""
        if self._stored_partitions is not None and self._stored_partitions <= parallelism:
            return self.stored
        return self.stored.coalesce(parallelism)

    @property
    def n_tasks(self) -> int:
        """How many tasks a pass started now runs."""
        parallelism = self._parallelism()
        return min(parallelism, self._stored_partitions or parallelism)

    def _task_descriptions(self, description: str, parallelism: int | None = None) -> list[Description]:
        frame = self._loop_frame(parallelism or self._parallelism())
        with self._named(description):
            rows = frame.mapInArrow(partial(_describe_task, describe_partition, *self._decoding()),
                                    _ANSWER_SCHEMA).collect()
        return [pickle.loads(row[0]) for row in rows]

    def task_rows(self) -> list[int]:
        """How many rows each task of a pass started now reads (one number per task: bounded by the cores)."""
        return [description.rows for description in self._task_descriptions("sparkgmm: rows per task")]

    def run_pass(self, requests: Sequence, description: str) -> list:
        """One pass for ``sparkgmm.em``: one named Spark job whose tasks carry the requests, the answers merged in a
        tree. When a task finds its block file missing, the files are written again from the input and the pass runs
        again."""
        try:
            return self._run_pass(requests, description)
        except Exception as error:  # the Python worker's MissingLocalFile, in Spark's (or Connect's) exception
            if MISSING_LOCAL_FILE not in str(error):
                raise
        self.stored.unpersist()
        self.stored.persist(self._storage_level)
        return self._run_pass(requests, description)

    def _run_pass(self, requests: Sequence, description: str) -> list:
        parallelism = self._parallelism()
        with track(self.spark, description, total_rows=self.n_rows):
            return self._merged(self._loop_frame(parallelism), partial(_answer_task, list(requests), self.n_features),
                                merge_answers, f"sparkgmm: {description}", self.n_tasks, self.aggregation_depth)

    @contextlib.contextmanager
    def _named(self, description: str):
        """Name the Spark jobs started inside: the job description in a classic session; under Spark Connect, which
        has none to set, tags (JOB_TAG and the description) on the client's operations, shown with the jobs."""
        sc = spark_context(self.spark)
        if sc is not None:
            sc.setJobDescription(description)
            try:
                yield
            finally:
                sc.setJobDescription(None)
            return
        tags = [JOB_TAG, description.replace(",", ";")]  # a tag may not hold a comma
        for tag in tags:
            self.spark.addTag(tag)
        try:
            yield
        finally:
            for tag in tags:
                self.spark.removeTag(tag)

    def unpersist(self) -> None:
        """Release the stored blocks: the cached rows, and the local files on every executor (the executors also
        remove them when they stop)."""
        if self.stored is not None:
            self.stored.unpersist()
            self.stored = None
        if self.block_storage == "local-files":
            try:
                tasks = self._parallelism()
                with self._named("sparkgmm: remove local block files"):
                    self.spark.range(0, tasks, 1, tasks).mapInArrow(
                        partial(_remove_task, self._store_id), "removed long"
                    ).collect()
            except Exception as error:  # best effort: a stopped session has nothing left to clean
                logger.warning("could not remove sparkgmm's local block files: %s", error)


def _remove_task(store: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for _ in batches:
        pass
    for removed in remove_local_files(store, ()):
        yield pa.RecordBatch.from_pydict({"removed": pa.array([removed], pa.int64())})
