"""SQUAREM: its parameterisation, its safeguards, and that it reaches plain EM's optimum in fewer passes."""

import numpy as np
import pytest

from conftest import make_mixture
from sparkgmm import Mixture
from sparkgmm.acceleration import Squarem, from_vector, to_vector
from sparkgmm.em import local_passes, run_em


def test_the_parameterisation_round_trips(covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4, seed=2)
    back = from_vector(to_vector(mixture), mixture)
    np.testing.assert_allclose(back.weights, mixture.weights, rtol=1e-12)
    np.testing.assert_allclose(back.means, mixture.means, rtol=1e-12)
    np.testing.assert_allclose(back.covariances, mixture.covariances, rtol=1e-10, atol=1e-12)


def test_every_point_of_the_parameterisation_is_a_valid_mixture(covariance_type):
    like = make_mixture(covariance_type, n_components=3, n_features=3, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        point = from_vector(rng.normal(0.0, 3.0, to_vector(like).shape), like)  # Mixture validates on construction
        assert np.all(np.isfinite(point.precisions_cholesky)) and abs(point.weights.sum() - 1.0) < 1e-12


def test_step_length_one_is_the_plain_em_step_and_grows_after():
    a, b, c = (make_mixture("full", seed=s) for s in range(3))
    squarem = Squarem()
    assert squarem.extrapolate(a, b, c) is None and squarem.step_max == 4.0  # first cycle: the EM step itself
    squarem.rejected()
    assert squarem.step_max == 1.0 and squarem.rejections == 1


def slow_data(n=20_000, seed=0):
    """Four heavily overlapping components: plain EM creeps (hundreds of iterations to tol 1e-8)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 0.5, (4, 3, 3))
    truth = Mixture([0.4, 0.3, 0.2, 0.1], rng.normal(0.0, 1.0, (4, 3)), a @ a.transpose(0, 2, 1) + 0.5 * np.eye(3))
    X, _ = truth.sample(n, seed=seed + 1)
    start = Mixture(np.full(4, 0.25), X[rng.choice(n, 4, replace=False)], np.stack([np.cov(X.T)] * 4))
    return X, start


def test_squarem_reaches_the_plain_em_optimum_in_far_fewer_passes():
    X, start = slow_data()
    plain = run_em(start, local_passes(X), max_iter=5000, tol=1e-9, reg_covar=1e-6)
    fast = run_em(start, local_passes(X), max_iter=5000, tol=1e-9, reg_covar=1e-6, acceleration="squarem")
    assert plain.converged and fast.converged and plain.n_iter > 200
    assert fast.n_extrapolations > 0
    assert fast.log_likelihood >= plain.log_likelihood - 1e-6
    assert fast.n_passes * 2 <= plain.n_passes
    order = np.argsort(fast.mixture.means[:, 0])
    np.testing.assert_allclose(fast.mixture.means[order], plain.mixture.means[np.argsort(plain.mixture.means[:, 0])],
                               atol=2e-3)
    history = np.array(fast.log_likelihood_history)
    assert np.all(np.diff(history) >= 0.0)  # rejected extrapolations never enter the history


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical"])
def test_squarem_for_every_covariance_type(covariance_type):
    truth = make_mixture(covariance_type, n_components=3, n_features=3, seed=5, separation=1.5)
    X, _ = truth.sample(4000, seed=2)
    start = make_mixture(covariance_type, n_components=3, n_features=3, seed=9, separation=1.5)
    plain = run_em(start, local_passes(X), max_iter=3000, tol=1e-9, reg_covar=1e-6)
    fast = run_em(start, local_passes(X), max_iter=3000, tol=1e-9, reg_covar=1e-6, acceleration="squarem")
    assert fast.log_likelihood >= plain.log_likelihood - 1e-6
    assert fast.n_passes <= plain.n_passes
    assert np.all(np.diff(fast.log_likelihood_history) >= 0.0)


def test_an_extrapolation_that_lowers_the_log_likelihood_is_replaced_by_the_em_step(monkeypatch):
    X, start = slow_data(n=3000)
    from sparkgmm import acceleration

    def harmful(self, theta0, theta1, theta2):
        self.extrapolations += 1  # a far-off point: valid, but much worse than the EM step
        return Mixture(theta2.weights, theta2.means + 50.0, theta2.covariances, theta2.covariance_type)

    monkeypatch.setattr(acceleration.Squarem, "extrapolate", harmful)
    fast = run_em(start, local_passes(X), max_iter=30, tol=0.0, reg_covar=1e-6, acceleration="squarem")
    plain = run_em(start, local_passes(X), max_iter=30, tol=0.0, reg_covar=1e-6)
    assert fast.n_rejected == fast.n_extrapolations > 0
    # Every kept point is the plain EM point: the history is a prefix of plain EM's, shorter by the wasted passes.
    kept = len(fast.log_likelihood_history)
    assert kept == 31 - fast.n_rejected
    np.testing.assert_allclose(fast.log_likelihood_history, plain.log_likelihood_history[:kept], rtol=1e-12)
