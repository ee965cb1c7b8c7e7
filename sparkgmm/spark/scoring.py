"""Scoring a DataFrame with a fitted ``Mixture``: prediction, probability and log-density added to every row.

The rows go through one ``mapInArrow`` task: the columns that stay pass through untouched and the scores are
appended, in the same Arrow batch. Every column crosses to Python and back, and still, at 10M x 16 (k=8), this was
~2x faster than an Arrow UDF over ``array(columns)`` that returned a struct (scripts/predict_benchmark.py): Spark
builds no array per row, queues no input rows to join the results back to, and unpacks no struct; the scores are
computed column-major (``Mixture.log_density_and_proba_t``). A probability Vector is built in the task too (the
VectorUDT's own struct), not by ``array_to_vector`` per row. A DataFrame with a column Arrow cannot carry (Spark's
calendar intervals, say) takes the Arrow UDF route, which leaves the other columns in the JVM.

Where ``transform(df).write.parquet`` spends its time at 10M x 16 (k=8), warm ``local[2]`` session, best of 2
(2026-12-05): reading the input 1.7 s; handing every column to Python and back through an identity ``mapInArrow``
7.3 s (5.6 s of it the round trip); the scores 3.3 s more (10.6 s); Spark's writer 15.2 s (25.7 s), against 7.4 s
for the input columns alone: 6.3 s of it the probability Vectors, which Spark turns from Arrow into nested rows and
writes value by value, as it does MLlib's. A read-and-write of the input took 9.1 s. The same 16 columns through an
Arrow UDF (features to Python, a struct back, the rows queued in the JVM) took 30 s instead of 25. This is why the
predict job, which may write its own files, writes them in the scoring task (``local_parquet``).

Rows whose features are null, of the wrong length or not finite get null outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.functions import arrow_udf

from ..mixture import Mixture
from .engine.tasks import settle_python_worker
from .features import features_column, list_array_to_matrix

_SCORES = "__sparkgmm_scores"
_SCORES_TYPE = "struct<prediction:int, probability:array<double>, log_density:double>"
_HIDDEN = "__sparkgmm_in_"  # columns read only to be scored: not in the output
# The Arrow struct of a dense pyspark.ml Vector (VectorUDT.sqlType(): type 1 = dense, no size, no indices).
_VECTOR_TYPE = pa.struct([pa.field("type", pa.int8(), nullable=False), pa.field("size", pa.int32()),
                          pa.field("indices", pa.list_(pa.field("element", pa.int32(), nullable=False))),
                          pa.field("values", pa.list_(pa.field("element", pa.float64(), nullable=False)))])
# Types Spark passes through Arrow unchanged (4.x): anything else in the DataFrame sends it the UDF route.
_ARROW_ATOMIC = (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType,
                 T.DecimalType, T.StringType, T.BinaryType, T.DateType, T.TimestampType, T.TimestampNTZType,
                 T.NullType, T.DayTimeIntervalType, T.YearMonthIntervalType)


@dataclass(frozen=True)
class Outputs:
    """What the scoring task appends: the output names, and how the probability and the outlier flag are built."""

    prediction: str
    probability: str
    log_density: str
    probability_as_vector: bool
    outlier: str | None
    outlier_threshold: float | None

    def kept_by_default(self, df: DataFrame) -> list[str]:
        """Every column of ``df`` but those of the output names."""
        names = {f.name for f in self.schema()}
        return [name for name in df.columns if name not in names]

    def schema(self) -> list[T.StructField]:
        fields = [T.StructField(self.prediction, T.IntegerType()),
                  T.StructField(self.probability,
                                VectorUDT() if self.probability_as_vector else T.ArrayType(T.DoubleType())),
                  T.StructField(self.log_density, T.DoubleType())]
        if self.outlier:
            fields.append(T.StructField(self.outlier, T.BooleanType()))
        return fields


def score_arrays(mixture: Mixture, xt: np.ndarray, valid: np.ndarray, outputs: Outputs) -> list[pa.Array]:
    """The output columns for columnar rows ``xt`` (d, n), nulls where not ``valid`` (those columns of ``xt`` are
    overwritten with zeros first)."""
    invalid = ~valid
    if invalid.any():
        xt[:, invalid] = 0.0
    n, k = xt.shape[1], mixture.n_components
    log_density, proba_t = mixture.log_density_and_proba_t(xt)
    has_invalid = bool(invalid.any())
    mask = invalid if has_invalid else None  # pa.array of numpy values wants a numpy mask
    struct_mask = pa.array(invalid) if has_invalid else None  # Arrow's constructors of nested arrays, an Arrow one
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    values = pa.array(np.ascontiguousarray(proba_t.T).ravel())
    if outputs.probability_as_vector:
        probability = pa.StructArray.from_arrays(
            [pa.array(np.ones(n, np.int8)), pa.nulls(n, pa.int32()), pa.nulls(n, _VECTOR_TYPE.field("indices").type),
             pa.ListArray.from_arrays(offsets, values, type=_VECTOR_TYPE.field("values").type)],
            fields=list(_VECTOR_TYPE), mask=struct_mask)
    else:
        probability = pa.ListArray.from_arrays(offsets, values, mask=struct_mask)
    columns = [pa.array(proba_t.argmax(axis=0).astype(np.int32), mask=mask), probability,
               pa.array(log_density, mask=mask)]
    if outputs.outlier:
        columns.append(pa.array(log_density < outputs.outlier_threshold, mask=mask))
    return columns


def _columnar(columns: list[pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Double columns (nulls allowed) as ``(xt (d, n), valid)``: valid rows have no null and no non-finite value."""
    xt = np.empty((len(columns), n))
    for j, column in enumerate(columns):
        xt[j] = column.to_numpy(zero_copy_only=False)  # a null becomes NaN
    return xt, np.asarray(np.isfinite(xt).all(axis=0))


def _score_task(mixture: Mixture, kept: int, features: tuple[int, ...], is_list: bool, names: tuple[str, ...],
                outputs: Outputs, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: the first ``kept`` columns of each batch pass through, the scores of the rows' features (the
    columns at ``features``: numeric, or one list<double>) follow."""
    settle_python_worker()
    for batch in batches:
        if is_list:
            X, valid, _, _ = list_array_to_matrix(batch.column(features[0]), mixture.n_features)
            xt = np.ascontiguousarray(X.T)
        else:
            xt, valid = _columnar([batch.column(j) for j in features], batch.num_rows)
        scores = score_arrays(mixture, xt, valid, outputs)
        yield pa.RecordBatch.from_arrays([batch.column(j) for j in range(kept)] + scores, names=list(names))


def _arrow_friendly(data_type: T.DataType) -> bool:
    if isinstance(data_type, VectorUDT):
        return True
    if isinstance(data_type, T.ArrayType):
        return _arrow_friendly(data_type.elementType)
    if isinstance(data_type, T.MapType):
        return _arrow_friendly(data_type.keyType) and _arrow_friendly(data_type.valueType)
    if isinstance(data_type, T.StructType):
        return all(_arrow_friendly(f.dataType) for f in data_type.fields)
    return isinstance(data_type, _ARROW_ATOMIC)


@dataclass(frozen=True)
class ScoringPlan:
    """How ``score_dataframe`` scores through ``mapInArrow``: ``selected.mapInArrow(task, schema)``, where ``task``
    maps Arrow batches of ``selected`` to batches of ``schema`` (the kept columns, then the outputs)."""

    selected: DataFrame
    task: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
    schema: T.StructType


def scoring_plan(
    df: DataFrame, features_col: str, input_cols: list[str] | None, mixture: Mixture, outputs: Outputs,
    keep: list[str] | None = None,
) -> ScoringPlan | None:
    """The ``mapInArrow`` scoring of ``df`` (see ``score_dataframe``), or None when a kept column's type cannot
    travel through Arrow (or names repeat), and the Arrow UDF route must serve."""
    if keep is None:
        keep = outputs.kept_by_default(df)
    fields = {f.name: f for f in df.schema.fields}
    if len(fields) < len(df.columns) or not all(_arrow_friendly(fields[name].dataType) for name in keep):
        return None
    selected = [F.col(f"`{name}`") for name in keep]
    wanted: T.DataType
    if input_cols:
        sources, wanted, is_list = list(input_cols), T.DoubleType(), False
    else:
        sources, wanted, is_list = [features_col], T.ArrayType(T.DoubleType()), True
    positions = []
    for j, name in enumerate(sources):
        if name in keep and _same_type(fields[name].dataType, wanted):
            positions.append(keep.index(name))
            continue
        if is_list:
            source = fields[name].dataType
            column = (vector_to_array(F.col(f"`{name}`"), "float64") if isinstance(source, VectorUDT)
                      else F.col(f"`{name}`").cast("array<double>"))
        else:
            column = F.col(f"`{name}`").cast("double")
        positions.append(len(selected))
        selected.append(column.alias(f"{_HIDDEN}{j}"))
    schema = T.StructType([fields[name] for name in keep] + outputs.schema())
    task = partial(_score_task, mixture, len(keep), tuple(positions), is_list, tuple(schema.names), outputs)
    return ScoringPlan(df.select(*selected), task, schema)


def score_dataframe(
    df: DataFrame, features_col: str, input_cols: list[str] | None, mixture: Mixture, prediction_col: str,
    probability_col: str, log_density_col: str, probability_as_vector: bool = True, outlier_col: str | None = None,
    outlier_threshold: float | None = None, keep: list[str] | None = None,
) -> DataFrame:
    """The columns ``keep`` of ``df`` (default: all but the output names) with three columns added: int prediction,
    probability (a Vector, or array<double> when ``probability_as_vector`` is false), double log-density; and with
    ``outlier_col`` a fourth, boolean: log-density below ``outlier_threshold`` (null where the log-density is). The
    features are ``input_cols`` (numeric columns) or else ``features_col`` (a Vector or array column)."""
    features = features_column(df, features_col, input_cols)  # checks the columns; the UDF route's input
    outputs = Outputs(prediction_col, probability_col, log_density_col, probability_as_vector, outlier_col,
                      outlier_threshold)
    if keep is None:
        keep = outputs.kept_by_default(df)
    plan = scoring_plan(df, features_col, input_cols, mixture, outputs, keep)
    if plan is None:
        return _score_with_udf(df, features, mixture, outputs, keep)
    return plan.selected.mapInArrow(plan.task, plan.schema)


def _same_type(given: T.DataType, wanted: T.DataType) -> bool:
    if isinstance(wanted, T.ArrayType):
        return isinstance(given, T.ArrayType) and isinstance(given.elementType, T.DoubleType)
    return isinstance(given, type(wanted))


def _score_with_udf(df: DataFrame, features, mixture: Mixture, outputs: Outputs, keep: list[str]) -> DataFrame:
    """The Arrow UDF route: only the features go to Python; a struct of the scores comes back."""

    # pyspark's stub declares only the forms with an explicit functionType, not this one, which takes it from the
    # function's type hints (pa.Array -> pa.Array: a scalar Arrow UDF), as its documentation recommends.
    @arrow_udf(_SCORES_TYPE)  # type: ignore[call-overload]
    def score(batch: pa.Array) -> pa.Array:
        settle_python_worker()
        X, valid, _, _ = list_array_to_matrix(batch, mixture.n_features)
        array_outputs = Outputs("prediction", "probability", "log_density", False, None, None)
        columns = score_arrays(mixture, np.ascontiguousarray(X.T), valid, array_outputs)
        return pa.StructArray.from_arrays(columns, names=["prediction", "probability", "log_density"])

    kept = [F.col(f"`{name}`") for name in keep]
    scored = df.select(*kept, score(features).alias(_SCORES))
    probability = F.col(f"{_SCORES}.probability")
    if outputs.probability_as_vector:
        # array_to_vector fails on null arrays, so unusable rows skip it.
        probability = F.when(probability.isNotNull(), array_to_vector(probability))
    log_density = F.col(f"{_SCORES}.log_density")
    outlier = []
    if outputs.outlier:
        if outputs.outlier_threshold is None:
            raise ValueError(f"the outlier column {outputs.outlier!r} needs a threshold")
        outlier.append((log_density < F.lit(float(outputs.outlier_threshold))).alias(outputs.outlier))
    return scored.select(
        *kept,
        F.col(f"{_SCORES}.prediction").alias(outputs.prediction),
        probability.alias(outputs.probability),
        log_density.alias(outputs.log_density),
        *outlier,
    )
