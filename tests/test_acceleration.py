"""SQUAREM: its parameterisation, its safeguards, and that it reaches plain EM's optimum in fewer passes."""

import numpy as np
import pytest
from scipy.special import logsumexp

from helpers import make_mixture
from sparkgmm import Mixture
from sparkgmm.acceleration import Squarem, from_vector, to_vector
from sparkgmm.em import local_passes, run_em


def test_the_parameterisation_round_trips(covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4, seed=2)
    back = from_vector(to_vector(mixture), mixture)
    np.testing.assert_allclose(back.weights, mixture.weights, rtol=1e-12)
    np.testing.assert_allclose(back.means, mixture.means, rtol=1e-12)
    np.testing.assert_allclose(back.covariances, mixture.covariances, rtol=1e-10, atol=1e-12)


def mixture_of_vector(vector: np.ndarray, k: int, d: int, covariance_type: str) -> Mixture:
    """The mapping the module's docstring states, written out entry by entry: the weights are the softmax of the
    log-weights, the means are taken as they are, and each covariance is ``L L^T`` with ``L`` lower triangular,
    filled row by row, its diagonal stored as logarithms; diagonal and spherical variances are stored as logarithms."""
    log_weights, means, rest = vector[:k], vector[k : k + k * d].reshape(k, d), vector[k + k * d :]
    weights = np.exp(log_weights) / np.exp(log_weights).sum()
    if covariance_type in ("diag", "spherical"):
        return Mixture(weights, means, np.exp(rest).reshape((k, d) if covariance_type == "diag" else (k,)),
                       covariance_type)
    covariances = []
    entries = iter(rest)
    for _ in range(k if covariance_type == "full" else 1):
        factor = np.zeros((d, d))
        for i in range(d):
            for j in range(i + 1):
                value = next(entries)
                factor[i, j] = np.exp(value) if i == j else value
        covariances.append(factor @ factor.T)
    assert next(entries, None) is None  # the vector holds exactly these entries
    return Mixture(weights, means, np.array(covariances if covariance_type == "full" else covariances[0]),
                   covariance_type)


def test_every_vector_is_the_mixture_the_mapping_formula_gives(covariance_type):
    k, d = 3, 3
    like = make_mixture(covariance_type, n_components=k, n_features=d, seed=0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        vector = rng.normal(0.0, 1.5, to_vector(like).shape)
        point = from_vector(vector, like)
        expected = mixture_of_vector(vector, k, d, covariance_type)
        assert point.covariance_type == covariance_type
        np.testing.assert_allclose(point.weights, expected.weights, rtol=1e-13)
        np.testing.assert_array_equal(point.means, expected.means)
        np.testing.assert_allclose(point.covariances, expected.covariances, rtol=1e-12,
                                   atol=1e-13 * np.abs(expected.covariances).max())
        # And back: the vector again, but for the log-weights, which come back normalised (softmax ignores a shift).
        back = to_vector(point)
        np.testing.assert_allclose(back[:k], vector[:k] - logsumexp(vector[:k]), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(back[k:], vector[k:], rtol=1e-9, atol=1e-9)  # a Cholesky factor's round-off


def squarem_cycle(start: Mixture, ratio: float, rng: np.random.Generator, first: float = 0.05):
    """Three successive points theta0, theta1 = theta0 + r and theta2 = theta0 + 2 r + v in the parameter space, with
    random directions and |r| = ``first``, |v| = |r| / ``ratio``; returned with the r and v that ``to_vector`` of the
    three mixtures gives (the weights' part is renormalised, so |r| / |v| is only about ``ratio``)."""
    x0 = to_vector(start)
    r, v = rng.normal(size=(2, x0.size))
    r *= first / np.linalg.norm(r)
    v *= first / ratio / np.linalg.norm(v)
    theta = (start, from_vector(x0 + r, start), from_vector(x0 + 2.0 * r + v, start))
    x = [to_vector(m) for m in theta]
    return theta, x[1] - x[0], x[2] - 2.0 * x[1] + x[0]


def assert_is_squared_step(got: Mixture, theta, r: np.ndarray, v: np.ndarray, step: float) -> None:
    """``got`` is SqS3's point theta0 + 2 s r + s^2 v for the step length ``step``."""
    expected = from_vector(to_vector(theta[0]) + 2.0 * step * r + step**2 * v, theta[2])
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-12, atol=1e-14, err_msg=name)


def test_the_squared_step_takes_the_step_length_clamped_to_a_cap_that_adapts():
    """s = |r| / |v| clamped to [1, step_max]; step_max starts at 1, grows fourfold whenever s reaches it and shrinks
    fourfold on a rejection (the module's docstring, after Varadhan & Roland's reference implementation)."""
    rng = np.random.default_rng(4)
    start = make_mixture("full", n_components=3, n_features=3, seed=2)
    squarem = Squarem()
    # First cycle: s (about 2.5) is clamped to step_max = 1, which gives the plain EM step (None), and reaches the cap.
    theta, r, v = squarem_cycle(start, 2.5, rng)
    assert np.linalg.norm(r) / np.linalg.norm(v) > 1.0
    assert squarem.extrapolate(*theta) is None and squarem.step_max == 4.0 and squarem.extrapolations == 0
    # s between 1 and the cap: the step is |r| / |v| itself, and the cap stays.
    theta, r, v = squarem_cycle(start, 2.5, rng)
    step = np.linalg.norm(r) / np.linalg.norm(v)
    assert 1.0 < step < 4.0
    assert_is_squared_step(squarem.extrapolate(*theta), theta, r, v, step)
    assert squarem.step_max == 4.0 and squarem.extrapolations == 1
    # s beyond the cap: the step is the cap, which then grows.
    theta, r, v = squarem_cycle(start, 10.0, rng)
    assert np.linalg.norm(r) / np.linalg.norm(v) > 4.0
    assert_is_squared_step(squarem.extrapolate(*theta), theta, r, v, 4.0)
    assert squarem.step_max == 16.0 and squarem.extrapolations == 2
    # s below 1: clamped to 1, the plain EM step; the cap stays.
    theta, r, v = squarem_cycle(start, 0.5, rng)
    assert np.linalg.norm(r) / np.linalg.norm(v) < 1.0
    assert squarem.extrapolate(*theta) is None and squarem.step_max == 16.0 and squarem.extrapolations == 2
    # A rejection (the caller found the point worse) shrinks the cap.
    squarem.rejected()
    assert squarem.step_max == 4.0 and squarem.rejections == 1
    # So does a point that is no mixture in floating point: with |r| = 300 and s at the cap, theta0 + 2 s r + s^2 v
    # has log-variances far beyond 709, where exp overflows.
    diag = make_mixture("diag", n_components=2, n_features=2, seed=1)
    theta, r, v = squarem_cycle(diag, 10.0, rng, first=300.0)
    assert np.linalg.norm(r) / np.linalg.norm(v) > 4.0
    with np.errstate(over="ignore"):
        assert squarem.extrapolate(*theta) is None
    assert squarem.step_max == 4.0 and squarem.rejections == 2 and squarem.extrapolations == 2  # grew, then shrank


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
