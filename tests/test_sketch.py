"""The log-density quantile sketch (sparkgmm.sketch) against exact quantiles: pure NumPy."""

import math
import pickle

import numpy as np
import pytest

from sparkgmm.errors import InputError
from sparkgmm.sketch import (
    ALPHA, MAX_BUCKETS, MAX_MAGNITUDE, MIN_MAGNITUDE, ValueSketch, is_outlier_level, threshold_at,
)

LEVELS = np.array([0.0, 1e-4, 2e-4, 5e-4, 1e-3, 3e-3, 0.01, 0.0333, 0.05, 0.1, 0.25, 0.5, 0.77, 0.99, 1.0])


def exact_quantiles(values: np.ndarray, weights: np.ndarray | None, levels: np.ndarray) -> np.ndarray:
    """The inverted-CDF quantiles: the smallest value whose cumulative weight reaches ``level`` times the total."""
    order = np.argsort(values, kind="stable")
    w = np.ones(values.size) if weights is None else weights[order]
    cumulative = np.cumsum(w)
    position = np.searchsorted(cumulative, levels * cumulative[-1], side="left")
    return values[order][np.minimum(position, values.size - 1)]


def assert_within_accuracy(got: np.ndarray, exact: np.ndarray, reference: float) -> None:
    distance = np.abs(exact - reference)
    allowed = np.where(distance < MIN_MAGNITUDE, MIN_MAGNITUDE, ALPHA * distance) * (1.0 + 1e-9)
    assert np.all(np.abs(got - exact) <= allowed), (got, exact, np.abs(got - exact) / np.maximum(distance, 1e-300))


DISTRIBUTIONS = ("negative", "positive", "mixed", "heavy")


def draw(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if name == "negative":  # log-densities of a 10-feature Gaussian: 0.5 chi2_10 below a ceiling of -20
        return -20.0 - 0.5 * rng.chisquare(10, n)
    if name == "positive":  # concentrated data: log-densities well above zero
        return 300.0 + rng.lognormal(0.0, 2.0, n)
    if name == "mixed":  # both signs and values near zero
        return np.concatenate([rng.normal(0.0, 2.0, n - 20), rng.uniform(-1e-4, 1e-4, 20)])
    if name == "heavy":  # far outliers many decades out
        return -np.abs(rng.standard_cauchy(n)) ** 3
    raise ValueError(name)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reference", [0.0, -17.5])
def test_quantiles_within_relative_accuracy_of_exact(name, weighted, reference):
    rng = np.random.default_rng([DISTRIBUTIONS.index(name), weighted, reference != 0.0])
    values = draw(name, 20_011, rng)
    weights = rng.exponential(1.0, values.size) if weighted else None
    got = ValueSketch.of(values, weights, reference).quantiles(LEVELS)
    exact = exact_quantiles(values, weights, LEVELS)
    assert_within_accuracy(got, exact, reference)
    # the same definition as numpy's
    np.testing.assert_array_equal(exact, np.quantile(values, LEVELS, method="inverted_cdf", weights=weights))


def test_quantiles_at_every_rank_of_small_data():
    """Levels that land exactly on a cumulative count (i / n) take that row, not the next, as numpy does."""
    values = draw("negative", 200, np.random.default_rng(5))
    levels = np.arange(201) / 200
    exact = np.quantile(values, levels, method="inverted_cdf")
    np.testing.assert_array_equal(exact_quantiles(values, None, levels), exact)
    assert_within_accuracy(ValueSketch.of(values, None, -20.0).quantiles(levels), exact, -20.0)


def test_integer_weights_count_as_repeated_rows():
    rng = np.random.default_rng(1)
    values = rng.normal(-5.0, 3.0, 500)
    repeats = rng.integers(0, 4, values.size)
    weighted = ValueSketch.of(values, repeats.astype(np.float64), -1.0)
    repeated = ValueSketch.of(np.repeat(values, repeats), None, -1.0)
    np.testing.assert_array_equal(weighted.keys, repeated.keys)
    np.testing.assert_array_equal(weighted.counts, repeated.counts)
    assert weighted.total == repeats.sum()


def test_merge_of_partitions_equals_one_sketch_in_any_order_and_grouping():
    rng = np.random.default_rng(2)
    values = np.concatenate([draw("negative", 3000, rng), draw("mixed", 3000, rng)])
    rng.shuffle(values)
    whole = ValueSketch.of(values, None, -3.0)
    cuts = np.sort(rng.choice(np.arange(1, values.size), 9, replace=False))
    parts = [ValueSketch.of(part, None, -3.0) for part in np.split(values, cuts)]
    left = parts[0]
    for part in parts[1:]:
        left = left.merge(part)
    right = parts[-1]
    for part in reversed(parts[:-1]):
        right = part.merge(right)
    shuffled = [parts[i] for i in rng.permutation(len(parts))]
    tree = shuffled
    while len(tree) > 1:
        tree = [tree[i].merge(tree[i + 1]) if i + 1 < len(tree) else tree[i] for i in range(0, len(tree), 2)]
    for merged in (left, right, tree[0], ValueSketch.empty(-3.0).merge(left).merge(ValueSketch.empty(-3.0))):
        np.testing.assert_array_equal(merged.keys, whole.keys)
        np.testing.assert_array_equal(merged.counts, whole.counts)  # integer counts: exact


def test_merge_with_float_weights_is_order_free_up_to_rounding():
    rng = np.random.default_rng(3)
    values = draw("heavy", 4000, rng)
    weights = rng.exponential(1.0, values.size)
    parts = [ValueSketch.of(v, w) for v, w in zip(np.split(values, 4), np.split(weights, 4), strict=True)]
    a = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3]))
    b = parts[3].merge(parts[0]).merge(parts[2]).merge(parts[1])
    whole = ValueSketch.of(values, weights)
    for merged in (a, b):
        np.testing.assert_array_equal(merged.keys, whole.keys)
        np.testing.assert_allclose(merged.counts, whole.counts, rtol=1e-12)


def test_merge_refuses_another_reference():
    with pytest.raises(ValueError, match="relative to"):
        ValueSketch.of(np.ones(3), None, 0.0).merge(ValueSketch.of(np.ones(3), None, 1.0))


def test_size_is_bounded_whatever_the_values():
    rng = np.random.default_rng(4)
    magnitudes = 10.0 ** rng.uniform(-300, 300, 200_000)
    values = np.concatenate([magnitudes * rng.choice([-1.0, 1.0], magnitudes.size), [0.0, np.inf, -np.inf]])
    sketch = ValueSketch.of(values)
    assert sketch.n_buckets <= MAX_BUCKETS
    # The worst case: every magnitude from MIN_MAGNITUDE to beyond MAX_MAGNITUDE, of both signs, on a grid 18 times
    # finer than the buckets, with zero and the infinities. Each sign fills the buckets of its log range (one more
    # for the bucket that straddles an end): about 21,000 in all, as the module's docstring says.
    magnitudes = np.geomspace(MIN_MAGNITUDE, 10.0 * MAX_MAGNITUDE, 200_000)
    worst = ValueSketch.of(np.concatenate([-magnitudes, [0.0], magnitudes, [np.inf, -np.inf]]))
    per_sign = math.log(MAX_MAGNITUDE / MIN_MAGNITUDE) / math.log((1 + ALPHA) / (1 - ALPHA))
    assert worst.n_buckets == MAX_BUCKETS and 2 * per_sign + 1 <= worst.n_buckets <= 2 * (per_sign + 1) + 1
    assert round(worst.n_buckets, -3) == 21_000
    # On the wire (a task's result of the final pass carries its sketch, pickled): an int64 key and a float64 weight
    # per bucket, and little else, so about 330 KB at the very worst.
    assert len(pickle.dumps(worst)) <= 16 * worst.n_buckets + 1024
    # a realistic spread only fills the buckets between its smallest and largest distance
    values = draw("negative", 200_000, rng)
    distances = np.abs(values)
    expected = math.log(distances.max() / distances.min()) / math.log((1 + ALPHA) / (1 - ALPHA)) + 2
    realistic = ValueSketch.of(values)
    assert realistic.n_buckets <= expected
    assert len(pickle.dumps(realistic)) <= 16 * realistic.n_buckets + 1024


def test_clamps_beyond_the_range_and_ignores_nan():
    values = np.array([-np.inf, -1e300, -2e20, np.nan, 1e-9, -1e-9, 0.0, 5.0, 1e200, np.inf])
    sketch = ValueSketch.of(values)
    assert sketch.total == 9  # NaN left out
    q = sketch.quantiles((np.arange(9) + 0.5) / 9)  # each of the 9 values in turn
    np.testing.assert_allclose(q[:3], -MAX_MAGNITUDE, rtol=ALPHA)  # -inf, -1e300 and -2e20 clamped
    np.testing.assert_array_equal(q[3:6], 0.0)  # |v| < MIN_MAGNITUDE answers 0
    np.testing.assert_allclose(q[6], 5.0, rtol=ALPHA)
    np.testing.assert_allclose(q[7:], MAX_MAGNITUDE, rtol=ALPHA)  # 1e200 and inf clamped


def test_zero_weight_rows_and_empty_sketches():
    sketch = ValueSketch.of(np.array([-100.0, -1.0, -2.0]), np.array([0.0, 1.0, 1.0]))
    assert sketch.total == 2.0
    assert abs(sketch.quantiles([0.0])[0] + 2.0) <= 2.0 * ALPHA  # the zero-weight row is not the minimum
    assert np.isnan(ValueSketch.empty().quantiles([0.5])).all()


def test_threshold_at_stored_and_interpolated_levels():
    quantiles = {0.001: -30.0, 0.01: -20.0, 0.1: -12.0, 0.5: -8.0}
    assert threshold_at(quantiles, 0.01) == -20.0
    assert threshold_at(quantiles, 0.5) == -8.0
    # linear in log(level): 10^-1.5 lies half-way between 0.01 and 0.1
    assert threshold_at(quantiles, 10**-1.5) == pytest.approx(-16.0, rel=1e-12)
    # string keys (as a JSON document holds them) work alike
    assert threshold_at({str(k): v for k, v in quantiles.items()}, 0.003) == threshold_at(quantiles, 0.003)
    for level in (0.0005, 0.6):
        with pytest.raises(InputError, match=r"0\.001 to 0\.5; pick one of 0\.001, 0\.01, 0\.1, 0\.5"):
            threshold_at(quantiles, level)
    with pytest.raises(InputError, match="no log-density quantiles"):
        threshold_at({}, 0.01)


@pytest.mark.parametrize("level, ok", [(1e-6, True), (0.05, True), (0.5, True), (0.0, False), (-0.1, False),
                                       (0.51, False), (1.0, False), (math.nan, False), (math.inf, False)])
def test_outlier_levels(level, ok):
    assert is_outlier_level(level) is ok
