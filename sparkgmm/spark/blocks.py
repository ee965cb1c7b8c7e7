"""From a DataFrame to persisted NumPy blocks, and passes over them as Spark jobs.

The features are converted once: Spark hands each partition to Python as Arrow record batches (``mapInArrow``), a
task packs them into columnar float64 or float32 blocks (features x rows) of about BLOCK_BYTES, and the blocks are
stored: in files on the executors' local disks, or in Spark's cache (``FeatureBlocks``). Every pass then broadcasts
what it is asked (``sparkgmm.passes``: E-steps, k-means|| rounds, samples), maps each partition of blocks to one
answer per request and tree-reduces them: no per-row Python objects, no accumulators.
"""

from __future__ import annotations

import logging
import operator
import os
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.rdd import RDD
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..config import BLOCK_STORAGES, DEFAULT_BLOCK_STORAGE
from ..errors import InputError
from ..passes import BLOCK_DTYPES, Block, content_fingerprint, merge_fingerprints, pack_block
from .failures import raise_input_error

# Target size of one cached block. Small blocks let the JVM stream the next block to the Python worker while it
# computes on the current one: at 1M x 8 x 8, 2 MiB blocks gave ~0.24 s per iteration against ~0.30 s with 32 MiB
# ones (1 to 4 MiB were within noise of each other).
BLOCK_BYTES = 2 << 20
NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
_FEATURES = "__sparkgmm_features"
logger = logging.getLogger(__name__)
_WEIGHT = "__sparkgmm_weight"


def features_column(df: DataFrame, features_col: str, input_cols: list[str] | None) -> Column:
    """A Column of array<double> holding each row's features.

    ``input_cols`` (numeric columns) wins over ``features_col`` (a Vector or an array of float/double).
    """
    fields = {f.name: f.dataType for f in df.schema.fields}
    if input_cols:
        for name in input_cols:
            if name not in fields:
                raise InputError(f"input column {name!r} is not in the DataFrame (columns: {', '.join(fields)})")
            if not isinstance(fields[name], NUMERIC_TYPES):
                raise InputError(f"input column {name!r} has type {fields[name].simpleString()}; it must be numeric")
        return F.array(*[F.col(name).cast("double") for name in input_cols])
    if features_col not in fields:
        raise InputError(f"features column {features_col!r} is not in the DataFrame (columns: {', '.join(fields)})")
    dtype = fields[features_col]
    if isinstance(dtype, VectorUDT):
        return vector_to_array(F.col(features_col), "float64")
    if isinstance(dtype, T.ArrayType) and isinstance(dtype.elementType, (T.FloatType, T.DoubleType)):
        return F.col(features_col).cast("array<double>")
    raise InputError(
        f"features column {features_col!r} has type {dtype.simpleString()}; it must be a Vector or an "
        "array<double>/array<float> (or name numeric columns with inputCols)"
    )


def weight_column(df: DataFrame, weight_col: str) -> Column:
    """The weight column as double, after checking that it exists and is numeric."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    if weight_col not in fields:
        raise InputError(f"weight column {weight_col!r} is not in the DataFrame (columns: {', '.join(fields)})")
    if not isinstance(fields[weight_col], NUMERIC_TYPES):
        raise InputError(f"weight column {weight_col!r} has type {fields[weight_col].simpleString()}; it must be numeric")
    return F.col(weight_col).cast("double")


def list_array_to_matrix(features: pa.Array, d: int | None = None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Arrow list<double> -> ``(X, valid, d, ragged)``.

    ``d`` is the expected row length; when None, that of the first non-null row (-1 if there is none). ``X`` has
    one row per input row and ``valid`` marks the rows that are non-null, of length ``d`` and finite; other rows of
    ``X`` hold zeros, so callers keep ``X[valid]`` or mask their output. ``ragged`` counts non-null rows of another
    length.
    """
    if isinstance(features, pa.ChunkedArray):
        features = features.combine_chunks()
    n = len(features)
    lengths = features.value_lengths().fill_null(-1).to_numpy(zero_copy_only=False)
    present = lengths >= 0
    if d is None:
        d = int(lengths[present][0]) if present.any() else -1
    valid = present & (lengths == d)
    ragged = int((present & ~valid).sum())
    X = np.zeros((n, max(d, 0)))
    if d > 0 and valid.all():
        X[:] = features.flatten().to_numpy(zero_copy_only=False).reshape(n, d)
    elif d > 0 and valid.any():
        offsets = features.offsets.to_numpy()[:-1] - features.offsets[0].as_py()
        values = features.flatten().to_numpy(zero_copy_only=False)
        X[valid] = values[offsets[valid][:, None] + np.arange(d)[None, :]]
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        X[~finite] = 0.0
        valid &= finite
    return X, valid, d, ragged


def _block_batch(block: Block, invalid: int, ragged: int) -> pa.RecordBatch:
    """One output row of ``_pack_partition``: a packed block as raw bytes, with the counts of dropped rows."""
    w, origin = block.w, block.origin
    return pa.RecordBatch.from_pydict(
        {
            "rows": pa.array([block.n_rows], pa.int64()),
            "cols": pa.array([block.xt.shape[0]], pa.int32()),
            "x": pa.array([block.xt.tobytes()], pa.binary()),
            "w": pa.array([b"" if w is None else w.tobytes()], pa.binary()),
            "h": pa.array([block.hashes.tobytes()], pa.binary()),
            "origin": pa.array([b"" if origin is None else origin.tobytes()], pa.binary()),
            "invalid": pa.array([invalid], pa.int64()),
            "ragged": pa.array([ragged], pa.int64()),
        }
    )


_PACKED_SCHEMA = "rows long, cols int, x binary, w binary, h binary, origin binary, invalid long, ragged long"


def _pack_partition(batches: Iterator[pa.RecordBatch], has_weight: bool, block_bytes: int,
                    dtype: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: pack a partition's valid rows into ``dtype`` blocks of about ``block_bytes``, one output row
    each. The counts of invalid (null, non-finite, bad weight) and ragged rows ride along on the blocks."""
    itemsize = np.dtype(dtype).itemsize
    pending_x: list[np.ndarray] = []
    pending_w: list[np.ndarray] = []
    pending_rows = 0
    d = -1
    invalid = ragged = 0

    def pack(rows: np.ndarray, weights: np.ndarray | None) -> pa.RecordBatch:
        nonlocal invalid, ragged
        batch = _block_batch(pack_block(rows, weights, dtype), invalid, ragged)
        invalid = ragged = 0
        return batch

    for batch in batches:
        X, valid, d, batch_ragged = list_array_to_matrix(batch.column(0), d if d >= 0 else None)
        ragged += batch_ragged
        if has_weight:
            w = batch.column(1).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
            valid &= np.isfinite(w) & (w >= 0.0)
        invalid += int((~valid).sum()) - batch_ragged
        if not valid.any():  # nothing to keep, and the row length may not be known yet
            continue
        keep = slice(None) if valid.all() else valid
        pending_x.append(X[keep])
        if has_weight:
            pending_w.append(w[keep])
        pending_rows += pending_x[-1].shape[0]
        rows_per_block = max(1, block_bytes // (itemsize * max(d, 1)))
        if pending_rows >= rows_per_block:
            rows = np.concatenate(pending_x)
            weights = np.concatenate(pending_w) if has_weight else None
            full = (pending_rows // rows_per_block) * rows_per_block
            for start in range(0, full, rows_per_block):
                stop = start + rows_per_block
                yield pack(rows[start:stop], None if weights is None else weights[start:stop])
            pending_x = [rows[full:]]
            pending_w = [weights[full:]] if has_weight else []
            pending_rows -= full
    if pending_rows or invalid or ragged:
        rows = np.concatenate(pending_x) if pending_x else np.zeros((0, max(d, 0)))
        yield pack(rows, np.concatenate(pending_w) if pending_w else None)


class _Stored(NamedTuple):
    """One element of the stored RDD: a ``Block`` (the Spark cache holds the data) or a ``_LocalFile`` (an
    executor's local disk does), with the rows dropped while packing it."""

    payload: object
    invalid: int
    ragged: int


def _row_to_stored(has_weight: bool, dtype: str, row) -> _Stored:
    xt = np.frombuffer(row.x, dtype=dtype).reshape(max(row.cols, 0), row.rows)
    w = np.frombuffer(row.w, dtype=np.float64) if has_weight else None
    hashes = np.frombuffer(row.h, dtype=np.uint64)
    origin = np.frombuffer(row.origin, dtype=np.float64) if row.origin else None
    return _Stored(Block(xt, w, hashes, origin), row.invalid, row.ragged)


def _number_blocks(index: int, stored) -> Iterator[tuple[int, _Stored]]:
    """Key each block by a running number (offset by the partition index) for a round-robin partitionBy."""
    for number, element in enumerate(stored):
        yield index + number, element


# --- blocks on the executors' local disks -------------------------------------------------------------------------

MISSING_LOCAL_FILE = "sparkgmm: local block file missing"
_ALIGN = 64


class MissingLocalFile(RuntimeError):
    """A pass ran where a partition's block file is not (another host, or a cleaned directory)."""


@dataclass(frozen=True)
class _LocalFile:
    """A partition's blocks, written once to a file on its executor's local disk and memory-mapped by every pass.
    ``blocks`` holds, per block, ``(x offset, rows, w offset or -1, hashes offset, origin or None)``."""

    path: str
    n_features: int
    dtype: str
    blocks: tuple

    def read(self) -> Iterator[Block]:
        if not os.path.exists(self.path):
            raise MissingLocalFile(f"{MISSING_LOCAL_FILE}: {self.path} on {socket.gethostname()}")
        if not self.blocks:
            return
        data = np.memmap(self.path, dtype=np.uint8, mode="r")
        d = self.n_features
        for x_offset, rows, w_offset, h_offset, origin in self.blocks:
            xt = np.frombuffer(data, dtype=self.dtype, count=d * rows, offset=x_offset).reshape(d, rows)
            w = None if w_offset < 0 else np.frombuffer(data, dtype=np.float64, count=rows, offset=w_offset)
            hashes = np.frombuffer(data, dtype=np.uint64, count=rows, offset=h_offset)
            yield Block(xt, w, hashes, origin)


def _local_dir(store: str) -> str:
    """This executor's directory for the store's files: under Spark's local dirs, which the executor removes when
    it stops (``SPARK_LOCAL_DIRS`` is set for Python workers), else the temporary directory."""
    roots = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")
    root = roots[0] if roots[0] else tempfile.gettempdir()
    return os.path.join(root, f"sparkgmm-{store}")


def _write_local_file(store: str, index: int, stored: Iterator[_Stored]) -> Iterator[_Stored]:
    """Write one partition's blocks to a new file on this executor's local disk; yield where they are."""
    directory = _local_dir(store)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"part-{index:05d}-{uuid.uuid4().hex}.bin")
    layout = []
    invalid = ragged = 0
    d, dtype = 0, "float64"
    with open(path, "wb") as out:
        for element in stored:
            invalid += element.invalid
            ragged += element.ragged
            block = element.payload
            if not block.n_rows:
                continue
            d, dtype = block.xt.shape[0], block.xt.dtype.name
            x_offset = _write_aligned(out, block.xt)
            w_offset = -1 if block.w is None else _write_aligned(out, block.w)
            h_offset = _write_aligned(out, block.hashes)
            layout.append((x_offset, block.n_rows, w_offset, h_offset, block.origin))
    yield _Stored(_LocalFile(path, d, dtype, tuple(layout)), invalid, ragged)


def _write_aligned(out, array: np.ndarray) -> int:
    offset = out.tell()
    out.write(memoryview(np.ascontiguousarray(array)).cast("B"))
    out.write(b"\0" * (-out.tell() % _ALIGN))
    return offset


def _remove_local_files(store: str, _elements) -> Iterator[int]:
    shutil.rmtree(_local_dir(store), ignore_errors=True)
    yield 0


def _blocks_of(element: _Stored) -> Iterator[Block]:
    payload = element.payload
    if isinstance(payload, _LocalFile):
        yield from payload.read()
    else:
        yield payload


class _Description(NamedTuple):
    """What the conversion pass learns about some blocks; ``merge`` is associative. ``largest_task`` is the most
    rows one task of the pass read; ``fingerprint`` is ``passes.content_fingerprint`` of all the rows."""

    rows: int
    weight_sum: float
    invalid: int
    ragged: int
    dims: frozenset
    bytes: int
    blocks: int
    largest_task: int
    fingerprint: int = 0

    def merge(self, other: "_Description") -> "_Description":
        return _Description(self.rows + other.rows, self.weight_sum + other.weight_sum, self.invalid + other.invalid,
                            self.ragged + other.ragged, self.dims | other.dims, self.bytes + other.bytes,
                            self.blocks + other.blocks, max(self.largest_task, other.largest_task),
                            merge_fingerprints(self.fingerprint, other.fingerprint))


def _describe_partition(stored) -> Iterator[_Description]:
    """Rows, weight sum, invalid and ragged counts, the feature counts and the bytes of one task's blocks."""
    total = _Description(0, 0.0, 0, 0, frozenset(), 0, 0, 0)
    for element in stored:
        total = total.merge(_Description(0, 0.0, element.invalid, element.ragged, frozenset(), 0, 0, 0))
        for block in _blocks_of(element):
            n_block = block.n_rows
            if not n_block:
                continue
            weight_sum = float(n_block if block.w is None else block.w.sum())
            size = block.xt.nbytes + block.hashes.nbytes + (0 if block.w is None else block.w.nbytes)
            total = total.merge(_Description(n_block, weight_sum, 0, 0, frozenset([block.xt.shape[0]]), size, 1, 0,
                                             content_fingerprint(block)))
    yield total._replace(largest_task=total.rows)


def _answer_partition(broadcast, n_features: int, stored) -> Iterator[list]:
    """One task's answers to every request of a pass: each block is read once and answers all of them."""
    requests = broadcast.value
    answers = [request.empty(n_features) for request in requests]
    for element in stored:
        for block in _blocks_of(element):
            if block.n_rows:
                for i, request in enumerate(requests):
                    answers[i] = answers[i].merge(request.on_block(block))
    yield answers


def _merge_answers(a: list, b: list) -> list:
    return [x.merge(y) for x, y in zip(a, b)]


# Rebalance the blocks when one task of a pass would read more than this times its fair share of the rows.
MAX_TASK_SKEW = 1.25
# At most this many stored partitions per core: enough for a pass to follow cores that join later.
MAX_PARTITIONS_PER_CORE = 4


class FeatureBlocks:
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
    ):
        if dtype not in BLOCK_DTYPES:
            raise InputError(f"dtype={dtype!r} must be one of {', '.join(BLOCK_DTYPES)}")
        if block_storage not in BLOCK_STORAGES:
            raise InputError(f"blockStorage={block_storage!r} must be one of {', '.join(BLOCK_STORAGES)}")
        started = time.perf_counter()
        self.spark = df.sparkSession
        self._sc = self.spark.sparkContext
        self.aggregation_depth = aggregation_depth
        self.dtype = dtype
        self.block_storage = block_storage
        self._storage_level = storage_level
        self._store_id = uuid.uuid4().hex
        columns = [features.alias(_FEATURES)]
        has_weight = bool(weight_col)
        if has_weight:
            columns.append(weight_column(df, weight_col).alias(_WEIGHT))
        selected = df.select(*columns)
        # Each input partition costs the conversion two Python evaluations (~0.1 s) and every pass one more file to
        # open and blocks no larger than the partition: from 2,000 partitions a fit of 1M rows took 208 s against
        # 11 s from 10 (scripts/driver_memory_benchmark.py; 32 s once merged). More partitions than
        # MAX_PARTITIONS_PER_CORE per core are merged (no shuffle) before they are packed.
        limit = MAX_PARTITIONS_PER_CORE * self._parallelism()
        if selected.rdd.getNumPartitions() > limit:
            selected = selected.coalesce(limit)
        packed = selected.mapInArrow(
            partial(_pack_partition, has_weight=has_weight, block_bytes=block_bytes or BLOCK_BYTES, dtype=dtype),
            _PACKED_SCHEMA,
        )
        self._blocks: RDD = packed.rdd.map(partial(_row_to_stored, has_weight, dtype))
        self.rdd: RDD | None = None
        # Fewer partitions than cores (one small Parquet file, say) would leave cores idle in every pass.
        dealt = self._blocks.getNumPartitions() < self._parallelism()
        if dealt:
            self._blocks = self._dealt(self._blocks)
        self.rebalanced = False
        described = self._store("sparkgmm: convert features to blocks")
        parallelism = self._parallelism()
        skewed = described.largest_task > MAX_TASK_SKEW * described.rows / parallelism
        if skewed and not dealt and described.blocks >= 2 * parallelism:
            self.unpersist()
            self._blocks = self._dealt(self._blocks)
            self.rebalanced = True
            described = self._store("sparkgmm: convert features to blocks, balanced by rows")
        self.seconds = time.perf_counter() - started
        self.n_rows = described.rows
        self.weight_sum = described.weight_sum
        self.invalid_rows = described.invalid
        self.ragged_rows = described.ragged
        self.block_bytes = described.bytes
        self.fingerprint = described.fingerprint
        self.largest_task_rows = described.largest_task
        dims = sorted(described.dims)
        self.n_features = dims[0] if len(dims) == 1 else -1
        if len(dims) > 1:  # each partition was consistent, but they disagree with each other
            self.ragged_rows = max(self.ragged_rows, 1)

    def _parallelism(self) -> int:
        return max(1, self._sc.defaultParallelism)

    def _dealt(self, blocks: RDD) -> RDD:
        """The blocks dealt out round-robin over one partition per core: every partition gets as many full blocks."""
        return blocks.mapPartitionsWithIndex(_number_blocks).partitionBy(self._parallelism()).values()

    def _store(self, description: str) -> _Description:
        """Persist the blocks where ``block_storage`` says, in one job that also describes them."""
        if self.block_storage == "local-files":
            stored = self._blocks.mapPartitionsWithIndex(partial(_write_local_file, self._store_id))
        else:
            stored = self._blocks
        self.rdd = stored.persist(self._storage_level)
        self._sc.setJobDescription(description)
        try:
            return self.loop_rdd.mapPartitions(_describe_partition).treeReduce(
                _Description.merge, depth=self.aggregation_depth
            )
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

    def task_rows(self) -> list[int]:
        """How many rows each task of a pass started now reads (one number per task: bounded by the cores)."""
        self._sc.setJobDescription("sparkgmm: rows per task")
        return self.loop_rdd.mapPartitions(_describe_partition).map(operator.attrgetter("rows")).collect()

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
            return self.loop_rdd.mapPartitions(
                partial(_answer_partition, broadcast, self.n_features)
            ).treeReduce(_merge_answers, depth=self.aggregation_depth)
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
                    partial(_remove_local_files, self._store_id)
                ).count()
            except Exception as error:  # best effort: a stopped context has nothing left to clean
                logger.warning("could not remove sparkgmm's local block files: %s", error)
        self._sc.setJobDescription(None)

    def __enter__(self) -> "FeatureBlocks":
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()
