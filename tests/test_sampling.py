"""The conversion's bounded sample: independent of the blocks, weighted, bounded; and the tree depth that bounds what
the driver receives."""

import math

import numpy as np
import pytest

from sparkgmm.passes import chunks, pack_block
from sparkgmm.sampling import RowSample, SampleBuilder, draw_sample, sample_keys
from sparkgmm.spark.engine.dataframe import merge_levels
from sparkgmm.spark.engine.base import describe_depth

SEED = (3, 5)


def blocks_of(X, w=None, rows=1000, dtype="float64"):
    return [pack_block(X[s], None if w is None else w[s], dtype) for s in chunks(X.shape[0], rows)]


def test_the_sample_is_the_rows_of_the_largest_keys_whatever_the_blocks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 4))
    keys = np.concatenate([sample_keys(SEED, b) for b in blocks_of(X)])
    expected = X[np.argsort(-keys, kind="stable")[:700]]
    for rows in (20_000, 4096, 333, 1):
        blocks = blocks_of(X, rows=rows) if rows > 1 else blocks_of(X[:2000], rows=1) + blocks_of(X[2000:], rows=5000)
        sample = draw_sample(blocks, 700, SEED, 4)
        np.testing.assert_array_equal(sample.ordered(), expected)
    # Merging task samples in any order (the tree-reduce) gives the same sample as one task.
    parts = [draw_sample(blocks_of(X[s]), 700, SEED, 4) for s in chunks(20_000, 3000)]
    forward, backward = parts[0], parts[-1]
    for part in parts[1:]:
        forward = forward.merge(part)
    for part in parts[-2::-1]:
        backward = part.merge(backward)
    np.testing.assert_array_equal(forward.ordered(), expected)
    np.testing.assert_array_equal(backward.ordered(), expected)


def test_a_prefix_of_the_sample_is_the_smaller_sample():
    X = np.random.default_rng(1).normal(size=(5000, 3))
    big = draw_sample(blocks_of(X), 2000, SEED, 3).ordered()
    small = draw_sample(blocks_of(X), 300, SEED, 3).ordered()
    np.testing.assert_array_equal(big[:300], small)


def test_weighted_rows_are_drawn_in_proportion_to_their_weights_and_zero_weights_never():
    rng = np.random.default_rng(2)
    n = 60_000
    X = rng.normal(size=(n, 2))
    w = rng.choice([0.0, 1.0, 3.0], size=n)
    sample = draw_sample(blocks_of(X, w), 2000, SEED, 2)
    kept = {tuple(row) for row in sample.ordered()}
    drawn_w = np.array([wi for row, wi in zip(map(tuple, X), w, strict=True) if row in kept])
    assert drawn_w.shape[0] == 2000 and not np.any(drawn_w == 0.0)
    # Each row of weight 3 is drawn about 3 times as often as one of weight 1 (the sample is 5% of the weight).
    heavy, light = np.count_nonzero(drawn_w == 3.0), np.count_nonzero(drawn_w == 1.0)
    share = heavy / (heavy + light)
    expected = 3 * np.count_nonzero(w == 3.0) / (3 * np.count_nonzero(w == 3.0) + np.count_nonzero(w == 1.0))
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / 2000)


def test_a_sample_holds_every_row_of_positive_weight_when_there_are_fewer_than_its_capacity():
    X = np.arange(30.0).reshape(15, 2)
    w = np.where(np.arange(15) % 3 == 0, 0.0, 1.0)
    sample = draw_sample(blocks_of(X, w, rows=4), 100, SEED, 2)
    assert sorted(map(tuple, sample.ordered())) == sorted(map(tuple, X[w > 0]))


def test_float32_blocks_give_the_rows_as_stored():
    X = 1e3 + np.random.default_rng(3).normal(size=(3000, 3))
    ours = draw_sample(blocks_of(X, dtype="float32"), 500, SEED, 3).ordered()
    exact = draw_sample(blocks_of(X), 500, SEED, 3).ordered()
    np.testing.assert_allclose(ours, exact, rtol=1e-6)


def test_a_builder_copies_few_rows_once_its_threshold_rises():
    X = np.random.default_rng(4).normal(size=(200_000, 2))
    builder = SampleBuilder(1000, SEED)
    copied = 0
    for block in blocks_of(X, rows=2000):
        before = builder._pending_rows
        builder.add(block)
        copied += max(builder._pending_rows - before, 0)
    assert builder.result().n_rows == 1000
    # about capacity * (1 + ln(n / capacity)) rows pass the running threshold: 6.3k of 200k here
    assert copied < 3 * 1000 * (1 + math.log(200))


def test_an_empty_sample_merges_into_any_other():
    X = np.random.default_rng(5).normal(size=(50, 3))
    sample = draw_sample(blocks_of(X), 10, SEED, 3)
    empty = RowSample.empty(10, 0)
    np.testing.assert_array_equal(empty.merge(sample).ordered(), sample.ordered())
    np.testing.assert_array_equal(sample.merge(empty).ordered(), sample.ordered())


@pytest.mark.parametrize("tasks", [1, 2, 3, 8, 50, 2000, 100_000])
def test_the_driver_receives_at_most_four_samples_whatever_the_tasks(tasks):
    # pyspark's treeAggregate rule (merge_levels mirrors it): the levels shrink the tasks' answers to what the driver
    # collects. The description's depth keeps that at four at most, so at most 4 x sampleRows rows arrive.
    for depth in (1, 2, 5):
        levels = merge_levels(tasks, describe_depth(tasks, depth))
        collected = levels[-1] if levels else tasks
        assert collected <= 4
        assert describe_depth(tasks, depth) >= depth
