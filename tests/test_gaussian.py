"""Densities against scipy.stats.multivariate_normal, the independent reference."""

import numpy as np
import pytest
from scipy import stats

from helpers import make_mixture
from sparkgmm.gaussian import CovarianceError, log_gaussian_prob, precisions_cholesky


def full_covariance(mixture, j):
    cov = mixture.covariances
    d = mixture.n_features
    return {
        "full": lambda: cov[j],
        "tied": lambda: cov,
        "diag": lambda: np.diag(cov[j]),
        "spherical": lambda: np.eye(d) * cov[j],
    }[mixture.covariance_type]()


def test_log_prob_matches_scipy(covariance_type):
    mixture = make_mixture(covariance_type, n_components=4, n_features=5, seed=1)
    X = np.random.default_rng(2).normal(0.0, 4.0, (300, 5))
    ours = log_gaussian_prob(X, mixture.means, mixture.precisions_cholesky, covariance_type)
    assert ours.shape == (300, 4)
    for j in range(4):
        expected = stats.multivariate_normal(mixture.means[j], full_covariance(mixture, j)).logpdf(X)
        np.testing.assert_allclose(ours[:, j], expected, rtol=1e-12, atol=1e-12)


def test_log_prob_keeps_precision_on_offset_data():
    # Rows and means far from the origin: the centred computation must agree with scipy on the shifted problem.
    mixture = make_mixture("full", n_components=2, n_features=3, seed=3)
    X = np.random.default_rng(4).normal(0.0, 2.0, (50, 3))
    offset = 1e7
    shifted = log_gaussian_prob(X + offset, mixture.means + offset, mixture.precisions_cholesky, "full")
    plain = log_gaussian_prob(X, mixture.means, mixture.precisions_cholesky, "full")
    np.testing.assert_allclose(shifted, plain, rtol=1e-8)


def test_high_dimensional_densities_do_not_underflow():
    # At d=128 a density is ~1e-100 or less: in linear space it underflows; in log space it stays finite.
    rng = np.random.default_rng(5)
    means = rng.normal(0, 1, (2, 128))
    covariances = np.stack([np.eye(128)] * 2)
    X = rng.normal(0, 1, (10, 128))
    ours = log_gaussian_prob(X, means, precisions_cholesky(covariances, "full"), "full")
    expected = stats.multivariate_normal(means[0], covariances[0]).logpdf(X)
    assert np.all(ours[:, 0] < -150)
    np.testing.assert_allclose(ours[:, 0], expected, rtol=1e-12)


@pytest.mark.parametrize(
    "covariance_type, covariances, message",
    [
        ("full", np.array([[[1.0, 2.0], [2.0, 1.0]]]), "component 0"),
        ("tied", np.array([[1.0, 0.0], [0.0, -1.0]]), "tied covariance"),
        ("diag", np.array([[1.0, 0.0]]), "component 0"),
        ("spherical", np.array([-1.0]), "component 0"),
    ],
)
def test_non_positive_definite_covariance_is_named(covariance_type, covariances, message):
    with pytest.raises(CovarianceError, match=message) as info:
        precisions_cholesky(covariances, covariance_type)
    assert "regCovar" in str(info.value)
