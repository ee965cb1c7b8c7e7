"""The training log-density quantiles of a fit (the final pass's sketch) against exact quantiles of the returned
mixture's ``score_samples``, in NumPy; and the outlier params' validation."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from helpers import make_mixture
from sparkgmm import Mixture
from sparkgmm.em import run_em, local_passes
from sparkgmm.errors import InputError
from sparkgmm.passes import log_density_ceiling
from sparkgmm.sketch import ALPHA, QUANTILE_LEVELS


def dense_covariances(mixture) -> np.ndarray:
    k, d = mixture.means.shape
    cov = mixture.covariances
    return {
        "full": lambda: cov,
        "tied": lambda: np.repeat(cov[None], k, axis=0),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: np.stack([c * np.eye(d) for c in cov]),
    }[mixture.covariance_type]()


def test_ceiling_is_the_mixture_density_at_its_peaks_bound_and_bounds_every_row(covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4, seed=6)
    peaks = [multivariate_normal(mean, cov).logpdf(mean)
             for mean, cov in zip(mixture.means, dense_covariances(mixture), strict=True)]
    ceiling = log_density_ceiling(mixture)
    np.testing.assert_allclose(ceiling, logsumexp(np.log(mixture.weights) + peaks), rtol=1e-12)
    X, _ = mixture.sample(2000, seed=1)
    X = np.vstack([X, mixture.means])  # the densest places there are
    assert mixture.score_samples(X).max() <= ceiling


@pytest.mark.parametrize("weighted", [False, True])
def test_final_pass_quantiles_are_the_exact_quantiles_of_the_fit_within_the_sketch_accuracy(covariance_type,
                                                                                             weighted):
    truth = make_mixture(covariance_type, n_components=3, n_features=3, seed=7, separation=4.0)
    X, _ = truth.sample(4000, seed=2)
    X[:7] += 40.0  # a few far outliers: the lowest levels land on them
    w = np.random.default_rng(3).exponential(1.0, len(X)) if weighted else None
    result = run_em(truth, local_passes(X, w, block_rows=900), max_iter=20, tol=1e-6, reg_covar=1e-6)
    assert tuple(result.log_density_quantiles) == QUANTILE_LEVELS
    got = np.array(list(result.log_density_quantiles.values()))
    log_density = result.mixture.score_samples(X)
    exact = np.quantile(log_density, QUANTILE_LEVELS, method="inverted_cdf", weights=w)
    distance = log_density_ceiling(result.mixture) - exact
    assert np.all(distance > 0)
    np.testing.assert_array_less(np.abs(got - exact), ALPHA * distance * (1 + 1e-9) + 1e-9)
    assert exact[0] < np.sort(log_density)[7]  # the outliers were there to find


def test_float32_blocks_give_the_same_quantiles_within_the_accuracy():
    truth = make_mixture("full", n_components=2, n_features=3, seed=9)
    X, _ = truth.sample(3000, seed=4)
    X += 1e4  # offset data: float32 blocks keep their digits relative to the block's mean
    result = run_em(Mixture(truth.weights, truth.means + 1e4, truth.covariances, "full"),
                    local_passes(X, block_rows=700, dtype="float32"), max_iter=5, tol=0.0, reg_covar=1e-6)
    got = np.array(list(result.log_density_quantiles.values()))
    log_density = result.mixture.score_samples(X)
    exact = np.quantile(log_density, QUANTILE_LEVELS, method="inverted_cdf")
    distance = log_density_ceiling(result.mixture) - exact
    np.testing.assert_array_less(np.abs(got - exact), ALPHA * distance + 1e-4)


@pytest.mark.parametrize("params, message", [
    ({"outlierQuantile": 0.7}, "outlierQuantile=0.7 must be a quantile level in (0, 0.5]"),
    ({"outlierQuantile": 0.0}, "outlierQuantile=0.0 must be a quantile level in (0, 0.5]"),
    ({"outlierQuantile": 0.01, "outlierCol": " "}, "outlierCol=' ' must not be empty"),
])
def test_outlier_params_are_validated(params, message):
    from sparkgmm import GaussianMixture

    with pytest.raises(InputError) as error:
        GaussianMixture(**params)._validated()
    assert str(error.value).startswith(message)
    estimator = GaussianMixture(outlierQuantile=0.01)
    assert estimator._validated()["outlierQuantile"] == 0.01 and estimator.getOutlierCol() == "isOutlier"
    assert estimator.setOutlierQuantile(None).getOutlierQuantile() is None
