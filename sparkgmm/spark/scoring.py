"""Scoring a DataFrame with a fitted ``Mixture``: an Arrow UDF adds prediction, probability and log-density.

The UDF works on Arrow batches of rows (no per-row Python), keeps every input column, and gives null outputs for rows
whose features are null, of the wrong length, or not finite.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.ml.functions import array_to_vector
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.functions import arrow_udf

from ..mixture import Mixture
from .blocks import list_array_to_matrix

_SCORES = "__sparkgmm_scores"
_SCORES_TYPE = "struct<prediction:int, probability:array<double>, log_density:double>"


def score_arrow(mixture: Mixture, features: pa.Array) -> pa.StructArray:
    """Score one Arrow list<double> array of feature rows; invalid rows get nulls."""
    X, valid, _, _ = list_array_to_matrix(features, mixture.n_features)
    log_density, proba = mixture.log_density_and_proba(X)
    invalid = ~valid
    k = mixture.n_components
    offsets = pa.array(np.arange(0, (X.shape[0] + 1) * k, k, dtype=np.int32))
    probability = pa.ListArray.from_arrays(offsets, pa.array(proba.ravel()), mask=pa.array(invalid))
    return pa.StructArray.from_arrays(
        [
            pa.array(proba.argmax(axis=1).astype(np.int32), mask=invalid),
            probability,
            pa.array(log_density, mask=invalid),
        ],
        names=["prediction", "probability", "log_density"],
    )


def score_dataframe(
    df: DataFrame, features: Column, mixture: Mixture, prediction_col: str, probability_col: str, log_density_col: str,
    probability_as_vector: bool = True, outlier_col: str | None = None, outlier_threshold: float | None = None,
) -> DataFrame:
    """``df`` with three columns added (replacing any of the same names): int prediction, probability (a Vector, or
    array<double> when ``probability_as_vector`` is false), double log-density; and with ``outlier_col`` a fourth,
    boolean: log-density below ``outlier_threshold`` (null where the log-density is)."""

    @arrow_udf(_SCORES_TYPE)
    def score(batch: pa.Array) -> pa.Array:
        return score_arrow(mixture, batch)

    outputs = (prediction_col, probability_col, log_density_col) + ((outlier_col,) if outlier_col else ())
    kept = [F.col(f"`{name}`") for name in df.columns if name not in outputs]
    scored = df.select(*kept, score(features).alias(_SCORES))
    probability = F.col(f"{_SCORES}.probability")
    if probability_as_vector:
        # array_to_vector fails on null arrays, so unusable rows skip it.
        probability = F.when(probability.isNotNull(), array_to_vector(probability))
    log_density = F.col(f"{_SCORES}.log_density")
    outlier = [(log_density < F.lit(float(outlier_threshold))).alias(outlier_col)] if outlier_col else []
    return scored.select(
        *kept,
        F.col(f"{_SCORES}.prediction").alias(prediction_col),
        probability.alias(probability_col),
        log_density.alias(log_density_col),
        *outlier,
    )
