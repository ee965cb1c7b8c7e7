"""The DataFrame engine: ``StoredBlocks`` converted and passed over with DataFrame operations only, for sessions
without a SparkContext (Spark Connect clients) and, with ``engine="dataframe"``, classic ones.

The conversion is the same packing task (``tasks.pack_partition``, through ``mapInArrow``), and the packed rows are
persisted as a DataFrame: with ``spark-cache`` the blocks themselves (Spark's columnar cache, at the storage level),
with ``local-files`` one row per partition saying where its blocks are: the task that computes a cached partition
writes its blocks to a file on its executor's local disk, so Spark's cache locality runs later tasks where the file
is. A pass is one Spark job, ``stored.coalesce(cores).mapInArrow(task)``, where ``task`` carries the pass's requests
in its closure (the plan carries them to the executors: there is no broadcast) and yields one row per task, its
pickled answers. With many tasks, shuffle levels merge groups of those rows first (as ``treeReduce`` would,
``aggregationDepth`` deep), and the client merges the few rows it collects (at most about one per core) in a tree.
"""

from __future__ import annotations

import math
import pickle
from functools import partial
from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame

from ..failures import raise_input_error
from ..features import selected_features
from ..progress import track
from ..session import default_parallelism
from .base import BLOCK_BYTES, MAX_PARTITIONS_PER_CORE, MAX_TASK_SKEW, StoredBlocks, describe_depth, named_jobs
from .tasks import (
    ANSWER_SCHEMA, LOCATION_SCHEMA, PACKED_SCHEMA, Description, answer_task, describe_partition, describe_task,
    merge_answers, merge_described_answers, merge_task, pack_and_answer_task, pack_and_write_task, pack_partition,
    remove_task, tree_merge, write_packed_task,
)


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


def collect_merged(spark, answers: DataFrame, merge: Callable, description: str, tasks: int, depth: int) -> list:
    """The answers (one pickled answer per row, ``ANSWER_SCHEMA``) of up to ``tasks`` tasks, merged in shuffle levels
    (``merge_levels``) and collected in one job named ``description``: a few, to merge on the client."""
    for partitions in merge_levels(tasks, depth):
        answers = answers.repartition(partitions).mapInArrow(partial(merge_task, merge), ANSWER_SCHEMA)
    with named_jobs(spark, description):
        rows = answers.collect()
    return [pickle.loads(row[0]) for row in rows]


def convert_and_answer(df: DataFrame, features: Column, weight_col: str | None, requests: Sequence, n_features: int,
                       *, dtype: str, aggregation_depth: int, description: str
                       ) -> tuple[Description, list | None]:
    """``engine.rdd.convert_and_answer`` with DataFrame operations only (for a Spark Connect client, or
    ``engine="dataframe"``): the rows read, packed and answered in the tasks of one ``mapInArrow``, nothing stored,
    the tasks' answers merged as a pass's are. The requests travel in the plan, as a pass's do."""
    spark = df.sparkSession
    limit = MAX_PARTITIONS_PER_CORE * default_parallelism(spark)  # runs no job: the plan is only built here
    selected = selected_features(df, features, weight_col).coalesce(limit)  # a no-op on fewer partitions
    frame = selected.mapInArrow(partial(pack_and_answer_task, list(requests), n_features, bool(weight_col),
                                        BLOCK_BYTES, dtype), ANSWER_SCHEMA)
    try:
        with track(spark, description):
            found = collect_merged(spark, frame, merge_described_answers, description, limit, aggregation_depth)
    except BaseException as error:
        raise_input_error(error)  # a damaged input file, found by the job that reads its rows
        raise
    if not found:  # an input of no partitions
        return next(describe_partition([])), [request.empty(n_features) for request in requests]
    merged: tuple[Description, list | None] = tree_merge(found, merge_described_answers)  # type: ignore[assignment]
    return merged


class DataFrameBlocks(StoredBlocks):
    """``StoredBlocks`` as a persisted DataFrame (``stored``), with DataFrame operations only.

    Input partitions beyond MAX_PARTITIONS_PER_CORE per core are merged before packing (``coalesce``, which leaves
    fewer alone). Without a SparkContext the number of input partitions is not known before a job has read them, so
    the blocks are dealt out over the cores (a round-robin ``repartition`` of the packed rows, converted again from
    the input) after the conversion pass has found fewer stored partitions than cores, or one task holding more than
    MAX_TASK_SKEW times its share of the rows.
    """

    engine = "dataframe"

    def _convert(self, selected: DataFrame) -> Description:
        self._stored_partitions: int | None = None  # known when fewer than the cores
        parallelism = self._parallelism()
        # See RddBlocks for the cost of many input partitions. coalesce never adds partitions, so it is a no-op on an
        # input that has no more than the limit (which a Connect client cannot ask without running a job).
        self._selected = selected.coalesce(MAX_PARTITIONS_PER_CORE * parallelism)
        described, tasks = self._store(None, "sparkgmm: convert features to blocks")
        too_few = tasks < parallelism and described.blocks > tasks
        skewed = (described.largest_task > MAX_TASK_SKEW * described.rows / parallelism
                  and described.blocks >= 2 * parallelism)
        self.rebalanced = too_few or skewed
        if self.rebalanced:
            self.unpersist()
            described, tasks = self._store(parallelism, "sparkgmm: convert features to blocks, balanced by rows")
        return described

    def _decoding(self) -> tuple:
        return self.block_storage, self.has_weight, self.dtype

    def _store(self, dealt: int | None, description: str) -> tuple[Description, int]:
        """Persist the packed rows (or, for local files, where the files their tasks wrote are), dealt out round-robin
        over ``dealt`` partitions if given, in one job that also describes them; returns the description and the
        number of tasks of that job."""
        store = self._new_store()
        weight, dtype, block_bytes = self.has_weight, self.dtype, self.target_block_bytes
        if self.block_storage == "local-files" and dealt is None:
            stored = self._selected.mapInArrow(
                partial(pack_and_write_task, store, weight, block_bytes, dtype), LOCATION_SCHEMA
            )
        else:
            stored = self._selected.mapInArrow(
                partial(pack_partition, has_weight=weight, block_bytes=block_bytes, dtype=dtype), PACKED_SCHEMA
            )
            if dealt is not None:
                stored = stored.repartition(dealt)
            if self.block_storage == "local-files":
                stored = stored.mapInArrow(partial(write_packed_task, store, weight, dtype), LOCATION_SCHEMA)
        self.stored = stored.persist(self._storage_level)
        self._stored_partitions = None
        parallelism = self._parallelism()
        described = self._describe(description, lambda: self._merged(
            self._loop_frame(parallelism), partial(describe_task, self._describe_task()), Description.merge,
            description, parallelism))
        if dealt is not None or described.tasks < parallelism:  # else coalesce(parallelism) merged some
            self._stored_partitions = dealt or described.tasks
        return described, described.tasks

    def _merged(self, frame: DataFrame, task: Callable, merge: Callable, description: str, tasks: int,
                depth: int | None = None):
        """One named job: ``task`` (a mapInArrow body yielding one pickled answer per task) over ``frame``, the
        answers merged in shuffle levels (``merge_levels``) and then on the client. The description's tree is deep
        enough that the client gets a few answers whatever the number of tasks (``describe_depth``)."""
        answers = frame.mapInArrow(partial(task, *self._decoding()), ANSWER_SCHEMA)
        depth = describe_depth(tasks, self.aggregation_depth) if depth is None else depth
        return tree_merge(collect_merged(self.spark, answers, merge, description, tasks, depth), merge)

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
            rows = frame.mapInArrow(partial(describe_task, describe_partition, *self._decoding()),
                                    ANSWER_SCHEMA).collect()
        return [pickle.loads(row[0]) for row in rows]

    def task_rows(self) -> list[int]:
        """How many rows each task of a pass started now reads (one number per task: bounded by the cores)."""
        return [description.rows for description in self._task_descriptions("sparkgmm: rows per task")]

    def _pass_job(self, requests: list, job_name: str) -> list:
        """The tasks carry the requests in their closure; their answers are merged in a tree."""
        return self._merged(self._loop_frame(self._parallelism()), partial(answer_task, requests, self.n_features),
                            merge_answers, job_name, self.n_tasks, self.aggregation_depth)

    def _remove_local_files(self) -> None:
        tasks = self._parallelism()
        self.spark.range(0, tasks, 1, tasks).mapInArrow(partial(remove_task, self._store_id), "removed long").collect()
