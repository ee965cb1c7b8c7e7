"""From a DataFrame to persisted NumPy blocks, and passes over them as Spark jobs.

The features are converted once: Spark hands each partition to Python as Arrow record batches (``mapInArrow``), a
task packs them into columnar float64 blocks (features x rows) of about BLOCK_BYTES, and the RDD of blocks is
persisted. Every pass
then broadcasts what it is asked (``sparkgmm.passes``: E-steps, k-means|| rounds, samples), maps each partition of
blocks to one answer per request and tree-reduces them: no per-row Python objects, no accumulators.
"""

from __future__ import annotations

import time
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

from ..errors import InputError

# Target size of one cached block. Small blocks let the JVM stream the next block to the Python worker while it
# computes on the current one: at 1M x 8 x 8, 2 MiB blocks gave ~0.24 s per iteration against ~0.30 s with 32 MiB
# ones (1 to 4 MiB were within noise of each other).
BLOCK_BYTES = 2 << 20
NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
_FEATURES = "__sparkgmm_features"
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
    valid = lengths == d
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


@dataclass(frozen=True)
class _Packed:
    """One cached block, columnar: ``xt`` (d, n) float64 holds the rows as columns, weights ``w`` (n,) or None;
    invalid rows already dropped."""

    xt: np.ndarray
    w: np.ndarray | None


def _block_batch(rows: np.ndarray, weights: np.ndarray | None, d: int, invalid: int, ragged: int) -> pa.RecordBatch:
    """One output row of ``_pack_partition``: a block's rows stored columnar (features x rows) as raw bytes."""
    return pa.RecordBatch.from_pydict(
        {
            "rows": pa.array([rows.shape[0]], pa.int64()),
            "cols": pa.array([d], pa.int32()),
            "x": pa.array([np.ascontiguousarray(rows.T).tobytes()], pa.binary()),
            "w": pa.array([b"" if weights is None else weights.tobytes()], pa.binary()),
            "invalid": pa.array([invalid], pa.int64()),
            "ragged": pa.array([ragged], pa.int64()),
        }
    )


def _pack_partition(batches: Iterator[pa.RecordBatch], has_weight: bool, block_bytes: int) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: pack a partition's valid rows into blocks of about ``block_bytes``, one output row each.

    The counts of invalid (null, non-finite, bad weight) and ragged rows ride along on the blocks.
    """
    pending_x: list[np.ndarray] = []
    pending_w: list[np.ndarray] = []
    pending_rows = 0
    d = -1
    invalid = ragged = 0
    for batch in batches:
        X, valid, d, batch_ragged = list_array_to_matrix(batch.column(0), d if d >= 0 else None)
        ragged += batch_ragged
        if has_weight:
            w = batch.column(1).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
            valid &= np.isfinite(w) & (w >= 0.0)
        invalid += int((~valid).sum()) - batch_ragged
        keep = slice(None) if valid.all() else valid
        pending_x.append(X[keep])
        if has_weight:
            pending_w.append(w[keep])
        pending_rows += pending_x[-1].shape[0]
        rows_per_block = max(1, block_bytes // (8 * max(d, 1)))
        if pending_rows >= rows_per_block:
            rows = np.concatenate(pending_x)
            weights = np.concatenate(pending_w) if has_weight else None
            full = (pending_rows // rows_per_block) * rows_per_block
            for start in range(0, full, rows_per_block):
                stop = start + rows_per_block
                yield _block_batch(rows[start:stop], None if weights is None else weights[start:stop], d, invalid, ragged)
                invalid = ragged = 0
            pending_x = [rows[full:]]
            pending_w = [weights[full:]] if has_weight else []
            pending_rows -= full
    if pending_rows or invalid or ragged:
        rows = np.concatenate(pending_x) if pending_x else np.zeros((0, max(d, 0)))
        yield _block_batch(rows, np.concatenate(pending_w) if pending_w else None, d, invalid, ragged)


def _row_to_block(has_weight: bool, row) -> tuple[_Packed, int, int]:
    xt = np.frombuffer(row.x, dtype=np.float64).reshape(max(row.cols, 0), row.rows)
    w = np.frombuffer(row.w, dtype=np.float64) if has_weight else None
    return _Packed(xt, w), row.invalid, row.ragged


def _number_blocks(index: int, blocks) -> Iterator[tuple[int, tuple]]:
    """Key each block by a running number (offset by the partition index) for a round-robin partitionBy."""
    for number, block in enumerate(blocks):
        yield index + number, block


class _Description(NamedTuple):
    """What the conversion pass learns about some blocks; ``merge`` is associative."""

    rows: int
    weight_sum: float
    invalid: int
    ragged: int
    dims: frozenset

    def merge(self, other: "_Description") -> "_Description":
        return _Description(self.rows + other.rows, self.weight_sum + other.weight_sum, self.invalid + other.invalid,
                            self.ragged + other.ragged, self.dims | other.dims)


def _describe_partition(blocks) -> Iterator[_Description]:
    """Rows, weight sum, invalid and ragged counts and the feature counts seen in one partition's blocks."""
    total = _Description(0, 0.0, 0, 0, frozenset())
    for packed, invalid, ragged in blocks:
        n_block = packed.xt.shape[1]
        weight_sum = float(n_block if packed.w is None else packed.w.sum())
        dims = frozenset([packed.xt.shape[0]]) if n_block else frozenset()
        total = total.merge(_Description(n_block, weight_sum, invalid, ragged, dims))
    yield total


def _answer_partition(broadcast, n_features: int, index: int, blocks) -> Iterator[list]:
    """One partition's answers to every request of a pass: each block is read once and answers all of them."""
    requests = broadcast.value
    answers = [request.empty(n_features) for request in requests]
    for number, (packed, _invalid, _ragged) in enumerate(blocks):
        if packed.xt.shape[1]:
            for i, request in enumerate(requests):
                answers[i] = answers[i].merge(request.on_block(packed.xt, packed.w, (index, number)))
    yield answers


def _merge_answers(a: list, b: list) -> list:
    return [x.merge(y) for x, y in zip(a, b)]


class FeatureBlocks:
    """The training data as persisted NumPy blocks, with what the conversion pass learned about them.

    Use as a context manager, or call ``unpersist()``: the cached blocks are released either way. Every pass runs
    over ``loop_rdd``, one task per core, and returns results bounded by what it was asked (never by the rows or the
    input's partitions) through a tree-reduce.
    """

    def __init__(
        self,
        df: DataFrame,
        features: Column,
        weight_col: str | None,
        storage_level: StorageLevel,
        aggregation_depth: int = 2,
        block_bytes: int | None = None,
    ):
        started = time.perf_counter()
        spark = df.sparkSession
        self._sc = spark.sparkContext
        self.aggregation_depth = aggregation_depth
        columns = [features.alias(_FEATURES)]
        has_weight = bool(weight_col)
        if has_weight:
            columns.append(weight_column(df, weight_col).alias(_WEIGHT))
        schema = "rows long, cols int, x binary, w binary, invalid long, ragged long"
        packed = df.select(*columns).mapInArrow(
            partial(_pack_partition, has_weight=has_weight, block_bytes=block_bytes or BLOCK_BYTES), schema
        )
        blocks = packed.rdd.map(partial(_row_to_block, has_weight))
        parallelism = max(1, self._sc.defaultParallelism)
        if blocks.getNumPartitions() < parallelism:
            # Fewer partitions than cores (one small Parquet file, say) would leave cores idle in every iteration:
            # deal the blocks out round-robin once, here, so that each core gets a share.
            blocks = blocks.mapPartitionsWithIndex(_number_blocks).partitionBy(parallelism).values()
        self.rdd: RDD = blocks.persist(storage_level)
        # More partitions than cores would cost a wave of task launches per pass for nothing: read the cached
        # partitions in one task per core.
        partitions = self.rdd.getNumPartitions()
        self.loop_rdd: RDD = self.rdd.coalesce(parallelism) if partitions > parallelism else self.rdd
        self._sc.setJobDescription("sparkgmm: convert features to cached blocks")
        try:
            described = self.loop_rdd.mapPartitions(_describe_partition).treeReduce(
                _Description.merge, depth=aggregation_depth
            )
        except BaseException:
            self.unpersist()
            raise
        self.seconds = time.perf_counter() - started
        self.n_rows = described.rows
        self.weight_sum = described.weight_sum
        self.invalid_rows = described.invalid
        self.ragged_rows = described.ragged
        dims = sorted(described.dims)
        self.n_features = dims[0] if len(dims) == 1 else -1
        if len(dims) > 1:  # each partition was consistent, but they disagree with each other
            self.ragged_rows = max(self.ragged_rows, 1)

    def run_pass(self, requests: Sequence, description: str) -> list:
        """One pass for ``sparkgmm.em``: broadcast the requests, one named Spark job, tree-reduce the answers."""
        broadcast = self._sc.broadcast(list(requests))
        self._sc.setJobDescription(f"sparkgmm: {description}")
        try:
            answers = self.loop_rdd.mapPartitionsWithIndex(
                partial(_answer_partition, broadcast, self.n_features)
            ).treeReduce(_merge_answers, depth=self.aggregation_depth)
        finally:
            broadcast.destroy()
        return answers

    def unpersist(self) -> None:
        self.rdd.unpersist()
        self._sc.setJobDescription(None)

    def __enter__(self) -> "FeatureBlocks":
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()
