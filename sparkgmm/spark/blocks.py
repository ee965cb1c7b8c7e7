"""From a DataFrame to persisted NumPy blocks, and one E-step over them as a Spark job.

The features are converted once: Spark hands each partition to Python as Arrow record batches (``mapInArrow``), a
task packs them into columnar float64 blocks (features x rows) of about BLOCK_BYTES, and the RDD of blocks is
persisted. Every EM iteration
then broadcasts the parameters, maps each partition of blocks to one ``SufficientStats`` and tree-reduces them:
no per-row Python objects, no accumulators.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Iterator, NamedTuple

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
from ..mixture import Mixture
from ..stats import SufficientStats, accumulate, merge_stats

# Target size of one cached block. Small blocks let the JVM stream the next block to the Python worker while it
# computes on the current one: at 1M x 8 x 8, 2 MiB blocks gave ~0.24 s per iteration against ~0.30 s with 32 MiB
# ones (1 to 4 MiB were within noise of each other).
BLOCK_BYTES = 2 << 20
NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
# Partition i's tasks draw from the random stream [seed, i]; the driver's own draws use a stream no partition has.
_DRIVER_STREAM = 2**32 - 1
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


class _PartitionSummary(NamedTuple):
    rows: int
    weight_sum: float
    invalid: int
    ragged: int
    dims: list[int]
    sample: np.ndarray | None  # (rows, d), in random order: any prefix is a uniform sample
    sample_weight: np.ndarray | None


def _describe_partition(seed: int, sample_size: int, index: int, blocks) -> Iterator[_PartitionSummary]:
    """Rows, weight sum, invalid counts, feature counts and a uniform sample (in random order) of one partition.

    The sample streams: every row gets a uniform random key and the ``sample_size`` smallest keys are kept, so a
    partition is never held in memory whole, and any prefix of the key-ordered sample is itself a uniform sample.
    """
    rng = np.random.default_rng([seed, index])
    rows = weight_sum = invalid = ragged = 0
    dims: set[int] = set()
    keys = np.empty(0)
    kept_x: np.ndarray | None = None
    kept_w: np.ndarray | None = None
    for packed, block_invalid, block_ragged in blocks:
        invalid += block_invalid
        ragged += block_ragged
        n_block = packed.xt.shape[1]
        if not n_block:
            continue
        dims.add(packed.xt.shape[0])
        rows += n_block
        weight_sum += float(n_block if packed.w is None else packed.w.sum())
        if len(dims) > 1:
            continue
        block_x = packed.xt.T
        keys = np.concatenate([keys, rng.random(n_block)])
        kept_x = block_x if kept_x is None else np.concatenate([kept_x, block_x])
        if packed.w is not None:
            kept_w = packed.w if kept_w is None else np.concatenate([kept_w, packed.w])
        if keys.shape[0] > sample_size:
            keep = np.argpartition(keys, sample_size - 1)[:sample_size]
            keys, kept_x = keys[keep], kept_x[keep]
            kept_w = None if kept_w is None else kept_w[keep]
    if len(dims) != 1:  # no rows, or rows of different lengths: the driver reports it, no sample is needed
        kept_x = kept_w = None
    elif kept_x is not None:
        order = np.argsort(keys)
        kept_x = np.ascontiguousarray(kept_x[order])
        kept_w = None if kept_w is None else kept_w[order]
    yield _PartitionSummary(rows, weight_sum, invalid, ragged, sorted(dims), kept_x, kept_w)


def _partition_stats(broadcast, count_hard: bool, blocks) -> Iterator[SufficientStats]:
    weights, means, prec_chol, covariance_type = broadcast.value
    total = SufficientStats.zeros(means.shape[0], means.shape[1], covariance_type)
    for packed, _invalid, _ragged in blocks:
        if packed.xt.shape[1]:
            total = total.merge(accumulate(packed.xt, packed.w, weights, means, prec_chol, covariance_type, count_hard))
    yield total


class FeatureBlocks:
    """The training data as persisted NumPy blocks, with what one pass over them learned.

    Use as a context manager, or call ``unpersist()``: the cached blocks are released either way.
    """

    def __init__(
        self,
        df: DataFrame,
        features: Column,
        weight_col: str | None,
        storage_level: StorageLevel,
        seed: int,
        sample_size: int,
        block_bytes: int | None = None,
    ):
        spark = df.sparkSession
        self._sc = spark.sparkContext
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
        self._sc.setJobDescription("sparkgmm: convert features to cached blocks")
        try:
            described = self.rdd.mapPartitionsWithIndex(partial(_describe_partition, seed, sample_size)).collect()
        except BaseException:
            self.unpersist()
            raise
        self.n_rows = sum(p.rows for p in described)
        self.weight_sum = sum(p.weight_sum for p in described)
        self.invalid_rows = sum(p.invalid for p in described)
        self.ragged_rows = sum(p.ragged for p in described)
        dims = sorted({d for p in described for d in p.dims})
        self.n_features = dims[0] if len(dims) == 1 else -1
        self.sample = self.sample_weight = None
        if len(dims) > 1:  # each partition was consistent, but they disagree with each other
            self.ragged_rows = max(self.ragged_rows, 1)
        else:
            self.sample, self.sample_weight = self._combine_samples(described, seed, sample_size)
        # More partitions than cores would cost a wave of task launches per iteration for nothing: read the cached
        # partitions in one task per core.
        partitions = self.rdd.getNumPartitions()
        self.loop_rdd: RDD = self.rdd.coalesce(parallelism) if partitions > parallelism else self.rdd

    @staticmethod
    def _combine_samples(
        described: list[_PartitionSummary], seed: int, sample_size: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A uniform sample of all rows: split the total over partitions by a multivariate hypergeometric draw."""
        usable = [p for p in described if p.sample is not None]
        if not usable:
            return None, None
        counts = np.array([p.rows for p in usable])
        total = int(min(sample_size, counts.sum()))
        rng = np.random.default_rng([seed, _DRIVER_STREAM])
        take = rng.multivariate_hypergeometric(counts, total)
        sample = np.concatenate([p.sample[:t] for p, t in zip(usable, take)])
        has_weights = usable[0].sample_weight is not None
        weights = np.concatenate([p.sample_weight[:t] for p, t in zip(usable, take)]) if has_weights else None
        return sample, weights

    def expectation(self, aggregation_depth: int):
        """An ``expectation`` for ``run_em``: broadcast the parameters, one named Spark job, tree-reduce the stats."""

        def run(mixture: Mixture, description: str, count_hard: bool) -> SufficientStats:
            params = (mixture.weights, mixture.means, mixture.precisions_cholesky, mixture.covariance_type)
            broadcast = self._sc.broadcast(params)
            self._sc.setJobDescription(f"sparkgmm: {description}")
            try:
                return self.loop_rdd.mapPartitions(partial(_partition_stats, broadcast, count_hard)).treeReduce(
                    merge_stats, depth=aggregation_depth
                )
            finally:
                broadcast.destroy()

        return run

    def unpersist(self) -> None:
        self.rdd.unpersist()
        self._sc.setJobDescription(None)

    def __enter__(self) -> "FeatureBlocks":
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()
