"""What both engines share: ``StoredBlocks``, the training data as NumPy blocks stored once, and the engine choice.

``StoredBlocks`` owns the settings, the conversion's frame (time it, keep what its pass learned, release the blocks
when it fails), a pass's retry when a task finds its local block file missing, the naming of Spark jobs, and the
release of the blocks (the cached data and the files on the executors' local disks). An engine
(``engine.rdd.RddBlocks``, ``engine.dataframe.DataFrameBlocks``) says only how it converts and stores the blocks, how
it runs one pass, and how it removes the local files; the code its tasks run is ``engine.tasks``.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from functools import partial
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame

from ...errors import InputError
from ...options import DEFAULT_BLOCK_STORAGE, PARAMS, check_value
from ..failures import raise_input_error
from ..features import selected_features
from ..progress import track
from ..session import default_parallelism, is_connect, spark_context
from .tasks import MISSING_LOCAL_FILE, Description, describe_partition

logger = logging.getLogger(__name__)

# Target size of one stored block. Small blocks let the JVM stream the next block to the Python worker while it
# computes on the current one: at 1M x 8 x 8, 2 MiB blocks gave ~0.24 s per iteration against ~0.30 s with 32 MiB
# ones (1 to 4 MiB were within noise of each other).
BLOCK_BYTES = 2 << 20
# Rebalance the blocks when one task of a pass would read more than this times its fair share of the rows.
MAX_TASK_SKEW = 1.25
# At most this many stored partitions per core: enough for a pass to follow cores that join later.
MAX_PARTITIONS_PER_CORE = 4
# Under Spark Connect every operation of a pass carries this tag and one naming the pass (the server turns them into
# the Spark jobs' tags), where a classic session names the jobs with a job description.
JOB_TAG = "sparkgmm"


def check_storage(dtype: str, block_storage: str) -> None:
    check_value(PARAMS["dtype"], "dtype", dtype)
    check_value(PARAMS["blockStorage"], "blockStorage", block_storage)


def choose_engine(spark, engine: str) -> str:
    """The engine that runs for the ``engine`` param: ``auto`` is the RDD engine where there is a SparkContext (it is
    faster there) and the DataFrame engine under Spark Connect, which has none for ``rdd``."""
    if engine == "auto":
        return "dataframe" if is_connect(spark) else "rdd"
    if engine == "rdd" and is_connect(spark):
        raise InputError("engine='rdd' needs a SparkContext, which a Spark Connect session does not have; use "
                         "engine='auto' or 'dataframe'")
    return engine


def describe_depth(tasks: int, depth: int) -> int:
    """The depth of the tree-reduce of a conversion's descriptions: at least ``depth``, and deep enough that the
    driver receives at most about 4 of them whatever the number of tasks (each can carry a sample of
    ``sampleRows`` rows)."""
    return max(depth, math.ceil(math.log2(max(tasks, 2))))


@dataclass(frozen=True)
class Converted:
    """What a conversion found of the rows, as ``StoredBlocks`` says it (for rows converted without being stored:
    ``rdd.convert_and_answer``)."""

    n_rows: int
    weight_sum: float
    invalid_rows: int
    ragged_rows: int
    n_features: int

    @classmethod
    def of(cls, described: Description) -> Converted:
        dims = sorted(described.dims)
        ragged = described.ragged if len(dims) <= 1 else max(described.ragged, 1)
        return cls(described.rows, described.weight_sum, described.invalid, ragged, dims[0] if len(dims) == 1 else -1)


@contextlib.contextmanager
def named_jobs(spark, description: str):
    """Name the Spark jobs started inside: the job description in a classic session; under Spark Connect, which has
    none to set, tags (JOB_TAG and the description) on the client's operations, shown with the jobs."""
    sc = spark_context(spark)
    if sc is not None:
        sc.setJobDescription(description)
        try:
            yield
        finally:
            sc.setJobDescription(None)  # type: ignore[arg-type]  # None clears it; the stub says str
        return
    tags = [JOB_TAG, description.replace(",", ";")]  # a tag may not hold a comma
    for tag in tags:
        spark.addTag(tag)
    try:
        yield
    finally:
        for tag in tags:
            spark.removeTag(tag)


class StoredBlocks(abc.ABC):
    """The training data as NumPy blocks stored once, with what the conversion pass learned about them (``n_rows``,
    ``weight_sum``, ``invalid_rows``, ``ragged_rows``, ``n_features``, ``block_bytes``, ``fingerprint``, ``sample``,
    ``moments`` when asked for them, ``seconds``).

    ``block_storage`` says where the blocks live between passes: ``"local-files"`` writes each partition's blocks to
    a file on its executor's local disk, memory-mapped by every later pass (what Spark stores is only where the files
    are, and Spark's locality runs each task where its file is); ``"spark-cache"`` persists the blocks themselves in
    Spark's block manager at ``storage_level``. A pass that finds a file missing (it ran on another host, or the
    directory was cleaned) rebuilds the files from the input, through the stored data's lineage, and runs again.
    Results are bounded by what a pass asks (never by the rows or the input's partitions). Use as a context manager,
    or call ``unpersist()``.
    """

    engine = ""

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
        moments: bool = False,
    ):
        started = time.perf_counter()
        check_storage(dtype, block_storage)
        self.spark = df.sparkSession
        self.aggregation_depth = aggregation_depth
        self.dtype = dtype
        self.block_storage = block_storage
        self.sample_rows = sample_rows
        self.sample_seed = tuple(sample_seed)
        self.with_moments = moments
        self.has_weight = bool(weight_col)
        self.target_block_bytes = block_bytes or BLOCK_BYTES
        self.rebalanced = False
        self.stored: Any = None  # the persisted RDD (RddBlocks) or DataFrame (DataFrameBlocks)
        self._storage_level = storage_level
        self._store_id = uuid.uuid4().hex
        self._described(self._convert(selected_features(df, features, weight_col)), time.perf_counter() - started)

    # --- what each engine does its own way ------------------------------------------------------------------------

    @abc.abstractmethod
    def _convert(self, selected: DataFrame) -> Description:
        """Pack and store the selected columns (``features.selected_features``) as ``self.stored``, balanced over
        the cores, and describe them (``_describe``)."""

    @abc.abstractmethod
    def _pass_job(self, requests: list, job_name: str) -> list:
        """One pass's Spark job: every task's answers to ``requests``, merged."""

    @abc.abstractmethod
    def _remove_local_files(self) -> None:
        """One small job with a task per core that removes the store's files (``tasks.remove_local_files``)."""

    @property
    @abc.abstractmethod
    def n_tasks(self) -> int:
        """How many tasks a pass started now runs."""

    @abc.abstractmethod
    def task_rows(self) -> list[int]:
        """How many rows each task of a pass started now reads (one number per task: bounded by the cores)."""

    # --- what they share ------------------------------------------------------------------------------------------

    def _parallelism(self) -> int:
        return default_parallelism(self.spark)

    def _new_store(self) -> str:
        """A new store id for the local files: the files of a store that was removed stay removed
        (``tasks.write_local_file``)."""
        self._store_id = uuid.uuid4().hex
        return self._store_id

    def _describe_task(self):
        """What each task of the conversion pass runs over its stored elements: ``describe_partition``, keeping a
        sample of ``sample_rows`` rows, and the column moments when the store was asked for them."""
        return partial(describe_partition, sample_rows=self.sample_rows, sample_seed=self.sample_seed,
                       moments=self.with_moments)

    def _describe(self, description: str, job: Callable[[], Description]) -> Description:
        """Run the conversion's ``job`` (which stores the blocks and describes them) with its progress shown; when it
        fails, release what it stored and report a damaged input file as such."""
        try:
            with track(self.spark, description) as progress:
                described = job()
                progress.set_rows(described.rows)
            return described
        except BaseException as error:
            self.unpersist()
            raise_input_error(error)  # a damaged input file, found by the job that reads its rows
            raise

    def _described(self, described: Description, seconds: float) -> None:
        """Keep what the conversion pass found: rows, weights, dropped rows, features, bytes, fingerprint, sample,
        moments."""
        self.seconds = seconds
        self.n_rows = described.rows
        self.weight_sum = described.weight_sum
        self.invalid_rows = described.invalid
        self.ragged_rows = described.ragged
        self.block_bytes = described.bytes
        self.fingerprint = described.fingerprint
        self.largest_task_rows = described.largest_task
        dims = sorted(described.dims)
        self.n_features = dims[0] if len(dims) == 1 else -1
        # The sample's rows, largest key first (a prefix is a smaller sample of the same law); None when not asked.
        sample = described.sample
        self.sample = None if sample is None or self.n_features < 1 else sample.ordered()
        if len(dims) > 1:  # each partition was consistent, but they disagree with each other
            self.ragged_rows = max(self.ragged_rows, 1)
        # The weighted moments of the rows kept, for priors that start from the data's spread; None where a fit
        # refuses the input anyway (no features, ragged rows) or where the rows have no mean (no weight at all).
        moments = described.moments
        usable = moments is not None and self.n_features >= 1 and not self.ragged_rows and moments.weight_sum > 0.0
        self.moments = moments if usable else None

    @property
    def data_mean(self) -> np.ndarray | None:
        """The rows' weighted mean (d,), None without ``moments``."""
        return None if self.moments is None else self.moments.mean

    @property
    def data_covariance(self) -> np.ndarray | None:
        """The rows' weighted covariance (d, d) with the weights counting rows (``ColumnMoments.covariance(ddof=1)``:
        what ``np.cov`` gives of the rows each repeated as many times as its weight, the covariance scikit-learn's
        BayesianGaussianMixture starts its prior from), None without ``moments``. A ValueError when the rows weigh
        1 or less in all."""
        return None if self.moments is None else self.moments.covariance(ddof=1)

    def run_pass(self, requests: Sequence, description: str) -> list:
        """One pass for ``sparkgmm.em``: one named Spark job whose tasks answer the requests, the answers merged in a
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
        with track(self.spark, description, total_rows=self.n_rows):
            return self._pass_job(list(requests), f"sparkgmm: {description}")

    def _named(self, description: str):
        return named_jobs(self.spark, description)

    def unpersist(self) -> None:
        """Release the stored blocks: the cached data, and the local files on every executor (the executors also
        remove them when they stop)."""
        if self.stored is not None:
            self.stored.unpersist()
            self.stored = None
        if self.block_storage == "local-files":
            try:
                with self._named("sparkgmm: remove local block files"):
                    self._remove_local_files()
            except Exception as error:  # best effort: a stopped session has nothing left to clean
                logger.warning("could not remove sparkgmm's local block files: %s", error)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()
