"""Sufficient statistics, their merge, and the M-step, against plain NumPy computed from responsibilities."""

import numpy as np
import pytest

from helpers import make_mixture
from sparkgmm.stats import SufficientStats, accumulate, m_step


def data_and_mixture(covariance_type, n=400, seed=0):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4, seed=seed)
    X, _ = mixture.sample(n, seed=seed + 1)
    return X, mixture


def run_accumulate(X, w, mixture, count_hard=True):
    return accumulate(
        np.ascontiguousarray(X.T), w, mixture.weights, mixture.means, mixture.precisions_cholesky,
        mixture.covariance_type, count_hard,
    )


def assert_stats_close(a: SufficientStats, b: SufficientStats, rtol=1e-12):
    assert a.n_samples == b.n_samples
    np.testing.assert_allclose(a.weight_sum, b.weight_sum, rtol=rtol)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=rtol)
    for name in ("nk", "first", "second"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-9)
    np.testing.assert_array_equal(a.hard_counts, b.hard_counts)


@pytest.mark.parametrize("weighted", [False, True])
def test_stats_match_naive_computation(covariance_type, weighted):
    X, mixture = data_and_mixture(covariance_type)
    w = np.random.default_rng(9).uniform(0.1, 3.0, X.shape[0]) if weighted else None
    stats = run_accumulate(X, w, mixture)
    resp = mixture.predict_proba(X)
    sw = np.ones(X.shape[0]) if w is None else w
    wresp = resp * sw[:, None]
    np.testing.assert_allclose(stats.nk, wresp.sum(0), rtol=1e-12)
    np.testing.assert_allclose(stats.log_likelihood, mixture.score_samples(X) @ sw, rtol=1e-12)
    np.testing.assert_array_equal(stats.hard_counts, np.bincount(resp.argmax(1), minlength=3))
    for j in range(3):
        diff = X - mixture.means[j]
        np.testing.assert_allclose(stats.first[j], wresp[:, j] @ diff, rtol=1e-10, atol=1e-10)
        scatter = (diff * wresp[:, j : j + 1]).T @ diff
        expected = scatter if covariance_type in ("full", "tied") else np.diag(scatter)
        np.testing.assert_allclose(stats.second[j], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_merge_over_random_splits_equals_one_pass(covariance_type, weighted):
    X, mixture = data_and_mixture(covariance_type, n=1000)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.1, 3.0, X.shape[0]) if weighted else None
    whole = run_accumulate(X, w, mixture)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, X.shape[0]), size=rng.integers(1, 8), replace=False))
        pieces = [
            run_accumulate(X[a:b], None if w is None else w[a:b], mixture)
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, X.shape[0]], strict=True)
        ]
        # Merge in a random tree order: associativity means the shape of the reduction does not matter.
        while len(pieces) > 1:
            i = int(rng.integers(len(pieces) - 1))
            pieces[i : i + 2] = [pieces[i].merge(pieces[i + 1])]
        assert_stats_close(pieces[0], whole)


def test_empty_block_gives_zero_stats(covariance_type):
    X, mixture = data_and_mixture(covariance_type)
    empty = run_accumulate(X[:0], None, mixture)
    assert empty.n_samples == 0 and empty.log_likelihood == 0.0
    assert_stats_close(empty.merge(run_accumulate(X, None, mixture)), run_accumulate(X, None, mixture))


def test_m_step_matches_weighted_empirical_estimates(covariance_type):
    X, mixture = data_and_mixture(covariance_type, n=600)
    stats = run_accumulate(X, None, mixture)
    weights, means, covariances = m_step(stats, mixture.means, covariance_type, reg_covar=1e-3)
    resp = mixture.predict_proba(X)
    nk = resp.sum(0)
    np.testing.assert_allclose(weights, nk / nk.sum(), rtol=1e-12)
    expected_means = resp.T @ X / nk[:, None]
    np.testing.assert_allclose(means, expected_means, rtol=1e-10)
    per_component = np.stack([np.cov(X.T, aweights=resp[:, j], bias=True) for j in range(3)])
    d = X.shape[1]
    expected = {
        "full": lambda: per_component + 1e-3 * np.eye(d),
        "tied": lambda: (per_component * nk[:, None, None]).sum(0) / nk.sum() + 1e-3 * np.eye(d),
        "diag": lambda: np.diagonal(per_component, axis1=1, axis2=2) + 1e-3,
        "spherical": lambda: np.diagonal(per_component, axis1=1, axis2=2).mean(1) + 1e-3,
    }[covariance_type]()
    np.testing.assert_allclose(covariances, expected, rtol=1e-9)


def test_mean_log_likelihood_needs_rows():
    with pytest.raises(ValueError, match="no rows"):
        _ = SufficientStats.zeros(2, 2, "full").mean_log_likelihood


def test_wide_data_takes_the_symmetric_update_path_and_agrees():
    from sparkgmm.stats import SYRK_MIN_FEATURES

    d = SYRK_MIN_FEATURES + 6
    mixture = make_mixture("full", n_components=2, n_features=d, seed=5)
    X, _ = mixture.sample(300, seed=6)
    stats = run_accumulate(X, None, mixture)
    resp = mixture.predict_proba(X)
    for j in range(2):
        diff = X - mixture.means[j]
        np.testing.assert_allclose(stats.second[j], (diff * resp[:, j : j + 1]).T @ diff, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_float32_blocks_give_the_float64_statistics_to_single_precision(covariance_type, offset):
    from sparkgmm.mixture import Mixture
    from sparkgmm.passes import EStep, pack_block

    X, mixture = data_and_mixture(covariance_type, n=3000)
    w = np.random.default_rng(3).uniform(0.1, 3.0, X.shape[0])
    X = X + offset
    mixture = Mixture(mixture.weights, mixture.means + offset, mixture.covariances, covariance_type)
    request = EStep(mixture, count_hard=True, worst=5)
    wide = request.on_block(pack_block(X, w, "float64"))
    block = pack_block(X, w, "float32")
    assert block.xt.dtype == np.float32 and block.origin.dtype == np.float64
    narrow = request.on_block(block)
    # float64 accumulators: the sums are exact to float32 rounding of each row's offset from the block's mean
    for name in ("nk", "first", "second"):
        got, want = getattr(narrow, name), getattr(wide, name)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())
    np.testing.assert_allclose(narrow.log_likelihood, wide.log_likelihood, rtol=1e-6)
    assert np.abs(narrow.hard_counts - wide.hard_counts).sum() <= 2
    # the worst-explained rows come back in data coordinates
    np.testing.assert_allclose(narrow.worst.rows, wide.worst.rows, rtol=0, atol=1e-5)
