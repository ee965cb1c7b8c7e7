"""``BayesianGaussianMixture`` through Spark: equal to scikit-learn's from the same start, with its default priors
from the conversion; weighted rows as replicated rows; restarts, float32 blocks, checkpoints, persistence, Pipelines
and scikit-learn's model; bad priors refused."""

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel

from helpers import BAYESIAN_K as K
from helpers import Interrupted, assert_posterior_matches, frame, interrupt_after
from helpers import bayesian_data_and_start as data_and_start
from helpers import sklearn_bayesian_fit as sklearn_fit
from sparkgmm import BayesianGaussianMixture, GaussianMixtureModel, InputError, Mixture
from sparkgmm.bayesian import from_sklearn

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("prior_type", ["dirichlet_process", "dirichlet_distribution"])
def test_from_an_initial_model_it_equals_sklearn_with_the_default_priors(spark, covariance_type, prior_type):
    X, start = data_and_start(covariance_type)
    theirs = sklearn_fit(X, start, prior_type, max_iter=7, tol=0.0)
    model = BayesianGaussianMixture(k=K, covarianceType=covariance_type, weightConcentrationPriorType=prior_type,
                                    initialModel=start, maxIter=7, tol=0.0).fit(frame(spark, X, 3))
    assert_posterior_matches(model.posterior, theirs)  # the priors from the conversion's moments: sklearn's defaults
    summary = model.summary
    np.testing.assert_allclose(summary.lowerBoundHistory, np.ravel(theirs.lower_bounds_), rtol=1e-10)
    assert (summary.numIter, summary.weightConcentrationPriorType) == (7, prior_type)
    assert summary.effectiveComponents == int(np.count_nonzero(theirs.weights_ > 0.01))
    np.testing.assert_allclose(summary.logLikelihood, model.mixture.score(X), rtol=1e-12)
    assert summary.numPasses == 1 + 1 + 7 + 1  # conversion, variational start, iterations, final measure


def test_the_dataframe_engine_and_float32_blocks_give_the_same_fit(spark):
    X, start = data_and_start("full")
    df = frame(spark, X, 3)
    params = dict(k=K, initialModel=start, maxIter=10, tol=0.0)
    rdd = BayesianGaussianMixture(engine="rdd", **params).fit(df)
    dataframe = BayesianGaussianMixture(engine="dataframe", **params).fit(df)
    single = BayesianGaussianMixture(dtype="float32", **params).fit(df)
    np.testing.assert_allclose(dataframe.posterior.covariances, rdd.posterior.covariances, rtol=1e-10)
    np.testing.assert_allclose(dataframe.summary.lowerBoundHistory, rdd.summary.lowerBoundHistory, rtol=1e-12)
    np.testing.assert_allclose(single.posterior.covariances, rdd.posterior.covariances, rtol=1e-4)
    np.testing.assert_allclose(single.summary.lowerBoundHistory, rdd.summary.lowerBoundHistory, rtol=1e-5)


def test_weighted_rows_equal_replicated_rows(spark):
    X, start = data_and_start("diag")
    counts = np.random.default_rng(3).integers(1, 4, X.shape[0]).astype(float)
    params = dict(k=K, covarianceType="diag", initialModel=start, maxIter=12, tol=0.0)
    weighted = BayesianGaussianMixture(weightCol="w", **params).fit(frame(spark, X, 3, extra={"w": counts}))
    replicated = BayesianGaussianMixture(**params).fit(frame(spark, np.repeat(X, counts.astype(int), axis=0), 3))
    for name in ("weight_concentration", "mean_precision", "means", "degrees_of_freedom", "covariances"):
        np.testing.assert_allclose(getattr(weighted.posterior, name), getattr(replicated.posterior, name), rtol=1e-9,
                                   err_msg=name)
    np.testing.assert_allclose(weighted.prior.covariance, replicated.prior.covariance, rtol=1e-12)


def test_restarts_share_passes_and_the_best_lower_bound_wins(spark):
    X, _ = data_and_start("full")
    model = BayesianGaussianMixture(k=4, nInit=3, seed=5, maxIter=40, initMode="k-means||").fit(frame(spark, X, 3))
    restarts = model.summary.restarts
    bounds = [r["lowerBound"] for r in restarts]
    assert len(restarts) == 3 and len(set(bounds)) > 1  # different starts, different optima
    assert model.summary.bestRestart == int(np.argmax(bounds))
    assert model.summary.lowerBound == max(bounds)
    # one pass serves every restart: the fit made no more passes than its longest restart needed
    assert model.summary.numPasses == 1 + max(r["initPasses"] + r["numPasses"] for r in restarts)


@pytest.mark.slow
def test_an_interrupted_fit_resumes_from_its_checkpoint_bit_identical(spark, tmp_path, monkeypatch):
    X, _ = data_and_start("full")
    df = frame(spark, X, 3)

    def fit(directory):
        return BayesianGaussianMixture(k=4, nInit=2, seed=5, maxIter=25, tol=0.0, initMode="k-means||",
                                       checkpointDir=str(directory)).fit(df)

    whole = fit(tmp_path / "unused")
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        with pytest.raises(Interrupted):
            fit(tmp_path / "checkpoints")
    resumed = fit(tmp_path / "checkpoints")
    assert resumed.summary.resumedFromPass == 12 and whole.summary.numPasses > 12
    for name in ("weight_concentration", "mean_precision", "means", "degrees_of_freedom", "covariances"):
        np.testing.assert_array_equal(getattr(resumed.posterior, name), getattr(whole.posterior, name))
    assert resumed.summary.lowerBoundHistory == whole.summary.lowerBoundHistory
    assert resumed.summary.logLikelihoodHistory == whole.summary.logLikelihoodHistory


def test_the_model_keeps_its_posterior_and_priors_through_persistence_pipelines_and_sklearn(spark, tmp_path):
    X, start = data_and_start("tied")
    df = frame(spark, X, 3)
    gmm = BayesianGaussianMixture(k=K, covarianceType="tied", initialModel=start, maxIter=5, tol=0.0,
                                  weightConcentrationPrior=0.5, meanPrecisionPrior=2.0, degreesOfFreedomPrior=4.5,
                                  meanPrior=[0.0, 1.0, 2.0], covariancePrior=np.eye(3).tolist())
    model = gmm.fit(df)
    assert model.prior.mean.tolist() == [0.0, 1.0, 2.0] and model.prior.degrees_of_freedom == 4.5
    model.write().save(str(tmp_path / "model"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "model"))
    for name in ("weight_concentration", "mean_precision", "means", "degrees_of_freedom", "covariances"):
        np.testing.assert_array_equal(getattr(loaded.posterior, name), getattr(model.posterior, name))
    np.testing.assert_array_equal(loaded.prior.covariance, model.prior.covariance)
    assert loaded.summary == model.summary
    # scikit-learn's model of it, and back
    sk = loaded.to_sklearn()
    posterior, prior = from_sklearn(sk)
    np.testing.assert_array_equal(posterior.weight_concentration, model.posterior.weight_concentration)
    assert prior.weight_concentration == 0.5 and prior.mean_precision == 2.0
    np.testing.assert_allclose(sk.predict_proba(X).sum(axis=1), 1.0, rtol=1e-12)
    # the estimator and the model as pipeline stages
    Pipeline(stages=[gmm.copy({gmm.initialModel: start})]).write().save(str(tmp_path / "pipeline"))
    stage = Pipeline.load(str(tmp_path / "pipeline")).getStages()[0]
    assert type(stage) is BayesianGaussianMixture and stage.getOrDefault("covariancePrior") == np.eye(3).tolist()
    assert stage.getOrDefault("weightConcentrationPrior") == 0.5 and stage.getAcceleration() == "none"
    PipelineModel(stages=[model]).write().save(str(tmp_path / "fitted"))
    scored = PipelineModel.load(str(tmp_path / "fitted")).transform(df)
    assert scored.count() == X.shape[0] and "logDensity" in scored.columns


@pytest.mark.parametrize(("params", "message"), [
    ({"acceleration": "squarem"}, "acceleration='squarem': a BayesianGaussianMixture runs without acceleration; "
                                  "leave it at 'none'"),
    ({"maxReseeds": 2}, "maxReseeds=2: a BayesianGaussianMixture never re-seeds"),
    ({"meanPrior": [0.0, 1.0]}, "meanPrior has 2 values but the data has 3 features"),
    ({"degreesOfFreedomPrior": 1.0}, "degreesOfFreedomPrior=1.0 must be > n_features - 1 = 2"),
    ({"weightConcentrationPrior": 0.0}, "weightConcentrationPrior=0.0 must be > 0"),
    ({"weightConcentrationPriorType": "dirichlet"}, "weightConcentrationPriorType='dirichlet' must be one of "
                                                    "dirichlet_process, dirichlet_distribution"),
    ({"covariancePrior": [1.0, 2.0]}, "covariancePrior for full covariances of 3 features must have shape (3, 3)"),
    ({"weightCol": "w"}, "the default covariancePrior is the data's covariance, which needs rows weighing more than 1 "
                         "in all (weights count as rows); they weigh 0.6: set covariancePrior"),
])
def test_bad_priors_and_settings_are_refused_naming_them(spark, params, message):
    X = np.random.default_rng(0).normal(size=(6, 3))
    df = frame(spark, X, 2, extra={"w": np.full(6, 0.1)})
    with pytest.raises(InputError) as error:
        BayesianGaussianMixture(k=2, maxIter=3, **params).fit(df)
    assert str(error.value).startswith(message)


def test_by_default_it_keeps_as_many_components_as_the_data_have(spark):
    """k is an upper bound: the sample search (EM screened, then variational inference with merge moves on the sample)
    and the full-data fit keep the three clusters' components and empty the rest."""
    truth = Mixture(np.full(3, 1 / 3), [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], np.stack([np.eye(2)] * 3))
    X, _ = truth.sample(4000, seed=5)
    model = BayesianGaussianMixture(k=10, seed=3).fit(frame(spark, X, 3))
    summary = model.summary
    assert summary.effectiveComponents == 3 and summary.converged
    assert summary.sampleRows == 4000 and summary.numIter < 100
    used = np.sort(model.means[model.weights > 0.01], axis=0)
    np.testing.assert_allclose(used, np.sort(truth.means, axis=0), atol=0.15)
