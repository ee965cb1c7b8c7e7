"""The EM loop on in-memory data against scikit-learn from the same initial parameters (scikit-learn is the oracle)."""


import numpy as np
import pytest

from helpers import assert_matches_sklearn, overlapping_data_and_start, sklearn_fit
from sparkgmm.em import local_passes, run_em


@pytest.mark.parametrize("max_iter", [1, 7])
def test_local_em_equals_sklearn(covariance_type, max_iter):
    X, start = overlapping_data_and_start(covariance_type)
    result = run_em(start, local_passes(X), max_iter=max_iter, tol=0.0, reg_covar=1e-6)
    reference = sklearn_fit(X, start, max_iter)
    assert result.n_iter == reference.n_iter_ == max_iter
    assert_matches_sklearn(result.mixture, reference)
    # history[-2] is the log-likelihood of the parameters entering the last iteration: scikit-learn's lower bound.
    np.testing.assert_allclose(result.log_likelihood_history[-2], reference.lower_bound_, rtol=1e-10)
    np.testing.assert_allclose(result.log_likelihood, reference.score(X), rtol=1e-10)


def test_convergence_stops_where_sklearn_stops(covariance_type):
    X, start = overlapping_data_and_start(covariance_type, seed=4)
    result = run_em(start, local_passes(X), max_iter=500, tol=1e-4, reg_covar=1e-6)
    reference = sklearn_fit(X, start, 500, tol=1e-4)
    assert result.converged and reference.converged_
    assert result.n_iter == reference.n_iter_
    assert_matches_sklearn(result.mixture, reference)


def test_log_likelihood_never_decreases(covariance_type):
    X, start = overlapping_data_and_start(covariance_type, seed=7)
    result = run_em(start, local_passes(X), max_iter=40, tol=0.0, reg_covar=1e-6)
    history = np.array(result.log_likelihood_history)
    assert len(history) == result.n_iter + 1 == 41
    assert np.all(np.diff(history) >= -1e-10 * np.abs(history[1:]))
    assert history[-1] > history[0]


def test_sample_weights_equal_repeated_rows(covariance_type):
    X, start = overlapping_data_and_start(covariance_type, n=300, seed=2)
    counts = np.random.default_rng(0).integers(1, 4, X.shape[0])
    weighted = run_em(start, local_passes(X, counts.astype(float)), max_iter=5, tol=0.0, reg_covar=1e-6)
    repeated = run_em(start, local_passes(np.repeat(X, counts, axis=0)), max_iter=5, tol=0.0, reg_covar=1e-6)
    np.testing.assert_allclose(weighted.mixture.means, repeated.mixture.means, rtol=1e-10)
    np.testing.assert_allclose(weighted.mixture.covariances, repeated.mixture.covariances, rtol=1e-10)
    np.testing.assert_allclose(weighted.log_likelihood, repeated.log_likelihood, rtol=1e-12)


def test_zero_iterations_evaluate_the_start():
    X, start = overlapping_data_and_start("diag")
    result = run_em(start, local_passes(X), max_iter=0, tol=0.0, reg_covar=1e-6)
    assert result.n_iter == 0
    for name in ("weights", "means", "covariances"):
        assert np.array_equal(getattr(result.mixture, name), getattr(start, name)), name
    # what the fitted mixture remembers: the statistics of the rows under it, as one batch
    assert (result.mixture.seen.rows, result.mixture.seen.batches) == (X.shape[0], 1)
    np.testing.assert_allclose(result.mixture.seen.nk, start.predict_proba(X).sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(result.log_likelihood, start.score(X), rtol=1e-12)
    assert sum(result.cluster_sizes) == X.shape[0]


@pytest.mark.parametrize("covariance_type, seed", [pytest.param("full", 1, marks=pytest.mark.slow), ("diag", 0)])
def test_plain_em_on_digits_is_sklearn_step_for_step_with_or_without_reseeds(covariance_type, seed):
    # scikit-learn's digits (1,797 x 64, k=10) from a k-means start: its optimum keeps small components that regCovar
    # keeps valid. Before maxReseeds, components under d + 1 rows were re-seeded here 10 times and EM ended elsewhere.
    from sklearn.datasets import load_digits

    from sparkgmm.init import initial_mixture

    X = load_digits().data.astype(np.float64)
    start = initial_mixture(X, None, 10, covariance_type, 1e-6, "k-means", seed)
    reference = sklearn_fit(X, start, 1000, tol=1e-3)
    for max_reseeds in (0, 8):
        result = run_em(start, local_passes(X), max_iter=1000, tol=1e-3, reg_covar=1e-6, max_reseeds=max_reseeds)
        assert result.n_reseeds == 0 and result.converged and reference.converged_
        assert result.n_iter == reference.n_iter_
        assert_matches_sklearn(result.mixture, reference, rtol=1e-6)
