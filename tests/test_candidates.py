"""Candidates side by side: shared passes, restarts, re-seeding of collapsed components, bounded row sets."""

import numpy as np
import pytest

from helpers import assert_matches_sklearn, make_mixture, overlapping_blobs, sklearn_fit
from sparkgmm import Mixture
from sparkgmm.candidates import FitSpec, fit_side_by_side
from sparkgmm.em import EMSettings, local_passes, run_em, run_side_by_side
from sparkgmm.passes import EStep
from sparkgmm.toprows import TopRows


def counting(run_pass):
    """A pass runner that records how many requests each pass answered."""
    sizes = []

    def run(requests, description):
        sizes.append(len(requests))
        return run_pass(requests, description)

    return run, sizes


def test_one_pass_serves_every_live_candidate_and_a_finished_one_costs_nothing():
    X, _ = make_mixture("diag", seed=1).sample(2000, seed=0)
    starts = [make_mixture("diag", seed=s) for s in (2, 3)]
    run, sizes = counting(local_passes(X))
    from sparkgmm.em import em_candidate

    short, long = (em_candidate(start, EMSettings(n, 0.0, 1e-6)) for start, n in zip(starts, (3, 8), strict=True))
    finished = run_side_by_side([short, long], run)
    assert sizes == [2] * 4 + [1] * 5  # 3 iterations + final together, then the longer one alone
    assert [f.passes for f in finished] == [4, 9]
    for start, n, f in zip(starts, (3, 8), finished, strict=True):  # side by side changes nothing in the result
        alone = run_em(start, local_passes(X), max_iter=n, tol=0.0, reg_covar=1e-6)
        np.testing.assert_array_equal(f.value.mixture.means, alone.mixture.means)


@pytest.mark.parametrize("init_mode", ["k-means||", "random_from_data"])
def test_more_restarts_are_never_worse_and_restart_zero_is_the_single_fit(init_mode):
    X = overlapping_blobs()
    settings = EMSettings(200, 1e-6, 1e-6)
    one, four = fit_side_by_side(
        [FitSpec(5, "full", settings, init_mode, seed=7, n_init=1), FitSpec(5, "full", settings, init_mode, seed=7,
                                                                           n_init=4)],
        local_passes(X),
    )
    assert len(one.restarts) == 1 and len(four.restarts) == 4
    np.testing.assert_array_equal(four.restarts[0].result.mixture.means, one.best.mixture.means)
    assert four.best.log_likelihood >= one.best.log_likelihood
    assert four.best.log_likelihood == max(r.result.log_likelihood for r in four.restarts)
    assert len({round(r.result.log_likelihood, 10) for r in four.restarts}) > 1  # the starts really differ


def test_fits_are_reproducible_from_the_seed():
    X = overlapping_blobs(seed=3)
    spec = FitSpec(4, "diag", EMSettings(50, 1e-6, 1e-6, "squarem"), "k-means||", seed=11, n_init=2)
    a, b = (fit_side_by_side([spec], local_passes(X))[0] for _ in range(2))
    np.testing.assert_array_equal(a.best.mixture.means, b.best.mixture.means)
    other = fit_side_by_side([FitSpec(4, "diag", spec.settings, "k-means||", seed=12, n_init=2)], local_passes(X))[0]
    assert not np.array_equal(other.restarts[0].initial.means, a.restarts[0].initial.means)


def test_a_collapsed_component_is_reseeded_where_the_model_explains_the_data_worst(covariance_type):
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [12.0, 0.0, 0.0], [0.0, 12.0, 0.0]])
    X = np.concatenate([rng.normal(c, 1.0, (400, 3)) for c in centres])
    # The start covers two clusters; the third component sits far from every row with a negligible weight.
    means = np.array([[0.0, 0.0, 0.0], [12.0, 0.0, 0.0], [500.0, 500.0, 500.0]])
    covariances = make_mixture(covariance_type, n_components=3, n_features=3, seed=0).covariances
    start = Mixture([0.5, 0.5 - 1e-9, 1e-9], means, covariances, covariance_type)
    result = run_em(start, local_passes(X), max_iter=100, tol=1e-8, reg_covar=1e-6)
    assert result.n_reseeds == 1 and result.converged
    fitted = result.mixture.means[np.argsort(result.mixture.means[:, 0] + 2 * result.mixture.means[:, 1])]
    np.testing.assert_allclose(fitted, centres[[0, 1, 2]], atol=0.3)
    np.testing.assert_allclose(np.sort(result.mixture.weights), 1 / 3, atol=0.02)
    # Deterministic: the same data and start re-seed at the same row.
    again = run_em(start, local_passes(X, block_rows=500), max_iter=100, tol=1e-8, reg_covar=1e-6)
    np.testing.assert_allclose(again.mixture.means, result.mixture.means, rtol=1e-9)


def test_without_collapse_there_is_no_reseed_and_plain_em_is_untouched():
    """Re-seeding only watches while no component collapses: a run that may re-seed is, pass for pass, the run that
    may not (maxReseeds 0), and both are scikit-learn's EM from the same start, convergence included."""
    X, _ = make_mixture("full", seed=4).sample(1500, seed=1)
    start = make_mixture("full", seed=5)
    result = run_em(start, local_passes(X), max_iter=500, tol=1e-6, reg_covar=1e-6)
    plain = run_em(start, local_passes(X), max_iter=500, tol=1e-6, reg_covar=1e-6, max_reseeds=0)
    assert result.n_reseeds == plain.n_reseeds == 0
    assert result.converged and plain.converged and (result.n_iter, result.n_passes) == (plain.n_iter, plain.n_passes)
    assert result.log_likelihood_history == plain.log_likelihood_history
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(result.mixture, name), getattr(plain.mixture, name), err_msg=name)
    reference = sklearn_fit(X, start, 500, tol=1e-6)
    assert reference.converged_ and result.n_iter == reference.n_iter_
    assert_matches_sklearn(result.mixture, reference)


def test_top_rows_keep_the_largest_keys_whatever_the_merge_order():
    rng = np.random.default_rng(0)
    keys = rng.random(1000)
    rows = rng.normal(size=(2, 1000))
    pieces = [TopRows.of(10, keys[i : i + 100], rows[:, i : i + 100]) for i in range(0, 1000, 100)]
    forward = pieces[0]
    for piece in pieces[1:]:
        forward = forward.merge(piece)
    backward = pieces[-1]
    for piece in pieces[-2::-1]:
        backward = piece.merge(backward)
    top = np.argsort(-keys)[:10]
    np.testing.assert_array_equal(forward.keys, keys[top])
    np.testing.assert_array_equal(forward.rows, rows[:, top].T)
    np.testing.assert_array_equal(backward.rows, forward.rows)


def test_worst_rows_of_an_estep_are_those_of_lowest_density_and_positive_weight():
    mixture = make_mixture("full", n_components=2, n_features=2, seed=0)
    X, _ = mixture.sample(500, seed=1)
    weights = np.ones(500)
    density = mixture.score_samples(X)
    weights[np.argmin(density)] = 0.0  # the very worst row has no weight: it must not be picked
    (stats,) = local_passes(X, weights, block_rows=64)([EStep(mixture, worst=3)], "")
    expected = np.argsort(np.where(weights > 0, density, np.inf))[:3]
    np.testing.assert_allclose(stats.worst.rows, X[expected], rtol=1e-12)
