"""The data's weighted column moments: block by block, merged in any order, against NumPy on the rows; and as the
conversion pass of both engines gives them."""

import functools
import itertools

import numpy as np
import pytest
from pyspark import StorageLevel
from pyspark.sql import functions as F

from helpers import frame
from sparkgmm.moments import ColumnMoments
from sparkgmm.passes import Block, pack_block
from sparkgmm.spark.engine import open_blocks
from sparkgmm.spark.engine.tasks import Stored, describe_partition


def rows_and_counts(n=500, d=3, seed=0, offset=0.0):
    """Correlated rows (n, d) and integer weights (n,) from 0 to 4: a weight is as many copies of its row."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(scale=5.0, size=d) + offset
    return X, rng.integers(0, 5, size=n).astype(np.float64)


def moments_of_blocks(blocks) -> ColumnMoments:
    return functools.reduce(ColumnMoments.merge, (ColumnMoments.of_block(block) for block in blocks))


def blocks_split_at(X, w, cuts, dtype="float64") -> list[Block]:
    edges = [0, *cuts, X.shape[0]]
    return [pack_block(X[a:b], None if w is None else w[a:b], dtype) for a, b in itertools.pairwise(edges)]


def direct(X, w):
    """The weighted mean and frequency-weighted covariance, written out in float64 from their definitions."""
    mean = (w[:, None] * X).sum(axis=0) / w.sum()
    centred = X - mean
    return mean, (w[:, None] * centred).T @ centred / (w.sum() - 1.0)


@pytest.mark.parametrize("cuts", [[], [1], [250], [7, 8, 100, 499], list(range(10, 500, 10))])
def test_moments_over_any_split_equal_numpy_on_the_replicated_rows(cuts):
    X, w = rows_and_counts()
    moments = moments_of_blocks(blocks_split_at(X, w, cuts))
    replicated = np.repeat(X, w.astype(int), axis=0)
    assert moments.weight_sum == w.sum() == replicated.shape[0]
    np.testing.assert_allclose(moments.mean, replicated.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.covariance(ddof=1), np.cov(replicated.T), rtol=1e-12)
    mean, covariance = direct(X, w)
    np.testing.assert_allclose(moments.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(moments.covariance(ddof=1), covariance, rtol=1e-12)
    np.testing.assert_allclose(moments.covariance(ddof=0), np.cov(X.T, fweights=w.astype(int), ddof=0), rtol=1e-12)


def test_unweighted_moments_and_merge_order():
    X, _ = rows_and_counts(n=300, seed=1)
    blocks = blocks_split_at(X, None, [40, 41, 200])
    forward, backward = moments_of_blocks(blocks), moments_of_blocks(blocks[::-1])
    pairs = ColumnMoments.of_block(blocks[0]).merge(ColumnMoments.of_block(blocks[1])).merge(
        ColumnMoments.of_block(blocks[2]).merge(ColumnMoments.of_block(blocks[3])))
    for moments in (forward, backward, pairs):
        assert moments.weight_sum == 300.0
        np.testing.assert_allclose(moments.mean, X.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(moments.covariance(ddof=1), np.cov(X.T), rtol=1e-12)
        np.testing.assert_allclose(moments.covariance(), np.cov(X.T, ddof=0), rtol=1e-12)


def test_float32_blocks_give_the_moments_of_the_rows_they_hold_in_float64():
    X, w = rows_and_counts(seed=2, offset=1e6)
    blocks = blocks_split_at(X, w, [100, 333], "float32")
    moments = moments_of_blocks(blocks)
    held = np.concatenate([block.xt.T.astype(np.float64) + block.origin for block in blocks])
    mean, covariance = direct(held, w)
    np.testing.assert_allclose(moments.mean, mean, rtol=1e-14)
    np.testing.assert_allclose(moments.covariance(ddof=1), covariance, rtol=1e-10)
    # Relative to their block's mean, the float32 values keep ~7 digits of the spread, not of 1e6.
    np.testing.assert_allclose(moments.covariance(ddof=1), direct(X, w)[1], rtol=1e-5)


def test_data_far_from_zero_keeps_its_spread():
    X, w = rows_and_counts(seed=3)
    near = moments_of_blocks(blocks_split_at(X, w, [50, 300]))
    far = moments_of_blocks(blocks_split_at(X + 1e6, w, [50, 300]))
    np.testing.assert_allclose(far.mean - 1e6, near.mean, atol=1e-9)
    # Uncentred sums would leave about 1e12 * 1e-16 = 1e-4 of the spread's ~10 here: centred, nearly every digit.
    np.testing.assert_allclose(far.covariance(ddof=1), near.covariance(ddof=1), rtol=1e-9)


def test_zero_weight_and_empty_parts_change_nothing():
    X, w = rows_and_counts(n=200, seed=4)
    w[:50] = 0.0
    parts = blocks_split_at(X, w, [50, 120])
    empty = pack_block(np.zeros((0, 3)), np.zeros(0))
    weightless = ColumnMoments.of_block(parts[0])
    assert weightless.weight_sum == 0.0 and np.all(np.isfinite(weightless.mean))
    expected = moments_of_blocks(parts[1:])
    for merged in (moments_of_blocks([empty, *parts]), moments_of_blocks([parts[1], empty, parts[0], parts[2]]),
                   ColumnMoments.empty(3).merge(expected), expected.merge(weightless)):
        assert merged.weight_sum == expected.weight_sum
        np.testing.assert_allclose(merged.mean, expected.mean, rtol=1e-14)
        np.testing.assert_allclose(merged.scatter, expected.scatter, rtol=1e-14)
    np.testing.assert_allclose(expected.covariance(ddof=1), direct(X[50:], w[50:])[1], rtol=1e-12)


def test_what_has_no_covariance_says_so():
    one_row = ColumnMoments.of_block(pack_block(np.ones((1, 2)), None))
    np.testing.assert_array_equal(one_row.covariance(), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"ddof=1 needs a total weight above 1; the rows weigh 1\.0"):
        one_row.covariance(ddof=1)
    with pytest.raises(ValueError, match="moments of 2 and 3 features"):
        one_row.merge(ColumnMoments.empty(3))


def test_a_task_whose_blocks_disagree_on_the_features_keeps_no_moments():
    two, three = (pack_block(np.arange(4.0 * d).reshape(4, d), None) for d in (2, 3))
    (agreeing,) = describe_partition([Stored(two, 0, 0), Stored(two, 0, 0)], moments=True)
    (disagreeing,) = describe_partition([Stored(two, 0, 0), Stored(three, 0, 0)], moments=True)
    (empty,) = describe_partition([], moments=True)
    assert agreeing.moments is not None and agreeing.moments.weight_sum == 8.0
    assert disagreeing.moments is None and empty.moments is None
    assert agreeing.merge(empty).moments is agreeing.moments
    # Once the feature counts disagree, no later merge brings moments back, in whichever order.
    assert agreeing.merge(disagreeing).moments is None and disagreeing.merge(agreeing).moments is None
    (other,) = describe_partition([Stored(three, 0, 0)], moments=True)
    assert agreeing.merge(other).moments is None and empty.merge(other).merge(agreeing).moments is None


# --- the conversion pass -------------------------------------------------------------------------------------------

@pytest.mark.spark
@pytest.mark.parametrize("engine", ["rdd", "dataframe"])
@pytest.mark.parametrize("storage", ["local-files", "spark-cache"])
def test_the_conversion_gives_the_moments_of_the_replicated_rows(spark, engine, storage):
    X, w = rows_and_counts(n=400, d=3, seed=5, offset=1e3)
    df = frame(spark, X, 3, extra={"weight": w})
    with open_blocks(df, F.col("features"), "weight", StorageLevel.MEMORY_ONLY, engine=engine, block_storage=storage,
                     block_bytes=1024, moments=True) as blocks:
        assert blocks.engine == engine and blocks.moments is not None
        assert blocks.moments.weight_sum == blocks.weight_sum == w.sum()
        replicated = np.repeat(X, w.astype(int), axis=0)
        np.testing.assert_allclose(blocks.data_mean, replicated.mean(axis=0), rtol=1e-10)
        np.testing.assert_allclose(blocks.data_covariance, np.cov(replicated.T), rtol=1e-10)


@pytest.mark.spark
@pytest.mark.parametrize("engine", ["rdd", "dataframe"])
def test_ragged_or_weightless_input_has_no_moments(spark, engine):
    schema = "features array<double>"
    mixed = spark.createDataFrame([([1.0, 2.0],), ([3.0],), ([4.0, 5.0],)], schema).coalesce(1)
    # Two partitions, each of one row length: each task's blocks agree, the tasks do not.
    split = spark.createDataFrame(spark.sparkContext.parallelize([([1.0, 2.0],), ([3.0, 4.0],), ([5.0],), ([6.0],)],
                                                                 2), schema)
    weightless = frame(spark, np.ones((4, 2)), 2, extra={"weight": np.zeros(4)})
    for df, weight_col in ((mixed, None), (split, None), (weightless, "weight")):
        with open_blocks(df, F.col("features"), weight_col, StorageLevel.MEMORY_ONLY, engine=engine,
                         moments=True) as blocks:
            assert blocks.moments is None and blocks.data_mean is None and blocks.data_covariance is None


@pytest.mark.spark
def test_a_conversion_not_asked_for_the_moments_does_not_compute_them(spark):
    df = frame(spark, np.arange(12.0).reshape(6, 2), 2)
    with open_blocks(df, F.col("features"), None, StorageLevel.MEMORY_ONLY) as blocks:
        assert blocks.n_rows == 6 and blocks.moments is None
