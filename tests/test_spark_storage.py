"""Where the blocks live between passes (local files or Spark's cache), in which dtype, and how they are balanced."""

import glob
import os

import numpy as np
import pyarrow as pa
import pytest
from pyspark import StorageLevel
from pyspark.sql import functions as F

from helpers import frame, make_mixture, overlapping_data_and_start, persisted_rdd_count
from sparkgmm import GaussianMixture, Mixture
from sparkgmm.passes import EStep, pack_block, run_local_pass
from sparkgmm.sampling import draw_sample
from sparkgmm.spark.engine.rdd import RddBlocks
from sparkgmm.spark.engine.dataframe import DataFrameBlocks, merge_levels

pytestmark = pytest.mark.spark


def local_dirs(spark) -> list[str]:
    """The directories Spark gives its Python workers for local files (one executor here: the driver's)."""
    found = spark.sparkContext.parallelize([0], 1).map(lambda _: os.environ.get("SPARK_LOCAL_DIRS", "")).collect()
    return [d for d in found[0].split(",") if d]


def block_files(spark) -> list[str]:
    return [path for root in local_dirs(spark) for path in glob.glob(os.path.join(root, "sparkgmm-*", "*.bin"))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_local_files_and_spark_cache_give_the_same_model(spark, dtype):
    X, _ = make_mixture("full", n_components=3, n_features=3, seed=2).sample(2000, seed=4)
    df = frame(spark, X, 3)
    fits = {
        storage: GaussianMixture(k=3, maxIter=8, tol=0.0, seed=3, dtype=dtype, blockStorage=storage).fit(df)
        for storage in ("local-files", "spark-cache")
    }
    files, cache = fits["local-files"], fits["spark-cache"]
    np.testing.assert_array_equal(files.means, cache.means)
    np.testing.assert_array_equal(files.covariances, cache.covariances)
    assert files.summary.logLikelihoodHistory == cache.summary.logLikelihoodHistory
    itemsize = np.dtype(dtype).itemsize
    for storage, model in fits.items():
        summary = model.summary
        assert (summary.blockStorage, summary.dtype) == (storage, dtype)
        assert summary.blockBytes == X.size * itemsize + len(X) * 8  # the rows, and a 64-bit hash of each
        assert 0.0 < summary.conversionSeconds < summary.seconds
    assert block_files(spark) == [] and persisted_rdd_count(spark) == 0  # every fit removed its files


def test_float32_fit_stays_close_to_the_float64_fit_even_far_from_zero(spark, covariance_type):
    X, start = overlapping_data_and_start(covariance_type, n=1500)
    offset = 1e5  # float32 keeps ~7 digits: stored as is, these rows would keep ~2 digits of their spread
    df = frame(spark, X + offset, 3)
    shifted = Mixture(start.weights, start.means + offset, start.covariances, start.covariance_type)
    fits = {
        dtype: GaussianMixture(k=3, covarianceType=covariance_type, maxIter=10, tol=0.0, initialModel=shifted,
                               acceleration="none", dtype=dtype).fit(df)
        for dtype in ("float64", "float32")
    }
    wide, narrow = fits["float64"], fits["float32"]
    np.testing.assert_allclose(narrow.summary.logLikelihoodHistory, wide.summary.logLikelihoodHistory, rtol=1e-6)
    np.testing.assert_allclose(narrow.means - offset, wide.means - offset, atol=1e-4)
    np.testing.assert_allclose(narrow.covariances, wide.covariances, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(narrow.weights, wide.weights, atol=1e-5)


def passes_before_and_after_losing_the_files(spark, blocks, request) -> tuple:
    """A pass, then the same pass after every block file was removed, which writes them again under new names: both
    answers."""
    (before,) = blocks.run_pass(request, "E-step")
    written = block_files(spark)
    assert written
    for path in written:
        os.remove(path)
    (after,) = blocks.run_pass(request, "E-step after the files were lost")
    rewritten = block_files(spark)
    assert rewritten and not set(rewritten) & set(written)
    return before, after


def skewed_frame(spark, X):
    """Three input partitions of 900, 50 and 50 rows: two tasks would read ~950 and 50 rows."""
    parts = [X[:900].tolist(), X[900:950].tolist(), X[950:].tolist()]
    rows = spark.sparkContext.parallelize([0, 1, 2], 3).flatMap(lambda i: [(row,) for row in parts[i]])
    return spark.createDataFrame(rows, "features array<double>")


def test_a_pass_that_finds_its_files_gone_rewrites_them_and_answers_the_same(spark):
    X, start = overlapping_data_and_start("full", n=600)
    with RddBlocks(frame(spark, X, 3), F.col("features"), None, StorageLevel.MEMORY_AND_DISK,
                   block_bytes=4096) as blocks:
        before, after = passes_before_and_after_losing_the_files(spark, blocks, [EStep(start, count_hard=True)])
        np.testing.assert_allclose(after.second, before.second, rtol=1e-12)
        np.testing.assert_allclose(after.log_likelihood, before.log_likelihood, rtol=1e-12)
        np.testing.assert_array_equal(after.hard_counts, before.hard_counts)
    assert block_files(spark) == []


@pytest.mark.parametrize("storage", ["local-files", "spark-cache"])
def test_a_skewed_input_is_dealt_out_so_that_every_task_reads_its_share(spark, storage):
    X, _ = overlapping_data_and_start("diag", n=1000)
    skewed = skewed_frame(spark, X)
    assert skewed.rdd.glom().map(len).collect() == [900, 50, 50]
    with RddBlocks(skewed, F.col("features"), None, StorageLevel.MEMORY_ONLY, block_bytes=512,
                   block_storage=storage) as blocks:
        assert blocks.rebalanced
        rows = blocks.task_rows()
        assert len(rows) == spark.sparkContext.defaultParallelism == 2 and sum(rows) == 1000
        assert max(rows) == blocks.largest_task_rows <= 1.25 * 500
    balanced = frame(spark, X, 4)
    with RddBlocks(balanced, F.col("features"), None, StorageLevel.MEMORY_ONLY, block_bytes=512,
                   block_storage=storage) as blocks:
        assert not blocks.rebalanced  # nothing to gain: converted once


def test_the_dataframe_engine_gives_the_rdd_engines_model(spark):
    X, _ = make_mixture("full", n_components=3, n_features=3, seed=7).sample(1200, seed=8)
    df = frame(spark, X, 3)
    params = dict(k=3, maxIter=4, tol=0.0, seed=2)  # k-means|| first: samples, rounds and Lloyd passes too
    rdd = GaussianMixture(**params).fit(df)
    frames = GaussianMixture(**params, engine="dataframe").fit(df)
    np.testing.assert_allclose(frames.weights, rdd.weights, rtol=1e-9)
    np.testing.assert_allclose(frames.means, rdd.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(frames.covariances, rdd.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(frames.summary.logLikelihoodHistory, rdd.summary.logLikelihoodHistory, rtol=1e-12)
    assert frames.summary.numPasses == rdd.summary.numPasses and frames.summary.blockBytes == rdd.summary.blockBytes
    assert block_files(spark) == [] and persisted_rdd_count(spark) == 0


def test_the_dataframe_engine_balances_rewrites_lost_files_and_cleans_up(spark):
    X, start = overlapping_data_and_start("diag", n=1000)
    request = [EStep(start, count_hard=True)]
    (expected,) = run_local_pass([pack_block(X, None)], 3, request)
    with DataFrameBlocks(skewed_frame(spark, X), F.col("features"), None, StorageLevel.MEMORY_ONLY,
                         block_bytes=512) as blocks:
        assert blocks.rebalanced and blocks.n_tasks == 2
        rows = blocks.task_rows()
        assert len(rows) == 2 and sum(rows) == 1000 and max(rows) == blocks.largest_task_rows <= 1.25 * 500
        before, after = passes_before_and_after_losing_the_files(spark, blocks, request)
    assert block_files(spark) == [] and persisted_rdd_count(spark) == 0
    for stats in (before, after):
        np.testing.assert_allclose(stats.second, expected.second, rtol=1e-10)
        np.testing.assert_allclose(stats.log_likelihood, expected.log_likelihood, rtol=1e-12)
        np.testing.assert_array_equal(stats.hard_counts, expected.hard_counts)


def test_the_dataframe_engine_deals_out_one_partition_and_merges_many_answers_in_levels(spark):
    X, start = overlapping_data_and_start("full", n=1000)
    request = [EStep(start, count_hard=True)]
    (expected,) = run_local_pass([pack_block(X, None)], 3, request)
    with DataFrameBlocks(frame(spark, X, 1), F.col("features"), None, StorageLevel.MEMORY_ONLY, block_bytes=1024,
                         block_storage="spark-cache") as blocks:
        assert blocks.rebalanced  # one input partition: its blocks were dealt over both cores
        assert sorted(blocks.task_rows()) == [496, 504]  # 23 blocks of 42 rows and one of 34, dealt round-robin
    with DataFrameBlocks(frame(spark, X, 8), F.col("features"), None, StorageLevel.MEMORY_ONLY, block_bytes=1024,
                         block_storage="spark-cache") as blocks:
        blocks._parallelism = lambda: 8  # as if 8 cores: 8 tasks, merged by 2 tasks of a shuffle level first
        assert blocks.n_tasks == 8 and merge_levels(8, blocks.aggregation_depth) == [2]
        (stats,) = blocks.run_pass(request, "E-step over 8 tasks")
    np.testing.assert_allclose(stats.second, expected.second, rtol=1e-10)
    np.testing.assert_array_equal(stats.hard_counts, expected.hard_counts)


def test_dtype_and_block_storage_are_checked(spark):
    X, _ = overlapping_data_and_start("diag", n=100)
    df = frame(spark, X, 1)
    for params, message in [(dict(dtype="float16"), "dtype='float16' must be one of float64, float32"),
                            (dict(blockStorage="tape"), "blockStorage='tape' must be one of local-files, spark-cache")]:
        with pytest.raises(ValueError, match=message):
            GaussianMixture(k=2, **params).fit(df)


@pytest.mark.parametrize("engine", [RddBlocks, DataFrameBlocks])
def test_the_conversion_keeps_one_sample_whatever_the_partitioning_and_block_size(spark, engine):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(4000, 3))
    w = rng.choice([0.0, 0.5, 2.0], size=4000)
    # the sample as one in-memory draw over all rows (sampling.draw_sample): the rows of the largest keys
    expected = draw_sample([pack_block(X, w)], 600, (7, 5), 3).ordered()
    for partitions, block_bytes in ((1, None), (3, 4096), (23, 1000)):
        df = frame(spark, X, partitions, extra={"w": pa.array(w)})
        with engine(df, F.col("features"), "w", StorageLevel.MEMORY_ONLY, block_bytes=block_bytes, sample_rows=600,
                    sample_seed=(7, 5)) as blocks:
            np.testing.assert_array_equal(blocks.sample, expected)
    with engine(frame(spark, X, 2), F.col("features"), None, StorageLevel.MEMORY_ONLY) as blocks:
        assert blocks.sample is None  # no sample unless asked for


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_rdd_engines_arrow_route_packs_what_map_in_arrow_packs(spark, dtype):
    from sparkgmm.spark.engine.arrow_rdd import through_arrow_batches, through_map_in_arrow
    from sparkgmm.spark.features import features_column, selected_features

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 3))
    X[7, 1], X[11, 0], X[12, 2] = np.nan, np.inf, -0.0
    w = rng.uniform(0.0, 2.0, size=3000)
    w[20], w[21] = -1.0, np.nan
    df = spark.createDataFrame(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "w": w})).repartition(3)
    df = df.withColumn("b", F.when(F.monotonically_increasing_id() % 997 == 5, None).otherwise(F.col("b")))
    selected = selected_features(df, features_column(df, "features", ["a", "b", "c"]), "w")

    def elements(rdd):
        return [(p.invalid, p.ragged, p.payload.xt.tobytes(), p.payload.w.tobytes(), p.payload.hashes.tobytes(),
                 None if p.payload.origin is None else p.payload.origin.tobytes())
                for p in rdd.collect()]

    fast = through_arrow_batches(selected, True, 4096, dtype)
    assert fast.getNumPartitions() == selected.rdd.getNumPartitions()
    packed = elements(fast)
    assert packed == elements(through_map_in_arrow(selected, True, 4096, dtype))
    assert sum(invalid for invalid, *_ in packed) >= 5  # NaN, inf, the two bad weights, the nulls


def test_a_python_worker_freezes_its_imports_at_its_first_pass_and_the_driver_never(spark, monkeypatch):
    """PySpark's daemon runs gc.collect() after every task of a reused Python worker; a pass's first answer moves
    what the worker has imported out of the collector's way (gc.freeze), once per worker, and never in the driver
    (it runs no task; its objects are its user's)."""
    import gc

    from sparkgmm.spark.engine import tasks

    monkeypatch.setattr(tasks, "_worker_settled", False)
    before = gc.get_freeze_count()
    assert tasks.answer_partition([], 1, iter([])) == []
    assert gc.get_freeze_count() == before

    def in_worker(_rows):
        import gc

        from sparkgmm.spark.engine.tasks import answer_partition

        answer_partition([], 1, iter([]))
        first = gc.get_freeze_count()
        kept = [[] for _ in range(1000)]  # new objects the collector tracks: a second freeze would take them too
        answer_partition([], 1, iter([]))
        yield first, gc.get_freeze_count(), len(kept)

    counts = spark.sparkContext.parallelize(range(2), 2).mapPartitions(in_worker).collect()
    assert len(counts) == 2
    for first, second, _ in counts:
        assert first > 10_000 and second == first, counts
