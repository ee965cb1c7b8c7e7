"""The search for starts on the sample (initMode="sample"): better optima than one k-means|| start, nInit distinct
starts, checkpoints that keep the search, and the re-seed cap."""

import numpy as np
import pytest

from helpers import make_mixture
import sparkgmm.candidates as candidates
from sparkgmm import InputError, Mixture
from sparkgmm.candidates import FitSpec, fit_side_by_side, restart_runs
from sparkgmm.checkpoint import encode, restore
from sparkgmm.em import EMSettings, local_passes, run_em
from sparkgmm.passes import pack_block
from sparkgmm.sampling import draw_sample
from sparkgmm.search import SearchSpec, search_sample

SETTINGS = EMSettings(1000, 1e-6, 1e-6, "squarem")


def elongated_overlapping(n=4000, d=5, k=6, seed=0) -> np.ndarray:
    """k elongated (condition number 9), overlapping components with unequal weights: a single start often stops in
    a worse optimum."""
    rng = np.random.default_rng([seed, 77])
    covariances = []
    for _ in range(k):
        q = np.linalg.qr(rng.standard_normal((d, d)))[0]
        covariances.append((q * np.geomspace(3.0, 1 / 3.0, d)) @ q.T)
    truth = Mixture(rng.dirichlet(np.full(k, 2.0)), rng.normal(0.0, 1.2, (k, d)), np.stack(covariances))
    return truth.sample(n, seed=seed + 1)[0]


def sample_of(X, rows=1 << 17, seed=(1, 5)) -> np.ndarray:
    return draw_sample([pack_block(X, None)], rows, seed, X.shape[1]).ordered()


def test_the_sample_search_reaches_the_best_optimum_where_one_k_means_parallel_start_does_not():
    X = elongated_overlapping()
    sample = sample_of(X)
    seeds = range(3)
    searched = [fit_side_by_side([FitSpec(6, "full", SETTINGS, "sample", seed)], local_passes(X), sample=sample)[0]
                for seed in seeds]
    single = [fit_side_by_side([FitSpec(6, "full", SETTINGS, "k-means||", seed)], local_passes(X))[0]
              for seed in seeds]
    best = max(o.best.log_likelihood for o in searched + single)
    assert all(o.best.log_likelihood > best - 1e-4 for o in searched)
    # k-means|| (nInit=1) stops lower with some of these seeds: the set is hard for a single start
    assert any(o.best.log_likelihood < best - 1e-2 for o in single)
    for outcome in searched:
        assert outcome.restarts[0].init_passes == 0  # the start cost no pass over the full data
        search = outcome.search
        assert search.sample_rows == X.shape[0] and search.restarts == candidates.DEFAULT_SAMPLE_RESTARTS
        assert search.passes > 0 and search.seconds > 0
        assert search.log_likelihood == pytest.approx(Mixture.score(search.starts[0], X), abs=1e-12)


def test_n_init_starts_from_the_best_distinct_optima_of_the_search():
    X = elongated_overlapping(seed=1)
    (outcome,) = search_sample(sample_of(X), [SearchSpec(6, "full", 1e-6, 8, seed=4, restarts=12, n_init=3)])
    scores = [start.score(X) for start in outcome.starts]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert len({round(s, 9) for s in scores}) == 3
    assert outcome.log_likelihood == pytest.approx(scores[0], abs=1e-12)
    fitted = fit_side_by_side([FitSpec(6, "full", SETTINGS, "sample", 4, n_init=3, sample_restarts=12)],
                              local_passes(X), sample=sample_of(X))[0]
    starts = [r.initial for r in fitted.restarts]
    for start, expected in zip(starts, outcome.starts, strict=True):
        np.testing.assert_array_equal(start.means, expected.means)


def test_a_search_uses_only_the_prefix_of_the_sample_it_asks_for():
    X = elongated_overlapping(n=3000, seed=2)
    spec = FitSpec(3, "diag", SETTINGS, "sample", 1, sample_rows=700)
    outcome = fit_side_by_side([spec], local_passes(X), sample=sample_of(X))[0]
    direct = search_sample(sample_of(X)[:700], [spec.search_spec()])[0]
    assert outcome.search.sample_rows == 700
    np.testing.assert_array_equal(outcome.restarts[0].initial.means, direct.starts[0].means)


def test_a_search_needs_a_sample_and_enough_distinct_rows():
    X = elongated_overlapping(n=500)
    with pytest.raises(InputError, match="sample"):
        fit_side_by_side([FitSpec(3, "full", SETTINGS, "sample", 1)], local_passes(X))
    duplicates = np.repeat(X[:2], 50, axis=0)
    with pytest.raises(InputError, match="k=3 components need at least 3 distinct rows"):
        search_sample(duplicates, [SearchSpec(3, "full", 1e-6, 8, 1, 4)])


def test_a_resumed_fit_does_not_search_the_sample_again(monkeypatch):
    X = elongated_overlapping(n=2000, seed=3)
    sample = sample_of(X)
    specs = [FitSpec(4, "full", EMSettings(300, 1e-8, 1e-6, "squarem"), "sample", 2, n_init=2, sample_restarts=6)]
    runs = restart_runs(specs)
    saved = []
    uninterrupted = fit_side_by_side(specs, local_passes(X), runs, lambda p: saved.append(encode({}, runs, p)),
                                     sample=sample)[0]
    assert len(saved) > 4

    def no_search(*_args):
        raise AssertionError("the sample was searched again")

    monkeypatch.setattr(candidates, "search_sample", no_search)
    document, arrays = saved[3]
    resumed_runs = restart_runs(specs)
    passes = restore(document, arrays, resumed_runs, "test")
    resumed = fit_side_by_side(specs, local_passes(X), resumed_runs, passes=passes, sample=sample)[0]
    assert resumed.best.log_likelihood == uninterrupted.best.log_likelihood
    np.testing.assert_array_equal(resumed.best.mixture.means, uninterrupted.best.mixture.means)
    assert resumed.search.log_likelihood == uninterrupted.search.log_likelihood
    assert (resumed.search.restarts, resumed.search.sample_rows, resumed.search.passes) == (
        6, X.shape[0], uninterrupted.search.passes)


def far_collapsed_start(covariance_type: str, collapsed: int) -> tuple[np.ndarray, Mixture]:
    """Rows of three clusters, and a start whose last ``collapsed`` components sit far from every row."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [12.0, 0.0, 0.0], [0.0, 12.0, 0.0]])
    X = np.concatenate([rng.normal(c, 1.0, (400, 3)) for c in centres])
    k = 1 + collapsed
    means = np.concatenate([[[4.0, 4.0, 0.0]], 500.0 + 10.0 * np.arange(collapsed)[:, None] * np.ones((1, 3))])
    weights = np.concatenate([[1.0 - 1e-9 * collapsed], np.full(collapsed, 1e-9)])
    covariances = make_mixture(covariance_type, n_components=k, n_features=3, seed=0).covariances
    return X, Mixture(weights, means, covariances, covariance_type)


@pytest.mark.parametrize("max_reseeds, expected", [(0, 0), (1, 1), (2, 2), (8, 3)])
def test_max_reseeds_caps_the_reseeds_of_a_run(max_reseeds, expected):
    X, start = far_collapsed_start("diag", collapsed=3)
    result = run_em(start, local_passes(X), max_iter=60, tol=0.0, reg_covar=1e-6, max_reseeds=max_reseeds)
    assert result.n_reseeds == expected
    # the components that were never re-seeded keep (almost) no weight
    assert np.count_nonzero(result.mixture.weights < 1e-6) == 3 - expected


def test_a_small_component_that_reg_covar_keeps_valid_is_not_reseeded():
    # 6 rows in 5 dimensions (fewer than d + 1 = 6 would make a singular scatter; regCovar keeps it valid)
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0.0, 1.0, (600, 5)), 40.0 + rng.normal(0.0, 1.0, (5, 5))])
    start = Mixture([0.99, 0.01], [np.zeros(5), np.full(5, 40.0)], np.stack([np.eye(5)] * 2))
    result = run_em(start, local_passes(X), max_iter=30, tol=0.0, reg_covar=1e-3)
    assert result.n_reseeds == 0
    assert result.mixture.weights.min() == pytest.approx(5 / 605, rel=1e-6)


@pytest.mark.slow
def test_restarts_whose_covariance_breaks_are_dropped_and_the_search_goes_on(caplog):
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.float64)  # 64 pixels, some constant: single precision breaks a few restarts
    spec = SearchSpec(10, "full", 1e-6, 8, seed=3, restarts=16)
    with caplog.at_level("INFO", logger="sparkgmm"):
        (outcome,) = search_sample(sample_of(X), [spec])
    dropped = [r.getMessage() for r in caplog.records if "runs dropped" in r.getMessage()]
    assert dropped and all("of 16 runs dropped" in message for message in dropped)
    assert outcome.log_likelihood == pytest.approx(outcome.starts[0].score(X), abs=1e-9)
    # the start is a valid mixture EM goes on from, to an optimum no worse than the search's
    result = run_em(outcome.starts[0], local_passes(X), max_iter=20, tol=1e-6, reg_covar=1e-6,
                    acceleration="squarem")
    assert result.log_likelihood >= outcome.log_likelihood - 1e-9
