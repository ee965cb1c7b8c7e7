"""Initialisation from a sample: k-means++ finds separated clusters; degenerate samples still give a valid start."""

import numpy as np
import pytest

from sparkgmm.init import initial_mixture, kmeans_plusplus, lloyd


def separated(n_per=200, k=4, d=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[100.0 * j] + [0.0] * (d - 1) for j in range(k)])
    X = np.concatenate([rng.normal(c, 1.0, (n_per, d)) for c in centres])
    return X, centres


def test_kmeans_plusplus_picks_one_row_per_separated_cluster():
    X, _ = separated()
    chosen = kmeans_plusplus(X, 4, np.random.default_rng(1))
    assert sorted(chosen // 200) == [0, 1, 2, 3]


@pytest.mark.parametrize("init_mode", ["k-means", "k-means++", "random_from_data"])
def test_initial_mixture_is_valid_and_reproducible(covariance_type, init_mode):
    X, _ = separated()
    a = initial_mixture(X, None, 4, covariance_type, 1e-6, init_mode, seed=5)
    b = initial_mixture(X, None, 4, covariance_type, 1e-6, init_mode, seed=5)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_allclose(a.weights.sum(), 1.0)
    assert a.covariance_type == covariance_type


def test_kmeans_plusplus_start_recovers_centres():
    X, centres = separated()
    start = initial_mixture(X, None, 4, "full", 1e-6, "k-means++", seed=3)
    order = np.argsort(start.means[:, 0])
    np.testing.assert_allclose(start.means[order], centres, atol=0.3)
    np.testing.assert_allclose(start.weights, 0.25, atol=1e-9)


@pytest.mark.parametrize("init_mode", ["k-means", "k-means++", "random_from_data"])
def test_duplicate_rows_give_a_start_at_the_row_with_covariances_of_reg_covar(covariance_type, init_mode):
    """Every centre is the one row, so every row joins one group (a tie goes to the first centre): that component has
    all the weight and the row as its mean, the others none (but scikit-learn's 10 eps per count, stats.NK_EPS), and
    with no scatter in any group every covariance is reg_covar on the diagonal."""
    row = np.array([2.0, -1.0, 0.5])
    reg_covar = 1e-4
    start = initial_mixture(np.tile(row, (50, 1)), None, 3, covariance_type, reg_covar, init_mode, seed=0)
    full = start.weights.argmax()
    np.testing.assert_allclose(start.weights, np.eye(3)[full], rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(start.means[full], row, rtol=1e-12)
    identity = {"full": np.broadcast_to(np.eye(3), (3, 3, 3)), "tied": np.eye(3), "diag": np.ones((3, 3)),
                "spherical": np.ones(3)}[covariance_type]
    np.testing.assert_allclose(start.covariances, reg_covar * identity, rtol=1e-12, atol=0.0)


def test_unknown_init_mode():
    with pytest.raises(ValueError, match="initMode"):
        initial_mixture(np.ones((5, 2)), None, 2, "full", 1e-6, "kmeans||", seed=0)


def test_lloyd_moves_centres_to_cluster_means():
    X, centres = separated()
    start = centres + np.array([[20.0, 5.0]])  # every start is off, but nearest to its own cluster
    refined = lloyd(X, None, start)
    expected = np.stack([X[i * 200 : (i + 1) * 200].mean(0) for i in range(4)])
    np.testing.assert_allclose(refined, expected, rtol=1e-12)
    weighted = lloyd(X, np.r_[np.full(200, 3.0), np.ones(600)], start)
    np.testing.assert_allclose(weighted, expected, rtol=1e-12)  # a constant weight within a cluster changes nothing
