"""The fitted Spark model: transform against ``Mixture`` scoring, nulls, persistence."""

import numpy as np
import pytest
from pyspark.ml.linalg import VectorUDT
from pyspark.sql import types as T

from conftest import make_mixture
from test_spark_fit import frame
from sparkgmm import GaussianMixture, GaussianMixtureModel, Mixture

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
    model, df, X = fitted
    model.save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.covariances, model.covariances)
    assert loaded.summary == model.summary
    assert loaded.getK() == 3 and loaded.getLogDensityCol() == "logDensity"
    # The same directory serves a process without Spark.
    np.testing.assert_array_equal(Mixture.load(tmp_path / "m").means, model.means)
    with pytest.raises(FileExistsError):
        model.save(str(tmp_path / "m"))
    a = sorted(model.transform(df).collect(), key=lambda r: r.id)
    b = sorted(loaded.transform(df).collect(), key=lambda r: r.id)
    assert [r.logDensity for r in a] == [r.logDensity for r in b]


def test_model_accessors(fitted):
    model, _, _ = fitted
    assert model.weights.shape == (3,) and model.means.shape == (3, 3) and model.covariances.shape == (3, 3, 3)
    assert model.hasSummary and model.summary.numRows == 500
