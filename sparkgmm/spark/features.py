"""The features of a DataFrame: which columns a fit or a scoring reads (``features_column``, ``weight_column``,
``selected_features``, on the driver) and how a task reads them (``list_array_to_matrix``: an Arrow list column as a
NumPy matrix and its valid rows). Shared by the engines (``sparkgmm.spark.engine``), scoring and the jobs."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import InputError

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
        kind = fields[weight_col].simpleString()
        raise InputError(f"weight column {weight_col!r} has type {kind}; it must be numeric")
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


def selected_features(df: DataFrame, features: Column, weight_col: str | None) -> DataFrame:
    """The columns a conversion reads: the features (array<double>) and, with ``weight_col``, the weight (double)."""
    columns = [features.alias(FEATURES)]
    if weight_col:
        columns.append(weight_column(df, weight_col).alias(WEIGHT))
    return df.select(*columns)
