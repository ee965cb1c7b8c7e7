"""The fitted Spark model: transform against ``Mixture`` scoring, nulls, persistence."""

import numpy as np
import pytest
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import types as T

from helpers import frame, make_mixture
from sparkgmm import GaussianMixture, GaussianMixtureModel, Mixture
from sparkgmm.errors import InputError
from sparkgmm.passes import log_density_ceiling
from sparkgmm.sketch import ALPHA

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def fitted(spark):
    truth = make_mixture("full", n_components=3, n_features=3, seed=8, separation=2.0)
    X, _ = truth.sample(500, seed=2)
    df = frame(spark, X, 3, extra={"id": np.arange(500), "tag": [f"r{i}" for i in range(500)]})
    return GaussianMixture(k=3, maxIter=10, seed=3).fit(df), df, X


def test_transform_matches_mixture_scoring_and_keeps_columns(fitted):
    model, df, X = fitted
    out = model.transform(df)
    assert out.columns == ["features", "id", "tag", "prediction", "probability", "logDensity"]
    types = {f.name: f.dataType for f in out.schema.fields}
    assert isinstance(types["prediction"], T.IntegerType) and isinstance(types["probability"], VectorUDT)
    assert isinstance(types["logDensity"], T.DoubleType)
    rows = sorted(out.collect(), key=lambda r: r.id)
    assert [r.tag for r in rows] == [f"r{i}" for i in range(500)]
    np.testing.assert_array_equal([r.prediction for r in rows], model.mixture.predict(X))
    np.testing.assert_allclose(np.array([r.probability.toArray() for r in rows]), model.mixture.predict_proba(X),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose([r.logDensity for r in rows], model.mixture.score_samples(X), rtol=1e-12)


def test_transform_gives_nulls_for_unusable_rows(fitted, spark):
    model, _, _ = fitted
    df = spark.createDataFrame(
        [(0, [0.0, 0.0, 0.0]), (1, None), (2, [0.0, float("nan"), 0.0]), (3, [1.0, 2.0]), (4, [1.0, 1.0, 1.0])],
        "id int, features array<double>",
    )
    rows = sorted(model.transform(df).collect(), key=lambda r: r.id)
    usable = [r.id for r in rows if r.prediction is not None]
    assert usable == [0, 4]
    assert all(r.probability is None and r.logDensity is None for r in rows if r.id in (1, 2, 3))
    np.testing.assert_allclose(rows[4].logDensity, model.mixture.score_samples([[1.0, 1.0, 1.0]])[0], rtol=1e-12)


def test_output_column_names_follow_params(fitted):
    model, df, _ = fitted
    renamed = model.copy().setPredictionCol("cluster").setProbabilityCol("p").setLogDensityCol("ld")
    assert renamed.transform(df).columns[-3:] == ["cluster", "p", "ld"]


def test_save_and_load(fitted, tmp_path):
    model, df, _ = fitted
    model.save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.covariances, model.covariances)
    assert loaded.summary == model.summary and loaded.uid == model.uid
    assert loaded.logDensityQuantiles == model.logDensityQuantiles
    assert loaded.getK() == 3 and loaded.getLogDensityCol() == "logDensity"
    # The same directory serves a process without Spark.
    np.testing.assert_array_equal(Mixture.load(tmp_path / "m").means, model.means)
    with pytest.raises(FileExistsError):
        model.save(str(tmp_path / "m"))
    a = sorted(model.transform(df).collect(), key=lambda r: r.id)
    b = sorted(loaded.transform(df).collect(), key=lambda r: r.id)
    assert [r.logDensity for r in a] == [r.logDensity for r in b]
    # quantiles given to the constructor are kept too, with float levels
    quantiles = {0.01: -9.25, 0.5: -3.5}
    GaussianMixtureModel(model.mixture, logDensityQuantiles=quantiles).save(str(tmp_path / "q"))
    assert GaussianMixtureModel.load(str(tmp_path / "q")).logDensityQuantiles == quantiles


def test_transform_refuses_to_replace_a_column(fitted):
    model, df, _ = fitted
    scored = model.transform(df)
    with pytest.raises(InputError, match="output column 'prediction' already exists in the DataFrame"):
        model.transform(scored)
    renamed = model.copy().setPredictionCol("cluster").setProbabilityCol("p")
    with pytest.raises(InputError, match=r"output column 'logDensity' already exists .* set logDensityCol"):
        renamed.transform(scored)
    assert renamed.copy().setLogDensityCol("ld").transform(scored).columns[-3:] == ["cluster", "p", "ld"]


def test_model_accessors(fitted):
    """The accessors are the fitted mixture's parameters, and the summary describes that mixture on the data fitted."""
    model, _, X = fitted
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(model, name), getattr(model.mixture, name), err_msg=name)
    assert model.mixture.n_components == 3 and model.mixture.covariance_type == "full"
    summary = model.summary
    assert model.hasSummary and summary.numRows == 500 and summary.weightSum == 500.0
    assert summary.numIter == len(summary.logLikelihoodHistory) - 1 <= 10
    np.testing.assert_allclose(summary.logLikelihood, model.mixture.score(X), rtol=1e-12)
    assert summary.logLikelihoodHistory[-1] == summary.logLikelihood
    np.testing.assert_array_equal(summary.clusterSizes, np.bincount(model.mixture.predict(X), minlength=3))
    k, d = 3, 3
    assert summary.numParameters == k * d * (d + 1) // 2 + k * d + k - 1  # covariances, means, weights less one
    np.testing.assert_allclose(summary.bic, model.mixture.bic(X), rtol=1e-12)
    np.testing.assert_allclose(summary.aic, model.mixture.aic(X), rtol=1e-12)


def test_outlier_flags_are_the_rows_below_the_training_quantile(fitted, spark):
    model, df, X = fitted
    log_density = model.mixture.score_samples(X)
    exact = np.quantile(log_density, 0.05, method="inverted_cdf")
    slack = ALPHA * (log_density_ceiling(model.mixture) - exact)  # the sketch's accuracy
    threshold = model.logDensityQuantiles[0.05]
    assert model.summary.logDensityQuantiles == model.logDensityQuantiles
    assert abs(threshold - exact) <= slack
    flagging = model.copy().setOutlierQuantile(0.05).setOutlierCol("odd")
    out = flagging.transform(df)
    assert out.columns[-4:] == ["prediction", "probability", "logDensity", "odd"]
    assert isinstance(out.schema["odd"].dataType, T.BooleanType)
    flags = np.array([r.odd for r in sorted(out.select("id", "odd").collect())])
    np.testing.assert_array_equal(flags, log_density < threshold)
    assert (log_density < exact - slack).sum() <= flags.sum() <= (log_density < exact + slack).sum()
    assert 0.04 * len(X) <= flags.sum() <= 0.06 * len(X)
    # unusable rows get a null flag, as their log-density is null
    odd = spark.createDataFrame([(0, None), (1, [50.0, 50.0, 50.0])], "id int, features array<double>")
    assert [r.odd for r in sorted(flagging.transform(odd).collect())] == [None, True]
    # a model that was not fitted holds no quantiles to flag by
    with pytest.raises(InputError, match=r"holds no training log-density quantiles .* refit it"):
        GaussianMixtureModel(model.mixture).setOutlierQuantile(0.05).transform(df)
    with pytest.raises(InputError, match=r"outlierQuantile=0.9 must be a quantile level in \(0, 0.5\]"):
        model.copy().setOutlierQuantile(0.9).transform(df)
