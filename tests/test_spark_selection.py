"""On Spark: restarts, acceleration, k-means||, warm starts and model selection, all in shared passes."""

import numpy as np
import pytest

from helpers import frame, job_descriptions_since, last_job_id, make_mixture, persisted_rdd_count
from sparkgmm import GaussianMixture, Mixture, select_model
from sparkgmm.em import local_passes, run_em

pytestmark = pytest.mark.spark


def blobs(k=4, n=4000, d=2, seed=0, spread=6.0):
    truth = make_mixture("full", n_components=k, n_features=d, seed=seed, separation=spread)
    X, labels = truth.sample(n, seed=seed + 1)
    return X, labels, truth


def new_jobs(spark, before):
    """The passes since job ``before``: named jobs, less the removal of the blocks' local files after each fit."""
    return [d for d in job_descriptions_since(spark, before) if d and d != "sparkgmm: remove local block files"]


@pytest.mark.slow
def test_restarts_share_passes_and_are_never_worse(spark):
    X, _, _ = blobs(k=5, seed=3, spread=2.5)
    df = frame(spark, X, 3)
    one = GaussianMixture(k=5, maxIter=60, tol=1e-6, seed=4).fit(df)
    before = last_job_id(spark)
    four = GaussianMixture(k=5, maxIter=60, tol=1e-6, seed=4, nInit=4).fit(df)
    jobs = new_jobs(spark, before)
    assert four.summary.logLikelihood >= one.summary.logLikelihood
    restarts = four.summary.restarts
    assert len(restarts) == 4 and four.summary.logLikelihood == max(r["logLikelihood"] for r in restarts)
    np.testing.assert_allclose(restarts[0]["logLikelihood"], one.summary.logLikelihood, rtol=1e-12)
    # One pass per step for all four: the passes are those of the longest restart, not the sum.
    longest = max(r["initPasses"] + r["numPasses"] for r in restarts)
    assert len(jobs) == four.summary.numPasses == 1 + longest
    assert any(j.endswith("x4") for j in jobs)  # a pass named for the four restarts it served
    assert len({round(r["logLikelihood"], 9) for r in restarts}) > 1  # the starts really differ


def test_accelerated_and_plain_em_reach_the_same_optimum_on_spark(spark):
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.5, (4, 3, 3))
    truth = Mixture([0.4, 0.3, 0.2, 0.1], rng.normal(0.0, 1.0, (4, 3)), a @ a.transpose(0, 2, 1) + 0.5 * np.eye(3))
    X, _ = truth.sample(6000, seed=1)
    df = frame(spark, X, 2)
    # Plain EM creeps here (hundreds of passes): it runs in memory, from the start k-means|| found on Spark, as the
    # reference (plain EM on Spark equals it in memory: test_spark_fit); SQUAREM runs on Spark from the same start.
    start = GaussianMixture(k=4, maxIter=0, seed=1).fit(df).mixture
    plain = run_em(start, local_passes(X), max_iter=3000, tol=1e-8, reg_covar=1e-6)
    fast = GaussianMixture(k=4, maxIter=3000, tol=1e-8, initialModel=start, acceleration="squarem").fit(df)
    assert plain.converged and fast.summary.converged and plain.n_passes > 100
    assert fast.summary.logLikelihood >= plain.log_likelihood - 1e-6
    assert fast.summary.numExtrapolations > 0
    assert 2 * fast.summary.restarts[0]["numPasses"] <= plain.n_passes


def test_kmeans_parallel_finds_separated_clusters_and_never_starts_at_a_zero_weight_row(spark):
    centres = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(c, 1.0, (500, 2)) for c in centres] + [np.full((40, 2), 1000.0)])
    weights = np.r_[np.ones(1500), np.zeros(40)]  # far away, but weightless: no centre may land there
    df = frame(spark, X, 3, extra={"w": weights})
    model = GaussianMixture(k=3, maxIter=0, weightCol="w", seed=5).fit(df)  # maxIter=0: the start itself
    start = model.means[np.argsort(model.means[:, 0] + 2 * model.means[:, 1])]
    np.testing.assert_allclose(start, centres, atol=0.2)
    assert model.summary.numRows == 1540 and model.summary.weightSum == 1500


def test_weighted_rows_equal_replicated_rows_from_the_same_start(spark, covariance_type):
    X, _, _ = blobs(k=3, n=600, seed=8, spread=3.0)
    counts = np.random.default_rng(1).integers(1, 4, X.shape[0])
    start = make_mixture(covariance_type, n_components=3, n_features=2, seed=2, separation=3.0)
    params = dict(k=3, covarianceType=covariance_type, maxIter=8, tol=0.0, initialModel=start, acceleration="squarem")
    weighted = GaussianMixture(weightCol="w", **params).fit(frame(spark, X, 2, extra={"w": counts.astype(float)}))
    repeated = GaussianMixture(**params).fit(frame(spark, np.repeat(X, counts, axis=0), 3))
    np.testing.assert_allclose(weighted.means, repeated.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weighted.covariances, repeated.covariances, rtol=1e-9, atol=1e-12)


def test_warm_start_from_a_fitted_model(spark):
    X, _, _ = blobs(k=3, seed=5)
    df = frame(spark, X, 2)
    first = GaussianMixture(k=3, maxIter=3, tol=0.0, seed=2).fit(df)
    warm = GaussianMixture(k=3, maxIter=5, tol=0.0, initialModel=first, nInit=3).fit(df)
    np.testing.assert_allclose(warm.summary.logLikelihoodHistory[0], first.summary.logLikelihood, rtol=1e-12)
    assert warm.summary.restarts[0]["initPasses"] == 0 and len(warm.summary.restarts) == 1  # nInit: moot
    assert warm.summary.numPasses == 1 + 5 + 1 and warm.summary.logLikelihood > first.summary.logLikelihood


def test_select_model_picks_the_true_k_by_bic_in_shared_passes(spark):
    X, _, _ = blobs(k=3, n=3000, d=3, seed=11, spread=5.0)
    df = frame(spark, X, 3)
    before = last_job_id(spark)
    selection = select_model(df, k=[1, 2, 3, 4, 5], covarianceTypes=["full", "diag"], seed=3, maxIter=200,
                             tol=1e-5, nInit=2)
    jobs = new_jobs(spark, before)
    rows = selection.candidates
    assert [(r["k"], r["covariance_type"]) for r in rows] == [(k, t) for t in ("full", "diag") for k in range(1, 6)]
    assert selection.criterion == "bic" and rows[selection.best]["k"] == 3
    assert selection.best == int(np.argmin([r["bic"] for r in rows]))
    assert selection.bestModel.mixture.n_components == 3
    assert selection.bestModel.summary.bic == rows[selection.best]["bic"]
    for row, model in zip(rows, selection.models, strict=True):  # each criterion is the model's own, on the data
        np.testing.assert_allclose(row["bic"], model.mixture.bic(X), rtol=1e-9)
    # Ten candidates with two restarts each, one conversion, and far fewer passes than fitting them one by one.
    assert jobs.count("sparkgmm: convert features to blocks") == 1
    assert len(jobs) == max(r["passes"] for r in rows) < sum(r["passes"] for r in rows) / 3
    assert persisted_rdd_count(spark) == 0


@pytest.mark.slow
def test_select_model_from_sample_optima_equals_its_full_data_answer(spark):
    X, _, _ = blobs(k=3, n=3000, d=3, seed=12, spread=3.0)
    df = frame(spark, X, 3)
    grid = dict(k=[2, 3, 4], covarianceTypes=["full", "diag"], seed=5, maxIter=300, tol=1e-7)
    searched = select_model(df, **grid)
    full_data = select_model(df, initMode="k-means||", nInit=4, **grid)
    best = searched.candidates[searched.best]
    assert (best["k"], best["covariance_type"]) == (3, "full")
    assert (full_data.candidates[full_data.best]["k"], full_data.candidates[full_data.best]["covariance_type"]) == (
        3, "full")
    # Every candidate was searched on the sample, then polished on the full data: its criterion is the full data's,
    # and it is no worse than the best of four k-means|| restarts run on the full data.
    for ours, theirs, model in zip(searched.candidates, full_data.candidates, searched.models, strict=True):
        assert model.summary.sampleRows == 3000 and model.summary.restarts[0]["initPasses"] == 0
        np.testing.assert_allclose(ours["bic"], model.mixture.bic(X), rtol=1e-9)
        assert ours["log_likelihood"] >= theirs["log_likelihood"] - 1e-5
    np.testing.assert_allclose(best["log_likelihood"], full_data.candidates[full_data.best]["log_likelihood"],
                               atol=1e-6)


def test_select_model_refuses_bad_arguments(spark):
    df = frame(spark, np.random.default_rng(0).normal(size=(50, 2)), 1)
    for kwargs, message in [({"k": []}, "at least one"), ({"k": [2], "covarianceTypes": ["round"]}, "covarianceTypes"),
                            ({"k": [2], "criterion": "hqc"}, "criterion"), ({"k": [2], "covarianceType": "diag"},
                                                                           "sets covarianceType itself")]:
        with pytest.raises(ValueError, match=message):
            select_model(df, **kwargs)
