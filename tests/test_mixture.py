"""``Mixture`` scoring against scikit-learn holding the same parameters, sampling, and validation."""

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky

from helpers import make_mixture
from sparkgmm import Mixture


def sklearn_holding(mixture: Mixture) -> SkGaussianMixture:
    """A scikit-learn model carrying exactly these parameters (its own precision factors), as a scoring oracle."""
    model = SkGaussianMixture(n_components=mixture.n_components, covariance_type=mixture.covariance_type)
    model.weights_ = mixture.weights.copy()
    model.means_ = mixture.means.copy()
    model.covariances_ = mixture.covariances.copy()
    model.precisions_cholesky_ = _compute_precision_cholesky(mixture.covariances, mixture.covariance_type)
    return model


def test_scoring_matches_sklearn(covariance_type):
    mixture = make_mixture(covariance_type, n_components=4, n_features=3, seed=11)
    X = np.random.default_rng(0).normal(0.0, 3.0, (500, 3))
    oracle = sklearn_holding(mixture)
    np.testing.assert_allclose(mixture.score_samples(X), oracle.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(mixture.predict_proba(X), oracle.predict_proba(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(mixture.predict(X), oracle.predict(X))
    np.testing.assert_allclose(mixture.score(X), oracle.score(X), rtol=1e-12)
    np.testing.assert_allclose(mixture.bic(X), oracle.bic(X), rtol=1e-12)
    np.testing.assert_allclose(mixture.aic(X), oracle.aic(X), rtol=1e-12)
    assert mixture.n_parameters == oracle._n_parameters()


def test_probabilities_sum_to_one_far_from_every_component():
    mixture = make_mixture("full", n_components=3, n_features=4, seed=2)
    X = np.full((5, 4), 1e3)  # every density underflows in linear space
    proba = mixture.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert np.all(np.isfinite(mixture.score_samples(X)))


def test_sample_is_reproducible_and_has_the_right_moments(covariance_type):
    mixture = make_mixture(covariance_type, n_components=2, n_features=3, seed=4, separation=10.0)
    X1, labels1 = mixture.sample(40_000, seed=7)
    X2, labels2 = mixture.sample(40_000, seed=7)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(labels1, labels2)
    for j in range(2):
        rows = X1[labels1 == j]
        # Standard errors at 20k rows are ~1%: a wrong factor (e.g. L instead of L.T) is far outside 5%.
        np.testing.assert_allclose(rows.mean(0), mixture.means[j], atol=0.05)
        cov = {"full": lambda j=j: mixture.covariances[j], "tied": lambda: mixture.covariances,
               "diag": lambda j=j: np.diag(mixture.covariances[j]),
               "spherical": lambda j=j: np.eye(3) * mixture.covariances[j]}[covariance_type]()
        np.testing.assert_allclose(np.cov(rows.T), cov, atol=0.05 * np.abs(cov).max())
    np.testing.assert_allclose(np.bincount(labels1) / 40_000, mixture.weights, atol=0.01)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(weights=[0.5, 0.5], means=[[0.0]], covariances=[[[1.0]]]), "weights must have shape"),
        (dict(weights=[0.7, 0.7], means=[[0.0], [1.0]], covariances=np.ones((2, 1, 1))), "sum to 1"),
        (dict(weights=[1.0], means=[[np.nan]], covariances=[[[1.0]]]), "NaN"),
        (dict(weights=[1.0], means=[[0.0, 1.0]], covariances=[[[1.0]]]), "covariances must have shape"),
        (dict(weights=[1.0], means=[[0.0]], covariances=[[[1.0]]], covariance_type="banana"), "covariance_type"),
        (dict(weights=[1.0], means=[[0.0]], covariances=[[[-1.0]]]), "not positive definite"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mixture(**kwargs)


def test_scoring_rejects_bad_rows():
    mixture = make_mixture("diag", n_components=2, n_features=3)
    with pytest.raises(ValueError, match="has 2 features"):
        mixture.predict(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="1 rows with NaN"):
        mixture.score_samples(np.array([[0.0, np.inf, 0.0], [0.0, 0.0, 0.0]]))


def test_parameters_are_read_only():
    mixture = make_mixture("full")
    with pytest.raises(ValueError):
        mixture.means[0, 0] = 5.0
