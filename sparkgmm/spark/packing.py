"""From a DataFrame's features to packed blocks: the columns read, Arrow lists as NumPy matrices, and the
``mapInArrow`` task that packs a partition's valid rows into columnar blocks (``sparkgmm.passes.Block``) of about
BLOCK_BYTES, one output row each. Shared by both engines (``blocks.FeatureBlocks``, ``frames.FrameBlocks``) and by
scoring."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import InputError
from ..passes import Block, pack_block

# Target size of one cached block. Small blocks let the JVM stream the next block to the Python worker while it
# computes on the current one: at 1M x 8 x 8, 2 MiB blocks gave ~0.24 s per iteration against ~0.30 s with 32 MiB
# ones (1 to 4 MiB were within noise of each other).
BLOCK_BYTES = 2 << 20
NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
FEATURES = "__sparkgmm_features"
WEIGHT = "__sparkgmm_weight"


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
        raise InputError(
            f"weight column {weight_col!r} has type {fields[weight_col].simpleString()}; it must be numeric")
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
    """One output row of ``pack_partition``: a packed block as raw bytes, with the counts of dropped rows."""
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


PACKED_SCHEMA = "rows long, cols int, x binary, w binary, h binary, origin binary, invalid long, ragged long"


def pack_blocks(batches: Iterator[pa.RecordBatch], has_weight: bool, block_bytes: int,
                dtype: str) -> Iterator[tuple[Block, int, int]]:
    """A partition's valid rows packed into ``dtype`` blocks of about ``block_bytes``: ``(block, invalid, ragged)``,
    where the counts of invalid (null, non-finite, bad weight) and ragged rows ride along on the blocks (a last
    block may hold no rows, only counts)."""
    itemsize = np.dtype(dtype).itemsize
    pending_x: list[np.ndarray] = []
    pending_w: list[np.ndarray] = []
    pending_rows = 0
    d = -1
    invalid = ragged = 0

    def pack(rows: np.ndarray, weights: np.ndarray | None) -> tuple[Block, int, int]:
        nonlocal invalid, ragged
        packed = pack_block(rows, weights, dtype), invalid, ragged
        invalid = ragged = 0
        return packed

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


def pack_partition(batches: Iterator[pa.RecordBatch], has_weight: bool, block_bytes: int,
                   dtype: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: ``pack_blocks``, one output row (``PACKED_SCHEMA``) per block."""
    for block, invalid, ragged in pack_blocks(batches, has_weight, block_bytes, dtype):
        yield _block_batch(block, invalid, ragged)


def selected_features(df: DataFrame, features: Column, weight_col: str | None) -> DataFrame:
    """The columns a conversion reads: the features (array<double>) and, with ``weight_col``, the weight (double)."""
    columns = [features.alias(FEATURES)]
    if weight_col:
        columns.append(weight_column(df, weight_col).alias(WEIGHT))
    return df.select(*columns)


def block_of(rows: int, cols: int, x, w, h, origin, has_weight: bool, dtype: str) -> Block:
    """The ``Block`` of one packed row (``PACKED_SCHEMA``); ``x``, ``w``, ``h`` and ``origin`` are bytes or any buffer
    (an Arrow value's, read without a copy)."""
    xt = np.frombuffer(x, dtype=dtype).reshape(max(cols, 0), rows)
    weights = np.frombuffer(w, dtype=np.float64) if has_weight else None
    hashes = np.frombuffer(h, dtype=np.uint64)
    origin = np.frombuffer(origin, dtype=np.float64) if len(origin) else None
    return Block(xt, weights, hashes, origin)
