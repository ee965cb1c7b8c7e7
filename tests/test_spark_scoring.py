"""Scoring's routes give the same rows: the mapInArrow task against the Arrow UDF, and the predict job's part files
written by its tasks (pyarrow) against Spark's writer."""

import datetime
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from helpers import make_mixture
from sparkgmm import GaussianMixtureModel
from sparkgmm.spark.local_parquet import SPARK_SCHEMA_KEY, local_directory, write_scored
from sparkgmm.spark.scoring import Outputs, score_dataframe, scoring_plan

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def mixture():
    return make_mixture("full", n_components=3, n_features=3, seed=8)


def mixed_frame(spark, mixture, n=400):
    """Three double features (some null, NaN or infinite), columns of several other types, in 3 partitions."""
    X, _ = mixture.sample(n, seed=1)
    rows = []
    for i, (a, b, c) in enumerate(X.tolist()):
        b = None if i % 50 == 3 else float("nan") if i % 50 == 4 else float("inf") if i % 50 == 5 else b
        rows.append((i, i % 7, f"r{i}", datetime.date(2020, 1, 1 + i % 28), bool(i % 2), a, b, c))
    schema = "id long, small tinyint, tag string, day date, flag boolean, a double, b double, c double"
    return spark.createDataFrame(rows, schema).repartition(3)


def sorted_rows(df):
    return sorted((row.asDict() for row in df.collect()), key=lambda r: r["id"])


def assert_same_rows(left, right):
    assert len(left) == len(right)
    for x, y in zip(left, right, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            if key in ("probability", "p") and x[key] is not None:
                np.testing.assert_allclose(np.asarray(x[key]), np.asarray(y[key]), rtol=1e-12, atol=1e-300)
            elif isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-12) or (np.isnan(x[key]) and np.isnan(y[key]))
            else:
                assert x[key] == y[key], key


def test_the_map_in_arrow_route_and_the_udf_route_score_alike(spark, mixture):
    df = mixed_frame(spark, mixture)
    model = GaussianMixtureModel(mixture).setInputCols(["a", "b", "c"]).setProbabilityCol("p")
    fast = model.transform(df)
    # a column Arrow cannot carry sends the scoring the UDF route, which leaves the other columns in the JVM
    slow = model.transform(df.withColumn("span", F.expr("make_interval(0, 0, 0, 1)"))).drop("span")
    assert fast.schema == slow.schema
    rows = sorted_rows(fast)
    assert_same_rows(rows, sorted_rows(slow))
    unusable = [r["id"] for r in rows if r["prediction"] is None]
    assert unusable == [i for i in range(400) if i % 50 in (3, 4, 5)]
    assert all(r["p"] is None and r["logDensity"] is None for r in rows if r["id"] in unusable)
    usable = [r for r in rows if r["prediction"] is not None]
    X = np.array([[r["a"], r["b"], r["c"]] for r in usable])
    np.testing.assert_allclose([r["logDensity"] for r in usable], mixture.score_samples(X), rtol=1e-12)
    np.testing.assert_array_equal([r["prediction"] for r in usable], mixture.predict(X))


@pytest.mark.parametrize("outlier", [False, True])
def test_the_jobs_task_written_files_are_what_sparks_writer_writes(spark, mixture, tmp_path, outlier):
    df = mixed_frame(spark, mixture)
    outputs = Outputs("prediction", "probability", "log_density", False, "is_outlier" if outlier else None,
                      -4.0 if outlier else None)
    keep = ["id", "small", "tag", "day", "flag", "b"]
    plan = scoring_plan(df, "features", ["a", "b", "c"], mixture, outputs, keep)
    directory = local_directory(spark, str(tmp_path / "tasks"), plan.schema)
    assert directory == tmp_path / "tasks"
    rows, scored = write_scored(spark, plan, directory, "prediction")
    assert (rows, scored) == (400, 400 - 24)
    score_dataframe(df, "features", ["a", "b", "c"], mixture, "prediction", "probability", "log_density",
                    probability_as_vector=False, outlier_col=outputs.outlier,
                    outlier_threshold=outputs.outlier_threshold, keep=keep).write.parquet(str(tmp_path / "spark"))
    by_tasks, by_spark = spark.read.parquet(str(tmp_path / "tasks")), spark.read.parquet(str(tmp_path / "spark"))
    assert by_tasks.schema == by_spark.schema
    assert_same_rows(sorted_rows(by_tasks), sorted_rows(by_spark))
    written = sorted(directory.glob("part-*.snappy.parquet"))
    assert written and not list(directory.glob(".*"))  # no hidden leftovers
    spark_file = sorted((tmp_path / "spark").glob("part-*.parquet"))[0]
    spark_schemas = [json.loads(pq.read_schema(path).metadata[SPARK_SCHEMA_KEY]) for path in (written[0], spark_file)]
    assert spark_schemas[0] == spark_schemas[1]
    assert pq.ParquetFile(written[0]).schema.to_arrow_schema() == pq.ParquetFile(spark_file).schema.to_arrow_schema()
    chunks = pq.ParquetFile(written[0]).metadata.row_group(0)
    dictionary = {chunks.column(i).path_in_schema.split(".")[0]: chunks.column(i).dictionary_page_offset is not None
                  for i in range(chunks.num_columns)}
    # floating-point values rarely repeat: plain pages for them; booleans are bit-packed by any writer; dictionary
    # pages (as Spark's writer) for the rest
    plain = {"b", "probability", "log_density", "flag"} | ({"is_outlier"} if outlier else set())
    assert {name for name, has in dictionary.items() if not has} == plain


def test_an_input_without_rows_gives_one_file_with_the_schema(spark, mixture, tmp_path):
    df = mixed_frame(spark, mixture).limit(0)
    plan = scoring_plan(df, "features", ["a", "b", "c"], mixture,
                        Outputs("prediction", "probability", "log_density", False, None, None), ["id", "a"])
    assert write_scored(spark, plan, tmp_path / "out", "prediction") == (0, 0)
    assert len(list((tmp_path / "out").glob("part-*"))) == 1
    read = spark.read.parquet(str(tmp_path / "out"))
    assert read.count() == 0 and read.columns == ["id", "a", "prediction", "probability", "log_density"]


def test_the_task_written_files_are_only_for_local_masters_and_types_spark_writes_alike(spark, mixture, tmp_path):
    df = mixed_frame(spark, mixture).withColumn("when", F.current_timestamp())
    outputs = Outputs("prediction", "probability", "log_density", False, None, None)
    plan = scoring_plan(df, "features", ["a", "b", "c"], mixture, outputs, ["id", "when"])
    assert local_directory(spark, str(tmp_path), plan.schema) is None  # Spark writes timestamps as INT96
    plan = scoring_plan(df, "features", ["a", "b", "c"], mixture, outputs, ["id"])
    assert local_directory(spark, "hdfs://nn/out", plan.schema) is None
    assert local_directory(spark, f"file://{tmp_path}", plan.schema) == tmp_path
