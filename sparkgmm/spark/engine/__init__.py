"""The engines: the training data converted once into NumPy blocks stored on the executors, and passes over them.

``base.StoredBlocks`` is what a fit sees (``run_pass``, ``unpersist``, what the conversion learned); ``rdd.RddBlocks``
runs it as RDD jobs (a classic session), ``dataframe.DataFrameBlocks`` as DataFrame jobs (Spark Connect too); the
code their tasks run is ``tasks``. ``open_blocks`` converts a DataFrame with the engine the ``engine`` param names.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame

from .base import StoredBlocks, choose_engine
from .dataframe import DataFrameBlocks
from .rdd import RddBlocks

ENGINES = {"rdd": RddBlocks, "dataframe": DataFrameBlocks}


def open_blocks(df: DataFrame, features: Column, weight_col: str | None, storage_level, *, engine: str = "auto",
                **settings) -> StoredBlocks:
    """``df``'s features (and weights) converted to stored blocks by the engine ``engine`` names (``auto``: see
    ``base.choose_engine``); ``settings`` are ``StoredBlocks``' other arguments."""
    return ENGINES[choose_engine(df.sparkSession, engine)](df, features, weight_col, storage_level, **settings)
