"""Online EM in memory (sparkgmm.online, Mixture.partial_fit): an update against a direct NumPy computation of the
E-step and M-step for every covariance type, blending against its closed forms, the remembered statistics saved
with the model, and the stream properties (stationary rows approach the batch optimum, drifting ones are tracked)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from helpers import make_mixture, overlapping_data_and_start, write_format_1_model_dir
from sparkgmm.em import local_passes, run_em
from sparkgmm.errors import InputError
from sparkgmm.mixture import Mixture
from sparkgmm.online import UpdateRule, blend, partial_fit
from sparkgmm.stats import SeenStats, accumulate

REG = 1e-6


def full_covariances(mixture: Mixture) -> np.ndarray:
    """Every component's covariance as a (d, d) matrix."""
    k, d = mixture.n_components, mixture.n_features
    cov = mixture.covariances
    if mixture.covariance_type == "full":
        return cov
    if mixture.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if mixture.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(d) for c in cov])


def direct_responsibilities(mixture: Mixture, X: np.ndarray) -> np.ndarray:
    """Responsibilities (n, k) from scipy.stats densities."""
    log_prob = np.column_stack([
        np.log(w) + multivariate_normal(mean, cov).logpdf(X)
        for w, mean, cov in zip(mixture.weights, mixture.means, full_covariances(mixture), strict=True)])
    return np.exp(log_prob - logsumexp(log_prob, axis=1, keepdims=True))


def direct_m_step(X, resp, covariance_type, prior_nk=None, prior_means=None, prior_scatter=None):
    """The M-step from responsibilities, in plain NumPy (uncentred moments, as a textbook writes it), with optional
    pseudo-rows: ``prior_nk`` (k,) weight at ``prior_means`` with scatter ``prior_scatter`` (k, d, d) about them."""
    d = X.shape[1]
    nk = resp.sum(axis=0)
    sums = resp.T @ X
    squares = np.einsum("ik,id,ie->kde", resp, X, X)
    if prior_nk is not None:
        nk = nk + prior_nk
        sums = sums + prior_nk[:, None] * prior_means
        squares = squares + prior_scatter + prior_nk[:, None, None] * np.einsum("kd,ke->kde", prior_means, prior_means)
    means = sums / nk[:, None]
    scatter = squares - nk[:, None, None] * np.einsum("kd,ke->kde", means, means)
    weights = nk / nk.sum()
    if covariance_type == "full":
        cov = scatter / nk[:, None, None] + REG * np.eye(d)
    elif covariance_type == "tied":
        cov = scatter.sum(axis=0) / nk.sum() + REG * np.eye(d)
    elif covariance_type == "diag":
        cov = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + REG
    else:
        cov = np.diagonal(scatter, axis1=1, axis2=2).mean(axis=1) / nk + REG
    return weights, means, cov


def assert_parameters(ours: Mixture, weights, means, covariances, rtol=1e-9):
    np.testing.assert_allclose(ours.weights, weights, rtol=rtol)
    np.testing.assert_allclose(ours.means, means, rtol=rtol, atol=rtol * np.abs(means).max())
    np.testing.assert_allclose(ours.covariances, covariances, rtol=rtol, atol=rtol * np.abs(covariances).max())


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_partial_fit_of_a_model_that_remembers_nothing_is_one_em_step(covariance_type):
    X, start = overlapping_data_and_start(covariance_type)
    updated = start.partial_fit(X, effective_count=0.0)
    assert_parameters(updated, *direct_m_step(X, direct_responsibilities(start, X), covariance_type))
    assert (updated.seen.rows, updated.seen.weight, updated.seen.batches) == (X.shape[0], X.shape[0], 1)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_a_model_from_parameters_counts_them_as_that_many_rows(covariance_type):
    """Closed form: the parameters count as ``effective_count`` pseudo-rows, weight_j * N of them at mean_j with
    component j's scatter (its covariance less regCovar); the update is the M-step of those plus the new rows."""
    X, start = overlapping_data_and_start(covariance_type, n=300)
    count = 500.0
    updated = start.partial_fit(X, effective_count=count, reg_covar=REG)
    prior_nk = start.weights * count
    own = full_covariances(start) - REG * np.eye(start.n_features)
    if covariance_type == "tied":  # the M-step pools scatter over components, the pseudo-rows' included
        own = np.broadcast_to(start.covariances - REG * np.eye(start.n_features), own.shape)
    expected = direct_m_step(X, direct_responsibilities(start, X), covariance_type, prior_nk, start.means,
                             prior_nk[:, None, None] * own)
    assert_parameters(updated, *expected)
    assert updated.seen.rows == X.shape[0] + count and updated.seen.batches == 2


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_fitted_model_updated_with_its_own_rows_again_is_one_more_em_step(covariance_type):
    X, start = overlapping_data_and_start(covariance_type)
    fitted = run_em(start, local_passes(X), max_iter=3, tol=0.0, reg_covar=REG).mixture
    assert fitted.seen is not None and fitted.seen.rows == X.shape[0]
    twice = fitted.partial_fit(X, reg_covar=REG)  # decayFactor 1: the fit's statistics plus the same again
    assert_parameters(twice, *direct_m_step(X, direct_responsibilities(fitted, X), covariance_type))
    assert (twice.seen.rows, twice.seen.batches) == (2 * X.shape[0], 2)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("half_life", [None, 2.0])
def test_two_updates_are_the_m_step_of_both_batches_with_the_responsibilities_they_had(covariance_type, half_life):
    """Online EM's meaning, independent of how the statistics are stored and re-centred: after batch A (under the
    start) and batch B (under the first update), the parameters are the M-step over the rows of both with the
    responsibilities each batch had when it was scored, A's discounted by the rule."""
    X, start = overlapping_data_and_start(covariance_type, n=600)
    a, b = X[:300], X[300:]
    once = start.partial_fit(a, effective_count=0.0, half_life=half_life)
    twice = once.partial_fit(b, half_life=half_life)
    discount = 1.0 if half_life is None else 0.5 ** (1.0 / half_life)
    resp = np.vstack([discount * direct_responsibilities(start, a), direct_responsibilities(once, b)])
    assert_parameters(twice, *direct_m_step(X, resp, covariance_type))


def test_sample_weights_count_as_repeated_rows():
    X, start = overlapping_data_and_start("full", n=200)
    counts = np.random.default_rng(3).integers(0, 4, X.shape[0])
    fitted = run_em(start, local_passes(X[:100]), max_iter=2, tol=0.0, reg_covar=REG).mixture
    weighted = fitted.partial_fit(X, sample_weight=counts.astype(float), half_life=2.0)
    repeated = fitted.partial_fit(np.repeat(X, counts, axis=0), half_life=2.0)
    assert_parameters(weighted, repeated.weights, repeated.means, repeated.covariances, rtol=1e-10)
    assert weighted.seen.weight == repeated.seen.weight == 100 + counts.sum()


def random_stats(seed: int, covariance_type: str = "full"):
    X, start = overlapping_data_and_start(covariance_type, n=100, seed=seed)
    return accumulate(np.ascontiguousarray(X.T), None, start.weights, start.means, start.precisions_cholesky,
                      covariance_type)


def test_blending_without_forgetting_is_order_independent_and_with_it_follows_the_decay():
    seen = SeenStats.of_pass(random_stats(0))
    a, b = random_stats(1), random_stats(2)
    ab = blend(SeenStats.of_pass(blend(seen, a, 1.0)), b, 1.0)
    ba = blend(SeenStats.of_pass(blend(seen, b, 1.0)), a, 1.0)
    for name in ("nk", "first", "second"):
        np.testing.assert_allclose(getattr(ab, name), getattr(ba, name), rtol=1e-13)
    decay = 0.3
    then_b = blend(SeenStats.of_pass(blend(seen, a, decay)), b, decay)
    for name in ("nk", "first", "second"):
        expected = decay**2 * getattr(seen, name) + decay * getattr(a, name) + getattr(b, name)
        np.testing.assert_allclose(getattr(then_b, name), expected, rtol=1e-13)
    then_a = blend(SeenStats.of_pass(blend(seen, b, decay)), a, decay)
    assert not np.allclose(then_a.nk, then_b.nk)  # the older batch counts less


def test_the_rules_discounts_follow_their_closed_forms():
    seen = SeenStats.of_pass(random_stats(0))
    assert UpdateRule(half_life=4.0).discount(seen, 1000.0) ** 4 == pytest.approx(0.5, rel=1e-14)
    assert UpdateRule(half_life=200.0, time_unit="points").discount(seen, 100.0) == pytest.approx(0.5**0.5, rel=1e-14)
    assert UpdateRule(decay_factor=0.9, time_unit="points").discount(seen, 3.0) == pytest.approx(0.729, rel=1e-14)
    # stepwise EM, t = 1 batch seen: the new batch's normalised statistics get the step 2 ** -kappa
    eta = 2.0**-0.7
    discount = UpdateRule(step_power=0.7).discount(seen, 50.0)
    assert 50.0 / (discount * seen.effective_weight + 50.0) == pytest.approx(eta, rel=1e-14)


def test_the_effective_weight_follows_the_rule_through_updates():
    X, start = overlapping_data_and_start("diag", n=900)
    batches = np.array_split(X, 3)
    model = start.partial_fit(batches[0], effective_count=0.0, half_life=1.0)
    assert model.seen.effective_weight == pytest.approx(300.0, rel=1e-12)
    model = model.partial_fit(batches[1], half_life=1.0)
    model = model.partial_fit(batches[2], half_life=1.0)
    assert model.seen.effective_weight == pytest.approx(0.25 * 300 + 0.5 * 300 + 300, rel=1e-12)
    assert (model.seen.rows, model.seen.batches) == (900, 3)
    stepwise = model.partial_fit(batches[0], step_power=1.0)  # t = 3 batches seen: step 1/4, so 300 rows are 1/4
    assert stepwise.seen.effective_weight == pytest.approx(4 * 300.0, rel=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_recentring_equals_moments_about_the_new_means(covariance_type):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3))
    resp = rng.dirichlet(np.ones(2), 50)
    old, new = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))

    def moments(centre):
        centred = X[None, :, :] - centre[:, None, :]
        second = np.einsum("ik,kid,kie->kde", resp, centred, centred)
        return (np.einsum("ik,kid->kd", resp, centred),
                second if covariance_type == "full" else np.diagonal(second, axis1=1, axis2=2))

    first, second = moments(old)
    moved = SeenStats(resp.sum(axis=0), first, second, 50, 50.0, 1).recentred(old, new)
    first_new, second_new = moments(new)
    np.testing.assert_allclose(moved.first, first_new, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moved.second, second_new, rtol=1e-12, atol=1e-12)


def test_the_remembered_statistics_are_saved_with_the_model_and_old_models_need_a_count(tmp_path):
    X, start = overlapping_data_and_start("tied")
    fitted = run_em(start, local_passes(X), max_iter=2, tol=0.0, reg_covar=REG).mixture
    fitted.save(tmp_path / "model")
    loaded = Mixture.load(tmp_path / "model")
    for name in ("nk", "first", "second"):
        assert np.array_equal(getattr(loaded.seen, name), getattr(fitted.seen, name)), name
    assert (loaded.seen.rows, loaded.seen.weight, loaded.seen.batches) == (800, 800.0, 1)
    assert np.array_equal(loaded.partial_fit(X[:10]).means, fitted.partial_fit(X[:10]).means)
    write_format_1_model_dir(tmp_path / "old", fitted)
    old = Mixture.load(tmp_path / "old")
    assert old.seen is None
    with pytest.raises(InputError, match=r"holds no statistics .* give effectiveCount \(--effective-count\)"):
        old.partial_fit(X[:10])
    assert old.partial_fit(X[:10], effective_count=800.0).seen.rows == 810


@pytest.mark.parametrize("kwargs, message", [
    ({"decay_factor": 1.5}, r"^decayFactor=1.5 must be in \[0, 1\]$"),
    ({"half_life": 0.0}, r"^halfLife=0.0 must be > 0$"),
    ({"time_unit": "hours"}, r"^timeUnit='hours' must be one of batches, points$"),
    ({"step_power": 0.5}, r"^stepPower=0.5 must be in \(0.5, 1\]$"),
    ({"step_power": 0.8, "half_life": 3.0}, r"^stepPower \(stepwise EM\) and decayFactor or halfLife"),
    ({"effective_count": -1.0}, r"^effectiveCount=-1.0 must be >= 0$"),
    ({"average_after": 2}, r"^averageAfter averages the iterates of stepwise EM: give stepPower with it$"),
    ({"step_power": 0.7, "average_after": -1}, r"^averageAfter=-1 must be >= 0$"),
])
def test_bad_update_settings_are_one_line_errors(kwargs, message):
    start = make_mixture("diag")
    with pytest.raises(InputError, match=message):
        start.partial_fit(np.zeros((3, 3)), **{"effective_count": 10.0, **kwargs})


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_averaged_parameters_are_the_mean_of_the_plain_steps_iterates_which_go_on_unchanged(covariance_type, tmp_path):
    """Polyak-Ruppert averaging changes what the model reports, never the steps: the plain stepwise EM run gives the
    iterates, and the averaged run's parameters after batch t are their mean over the batches after averageAfter;
    saved and loaded mid-way, it goes on the same."""
    X, start = overlapping_data_and_start(covariance_type, n=1200)
    batches = np.array_split(X, 6)
    plain, averaged = [start], start
    for t, batch in enumerate(batches):
        plain.append(plain[-1].partial_fit(batch, step_power=0.6, effective_count=100.0 if t == 0 else None,
                                           reg_covar=REG))
        averaged = averaged.partial_fit(batch, step_power=0.6, average_after=2, reg_covar=REG,
                                        effective_count=100.0 if t == 0 else None)
        if t == 3:
            averaged.save(tmp_path / "mid")
            averaged = Mixture.load(tmp_path / "mid")
        seen = averaged.seen
        # the start counts as one batch; the update of batch t makes it t + 2 batches seen
        iterates = [m for m, batches_seen in zip(plain[1:], range(2, t + 3), strict=True) if batches_seen > 2]
        assert seen.batches == t + 2 and seen.averaged == len(iterates)
        if iterates:
            assert_parameters(averaged, *(np.mean([getattr(m, name) for m in iterates], axis=0)
                                          for name in ("weights", "means", "covariances")), rtol=1e-8)
        else:  # not averaging yet: the plain iterate itself
            assert_parameters(averaged, plain[-1].weights, plain[-1].means, plain[-1].covariances, rtol=1e-12)
    last = averaged.partial_fit(batches[0], step_power=0.6, reg_covar=REG)  # averaging off: the next plain iterate
    following = plain[-1].partial_fit(batches[0], step_power=0.6, reg_covar=REG)
    assert_parameters(last, following.weights, following.means, following.covariances, rtol=1e-8)
    assert last.seen.averaged == 0


def test_bad_rows_are_refused():
    start = make_mixture("diag")
    with pytest.raises(InputError, match="has 2 features but the model was fitted with 3"):
        start.partial_fit(np.zeros((3, 2)), effective_count=1.0)
    with pytest.raises(InputError, match="1 rows with NaN"):
        start.partial_fit(np.array([[0.0, np.nan, 0.0]]), effective_count=1.0)
    with pytest.raises(InputError, match="no positive weight"):
        start.partial_fit(np.zeros((3, 3)), sample_weight=np.zeros(3), effective_count=1.0)


def test_a_component_left_without_rows_is_reseeded_at_the_worst_explained_row():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.0, 1.0, (300, 2)), [[9.0, 9.0]]])
    start = Mixture([0.5, 0.5], [[0.0, 0.0], [-60.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], "diag")
    result = partial_fit(start, X, effective_count=0.0, rule=UpdateRule())
    assert result.n_reseeds == 1
    assert np.array_equal(result.mixture.means[1], [9.0, 9.0])
    assert result.mixture.seen.effective_weight == pytest.approx(301.0, rel=1e-9)


def test_a_stationary_stream_approaches_the_batch_optimum_and_a_drifting_one_is_tracked():
    truth = make_mixture("full", n_components=3, n_features=2, seed=4, separation=4.0)
    X, _ = truth.sample(40_000, seed=1)
    X = X[np.random.default_rng(2).permutation(X.shape[0])]
    batches = np.array_split(X, 40)
    first = run_em(truth, local_passes(batches[0]), max_iter=300, tol=1e-9, reg_covar=REG).mixture
    model = first
    for batch in batches[1:]:
        model = model.partial_fit(batch)
    optimum = run_em(model, local_passes(X), max_iter=300, tol=1e-10, reg_covar=REG).mixture
    # One pass over the stream closes most of the gap the first batch's fit leaves (6.7e-3 per row on these
    # overlapping components; the pass leaves 4e-4: EM itself needs ~60 passes over all rows from there).
    assert optimum.score(X) - model.score(X) < 0.1 * (optimum.score(X) - first.score(X))
    assert optimum.score(X) - model.score(X) < 1e-3
    # the same rows drifting right: half-life 3 batches follows, forgetting nothing lags behind
    tracking = remembering = model
    for t, batch in enumerate(batches[:20]):
        shifted = batch + [0.5 * (t + 1), 0.0]
        tracking = tracking.partial_fit(shifted, half_life=3.0)
        remembering = remembering.partial_fit(shifted)
    last = batches[20] + [0.5 * 21, 0.0]
    assert tracking.score(last) > remembering.score(last) + 0.5
