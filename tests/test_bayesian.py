"""The variational Bayesian mixture's core (``sparkgmm.bayesian`` through ``sparkgmm.em``'s loop), in memory, against
scikit-learn's ``BayesianGaussianMixture`` started from the same responsibilities, and against direct computations."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp, xlogy
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture

from helpers import (
    BAYESIAN_K as K,
    as_files,
    assert_posterior_matches,
    make_mixture,
)
from helpers import bayesian_data_and_start as data_and_start
from helpers import sklearn_bayesian_fit as sklearn_fit
from sparkgmm.bayesian import (
    PRIOR_TYPES,
    Prior,
    _merged,
    from_sklearn,
    lower_bound,
    to_sklearn,
    variational_m_step,
)
from sparkgmm.candidates import FitSpec, fit_side_by_side, restart_runs
from sparkgmm.checkpoint import encode, restore
from sparkgmm.em import EMSettings, local_passes, run_em
from sparkgmm.errors import InputError
from sparkgmm.mixture import Mixture
from sparkgmm.stats import SufficientStats, accumulate, stats_from_resp


def our_fit(X, start: Mixture, prior_type: str, max_iter: int, tol: float, sample_weight=None):
    """Our Bayesian fit in memory, with scikit-learn's default priors of the (weighted) rows."""
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    mean = w @ X / w.sum()
    centred = X - mean
    covariance = (centred * w[:, None]).T @ centred / (w.sum() - 1.0)
    prior = Prior.default(K, start.covariance_type, mean, covariance, prior_type)
    return run_em(start, local_passes(X, sample_weight, block_rows=250), max_iter=max_iter, tol=tol, reg_covar=1e-6,
                  prior=prior)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_a_fixed_number_of_iterations_equals_sklearns_from_the_same_responsibilities(covariance_type, prior_type):
    X, start = data_and_start(covariance_type)
    theirs = sklearn_fit(X, start, prior_type, max_iter=7, tol=0.0)
    ours = our_fit(X, start, prior_type, max_iter=7, tol=0.0)
    assert ours.posterior is not None and ours.n_iter == theirs.n_iter_ == 7
    assert_posterior_matches(ours.posterior, theirs)
    np.testing.assert_allclose(ours.lower_bound_history, np.ravel(theirs.lower_bounds_), rtol=1e-10)
    assert ours.mixture is ours.posterior.mixture


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_at_convergence_it_stops_at_sklearns_iteration_with_its_parameters(covariance_type, prior_type):
    X, start = data_and_start(covariance_type)
    theirs = sklearn_fit(X, start, prior_type, max_iter=500, tol=1e-3)
    ours = our_fit(X, start, prior_type, max_iter=500, tol=1e-3)
    assert theirs.converged_ and ours.converged
    assert ours.n_iter == theirs.n_iter_ > 20
    assert_posterior_matches(ours.posterior, theirs)
    np.testing.assert_allclose(ours.objective, float(np.ravel(theirs.lower_bound_)[0]), rtol=1e-10)
    # the model's log-likelihood is that of the returned mixture (the posterior's expected parameters)
    np.testing.assert_allclose(ours.log_likelihood, ours.mixture.score(X), rtol=1e-12)
    np.testing.assert_allclose(ours.log_likelihood_history[0], start.score(X), rtol=1e-12)


def test_weighted_rows_equal_replicated_rows(covariance_type):
    X, start = data_and_start(covariance_type)
    counts = np.random.default_rng(3).integers(1, 4, X.shape[0])
    weighted = our_fit(X, start, "dirichlet_process", max_iter=30, tol=0.0, sample_weight=counts.astype(float))
    replicated = our_fit(np.repeat(X, counts, axis=0), start, "dirichlet_process", max_iter=30, tol=0.0)
    a, b = weighted.posterior, replicated.posterior
    for name in ("weight_concentration", "mean_precision", "means", "degrees_of_freedom", "covariances"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(weighted.lower_bound_history, replicated.lower_bound_history, rtol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_entropy_term_is_the_weighted_sum_of_r_log_r(weighted):
    mixture = make_mixture("full", 4, 3, seed=2)
    X, _ = mixture.sample(700, seed=3)
    w = np.random.default_rng(4).uniform(0.0, 2.0, X.shape[0]) if weighted else None
    log_weights = np.array([-0.3, -2.0, -1.1, -4.0])
    stats = accumulate(np.ascontiguousarray(X.T), w, mixture.weights, mixture.means, mixture.precisions_cholesky,
                       "full", log_weights=log_weights, entropy=True)
    # the same responsibilities from a mixture whose weights are the normalised exp(log_weights)
    normalised = np.exp(log_weights) / np.exp(log_weights).sum()
    resp = Mixture(normalised, mixture.means, mixture.covariances, "full").predict_proba(X)
    expected = (xlogy(resp, resp).sum(axis=1) * (1.0 if w is None else w)).sum()
    np.testing.assert_allclose(stats.entropy, expected, rtol=1e-11)
    plain = accumulate(np.ascontiguousarray(X.T), w, mixture.weights, mixture.means, mixture.precisions_cholesky,
                       "full")
    assert plain.entropy == 0.0 and stats.merge(plain).entropy == stats.entropy


def test_a_dirichlet_process_switches_off_the_components_the_data_do_not_need():
    truth = Mixture(np.full(3, 1 / 3), [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]], np.stack([np.eye(2)] * 3))
    X, _ = truth.sample(3000, seed=5)
    rng = np.random.default_rng(6)
    start = Mixture(np.full(8, 1 / 8), X[rng.choice(X.shape[0], 8, replace=False)], np.stack([np.eye(2)] * 8))
    prior = Prior.default(8, "full", X.mean(0), np.cov(X.T), weight_concentration=1e-3)
    result = run_em(start, local_passes(X), max_iter=500, tol=1e-3, reg_covar=1e-6, prior=prior)
    assert result.converged and result.posterior is not None
    assert result.posterior.effective_components() == 3
    used = np.sort(result.mixture.means[result.mixture.weights > 0.01], axis=0)
    np.testing.assert_allclose(used, np.sort(truth.means, axis=0), atol=0.15)


@pytest.mark.parametrize(("change", "message"), [
    ({"degrees_of_freedom": 1.5}, "degreesOfFreedomPrior=1.5 must be > n_features - 1 = 2"),
    ({"weight_concentration": 0.0}, "weightConcentrationPrior=0.0 must be > 0"),
    ({"mean_precision": -1.0}, "meanPrecisionPrior=-1.0 must be > 0"),
    ({"mean": np.zeros(2)}, "covariancePrior for full covariances of 2 features must have shape (2, 2); got (3, 3)"),
    ({"covariance": -np.eye(3)}, "covariancePrior must be positive definite"),
    ({"prior_type": "dirichlet"}, "weightConcentrationPriorType must be one of dirichlet_process, "
                                  "dirichlet_distribution; got 'dirichlet'"),
])
def test_bad_priors_are_refused_with_one_line_naming_them(change, message):
    with pytest.raises(InputError) as error:
        Prior.default(4, "full", np.zeros(3), np.eye(3), **change)
    assert str(error.value) == message


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_to_sklearn_gives_a_fitted_model_that_scores_and_goes_on_as_scikit_learn_would(covariance_type, prior_type):
    X, start = data_and_start(covariance_type)
    seven = our_fit(X, start, prior_type, max_iter=7, tol=0.0)
    twelve = our_fit(X, start, prior_type, max_iter=12, tol=0.0)
    theirs = sklearn_fit(X, start, prior_type, max_iter=7, tol=0.0)
    prior = Prior.default(K, covariance_type, X.mean(0), np.cov(X.T), prior_type)
    converted = to_sklearn(seven.posterior, prior, max_iter=5, tol=0.0, warm_start=True, reg_covar=1e-6)
    np.testing.assert_allclose(converted.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(converted.score_samples(X), theirs.score_samples(X), rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        converted.fit(X)  # five more iterations from our seventh, under the same priors
    assert_posterior_matches(twelve.posterior, converted)
    posterior, read_prior = from_sklearn(theirs)
    assert_posterior_matches(posterior, theirs, rtol=1e-15)
    for name in ("prior_type", "covariance_type", "n_components", "weight_concentration", "mean_precision",
                 "degrees_of_freedom"):
        assert getattr(read_prior, name) == getattr(prior, name), name
    np.testing.assert_allclose(read_prior.mean, prior.mean, rtol=1e-12)  # np.var and np.cov round apart
    np.testing.assert_allclose(read_prior.covariance, prior.covariance, rtol=1e-12)


def test_from_sklearn_refuses_an_unfitted_model_by_name():
    with pytest.raises(InputError, match=r"not fitted .*weight_concentration_"):
        from_sklearn(SkBayesianGaussianMixture())


def test_a_bayesian_fit_resumed_after_any_pass_ends_exactly_where_the_uninterrupted_fit_ends():
    X, _ = data_and_start("full")
    prior = Prior.default(4, "full", X.mean(0), np.cov(X.T))
    specs = [FitSpec(4, "full", EMSettings(20, 0.0, 1e-6, "none", 0), "k-means||", seed=3, n_init=2, prior=prior)]
    run_pass = local_passes(X, block_rows=250)
    runs = restart_runs(specs)
    saved = []
    whole = fit_side_by_side(specs, run_pass, runs, after_pass=lambda n: saved.append(as_files(*encode({}, runs, n))))
    assert len(saved) == whole[0].passes > 20
    for after in (2, 4, 11, len(saved) - 1):
        resumed_runs = restart_runs(specs)
        passes = restore(*saved[after - 1], resumed_runs, "checkpoint")
        resumed = fit_side_by_side(specs, run_pass, resumed_runs, passes=passes)
        assert resumed[0].best_index == whole[0].best_index
        for a, b in zip(resumed[0].restarts, whole[0].restarts, strict=True):
            for name in ("weight_concentration", "mean_precision", "means", "degrees_of_freedom", "covariances"):
                np.testing.assert_array_equal(getattr(a.result.posterior, name), getattr(b.result.posterior, name))
            assert a.result.lower_bound_history == b.result.lower_bound_history
            assert a.result.log_likelihood_history == b.result.log_likelihood_history


@pytest.mark.parametrize("weighted", [False, True])
def test_a_merge_moves_bound_is_the_bound_of_the_merged_responsibilities(covariance_type, weighted):
    """From one pass's statistics, the bound of a merged posterior equals the one computed directly: the merged
    responsibilities, their statistics, the variational M-step and the lower bound with sum r log r (scipy's xlogy)."""
    X, _ = make_mixture(covariance_type, 4, 3, seed=4, separation=2.0).sample(800, seed=5)
    w = np.random.default_rng(6).uniform(0.2, 2.0, X.shape[0]) if weighted else None
    prior = Prior.default(4, covariance_type, X.mean(0), np.cov(X.T))
    posterior = run_em(make_mixture(covariance_type, 4, 3, seed=4), local_passes(X, w), max_iter=3, tol=0.0,
                       reg_covar=1e-6, prior=prior).posterior
    groups = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 1]], dtype=bool)
    stats = accumulate(np.ascontiguousarray(X.T), w, posterior.mixture.weights, posterior.means,
                       posterior.mixture.precisions_cholesky, covariance_type,
                       log_weights=posterior.estep_log_weights(), entropy=True, merge_groups=groups)
    log_resp = posterior.mixture._weighted_log_prob(X) - np.log(posterior.mixture.weights) \
        + posterior.estep_log_weights()
    resp = np.exp(log_resp - logsumexp(log_resp, axis=1, keepdims=True))
    sw = np.ones(X.shape[0]) if w is None else w
    for rows in ([0], [1], [2], [0, 1]):
        merged = resp.copy()
        for members in groups[rows]:
            first, *rest = np.flatnonzero(members)
            merged[:, first] += merged[:, rest].sum(axis=1)
            merged[:, rest] = 0.0
        centred = X.T[None, :, :] - posterior.means[:, :, None]
        nk, first_moment, second = stats_from_resp(centred, (merged * sw[:, None]).T, covariance_type)
        direct_stats = SufficientStats(X.shape[0], float(sw.sum()), 0.0, nk, first_moment, second,
                                       np.zeros(4, np.int64))
        direct = lower_bound(variational_m_step(direct_stats, posterior.means, prior, 1e-6),
                             float(xlogy(merged, merged).sum(axis=1) @ sw))
        _, ours = _merged(stats, posterior.means, prior, 1e-6, groups, rows)
        np.testing.assert_allclose(ours, direct, rtol=1e-10)


def test_merge_moves_empty_the_components_that_tile_one_cluster():
    truth = Mixture(np.full(3, 1 / 3), [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]], np.stack([np.eye(2)] * 3))
    X, _ = truth.sample(3000, seed=5)
    X = X[np.random.default_rng(1).permutation(X.shape[0])]
    start = Mixture(np.full(12, 1 / 12), X[:12], np.stack([np.eye(2) * 0.5] * 12))  # 12 tiles of 3 clusters
    prior = Prior.default(12, "full", X.mean(0), np.cov(X.T))
    plain = run_em(start, local_passes(X), max_iter=40, tol=0.0, reg_covar=1e-6, prior=prior)
    merging = run_em(start, local_passes(X), max_iter=200, tol=1e-3, reg_covar=1e-6, prior=prior, merge_every=5)
    assert plain.posterior.effective_components() > 3  # 40 plain iterations leave tiles side by side
    assert merging.converged and merging.n_iter < 40 and merging.n_merges == 9
    assert merging.posterior.effective_components() == 3
    used = np.sort(merging.mixture.means[merging.mixture.weights > 0.01], axis=0)
    np.testing.assert_allclose(used, np.sort(truth.means, axis=0), atol=0.15)
    assert merging.lower_bound_history[-1] > plain.lower_bound_history[-1]
