"""pyspark.ml persistence: the estimator and the model inside Pipeline, PipelineModel, CrossValidator and
CrossValidatorModel; a drop-in for pyspark.ml.clustering.GaussianMixture; overwrite semantics; URIs."""

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.linalg import VectorUDT
from pyspark.ml.tuning import CrossValidator, CrossValidatorModel, ParamGridBuilder
from pyspark.sql import types as T

from helpers import make_mixture, write_format_1_model_dir
from sparkgmm import GaussianMixture, GaussianMixtureModel, InputError, Mixture
from sparkgmm.errors import OutputExistsError
from sparkgmm.spark import readwrite

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def data(spark):
    X, _ = make_mixture("diag", n_components=2, n_features=3, seed=4, separation=5.0).sample(300, seed=1)
    df = spark.createDataFrame([(i, *map(float, row)) for i, row in enumerate(X)], ["id", "x", "y", "z"])
    return VectorAssembler(inputCols=["x", "y", "z"], outputCol="features").transform(df), X


@pytest.fixture(scope="module")
def model(data) -> GaussianMixtureModel:
    return GaussianMixture(k=2, covarianceType="diag", maxIter=5, seed=1).fit(data[0])


def log_densities(model, df) -> list[float]:
    return [r.logDensity for r in sorted(model.transform(df).select("id", "logDensity").collect())]


def test_pipeline_and_its_model_round_trip(spark, data, model, tmp_path):
    df, _ = data
    start = make_mixture("diag", n_components=2, n_features=3, seed=9)
    gmm = GaussianMixture(k=2, covarianceType="diag", maxIter=3, seed=1, inputCols=["x", "y", "z"],
                          initialModel=start)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["x", "y"], outputCol="xy"), gmm])
    pipeline.save(str(tmp_path / "pipeline"))
    loaded = Pipeline.load(str(tmp_path / "pipeline"))
    stage = loaded.getStages()[1]
    assert type(stage) is GaussianMixture and stage.uid == gmm.uid
    assert (stage.getK(), stage.getCovarianceType(), stage.getMaxIter(), stage.getInputCols()) == (
        2, "diag", 3, ["x", "y", "z"])
    np.testing.assert_array_equal(stage.getInitialModel().covariances, start.covariances)

    fitted = PipelineModel(stages=[model])
    uri = f"file://{tmp_path}/pipeline-model"
    fitted.write().overwrite().save(uri)
    back = PipelineModel.load(uri)
    (stage,) = back.stages
    assert type(stage) is GaussianMixtureModel and stage.uid == model.uid and stage.summary == model.summary
    assert log_densities(stage, df) == log_densities(model, df)


def test_cross_validator_and_its_model_round_trip(spark, data, model, tmp_path):
    gmm = GaussianMixture(covarianceType="diag", maxIter=5, seed=1)
    grid = ParamGridBuilder().addGrid(gmm.k, [2, 3]).build()
    cv = CrossValidator(estimator=gmm, estimatorParamMaps=grid, evaluator=ClusteringEvaluator(), numFolds=2, seed=1)
    cv.save(str(tmp_path / "cv"))
    loaded = CrossValidator.load(str(tmp_path / "cv"))
    assert type(loaded.getEstimator()) is GaussianMixture
    # the grid's params resolve to the loaded estimator's own params
    assert [{(p.parent, p.name): v for p, v in m.items()} for m in loaded.getEstimatorParamMaps()] == [
        {(gmm.uid, "k"): 2}, {(gmm.uid, "k"): 3}]

    cv_model = CrossValidatorModel(model, avgMetrics=[0.7, 0.5])
    cv_model._set(estimator=gmm, evaluator=ClusteringEvaluator(), estimatorParamMaps=grid)
    cv_model.save(str(tmp_path / "cv-model"))
    back = CrossValidatorModel.load(str(tmp_path / "cv-model"))
    assert type(back.bestModel) is GaussianMixtureModel and back.avgMetrics == [0.7, 0.5]
    assert back.bestModel.uid == model.uid and back.bestModel.summary == model.summary
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(back.bestModel, name), getattr(model, name))


def drop_in_script(estimator_class, df, n_rows: int, path: str):
    """The same user code, whichever GaussianMixture it is given."""
    gmm = estimator_class(k=2, maxIter=3, tol=0.01, seed=1, featuresCol="features", predictionCol="prediction",
                          probabilityCol="probability")
    model = gmm.fit(df)
    assert sum(model.summary.clusterSizes) == n_rows
    model.write().overwrite().save(path)
    loaded = type(model).load(path)
    out = loaded.transform(df)
    with pytest.raises(Exception, match="already exists"):  # transform never replaces a column
        loaded.transform(out)
    return out


@pytest.mark.slow
def test_a_drop_in_for_pyspark_ml_gaussian_mixture(spark, data, tmp_path):
    from pyspark.ml.clustering import GaussianMixture as MLlibGaussianMixture

    df, X = data[0].select("id", "features"), data[1]
    theirs = drop_in_script(MLlibGaussianMixture, df, len(X), str(tmp_path / "mllib"))
    ours = drop_in_script(GaussianMixture, df, len(X), str(tmp_path / "sparkgmm"))
    types = {f.name: f.dataType for f in theirs.schema.fields}
    assert set(theirs.columns) == {"id", "features", "prediction", "probability"}
    assert set(ours.columns) == set(theirs.columns) | {"logDensity"}  # MLlib puts probability first: named, not placed
    assert all(ours.schema[name].dataType == types[name] for name in theirs.columns)
    assert isinstance(types["prediction"], T.IntegerType) and isinstance(types["probability"], VectorUDT)


def test_overwrite_is_asked_for_and_a_failed_save_keeps_the_old_model(spark, model, tmp_path, monkeypatch):
    path = str(tmp_path / "m")
    model.save(path)
    other = GaussianMixtureModel(make_mixture("diag", n_components=2, n_features=3, seed=3))
    with pytest.raises(OutputExistsError, match=f"model path {path} already exists; use write\\(\\).overwrite\\(\\)"):
        other.save(path)
    np.testing.assert_array_equal(Mixture.load(path).means, model.means)

    def broken(spark, uri, saved):  # the metadata is written, then the data fails
        readwrite.write_metadata_with_spark(spark, uri, "{}")
        raise OSError("disk full")

    monkeypatch.setattr(readwrite, "write_with_spark", broken)
    with pytest.raises(OSError, match="disk full"):
        other.write().overwrite().save(path)
    np.testing.assert_array_equal(Mixture.load(path).means, model.means)
    monkeypatch.undo()
    other.write().overwrite().save(path)
    np.testing.assert_array_equal(Mixture.load(path).means, other.means)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or replaced directory left behind


def test_unknown_schemes_and_missing_models_are_input_errors(spark, model, tmp_path):
    for call in (lambda: model.save("foo://somewhere/m"), lambda: GaussianMixtureModel.load("foo://somewhere/m"),
                 lambda: GaussianMixture().save("foo://somewhere/e")):
        with pytest.raises(InputError, match=r"foo://somewhere/[me]: no Hadoop file system for scheme 'foo'"):
            call()
    with pytest.raises(InputError, match=f"model path '{tmp_path}/nope' does not exist"):
        GaussianMixtureModel.load(str(tmp_path / "nope"))
    model.save(str(tmp_path / "m"))
    with pytest.raises(InputError, match=r"holds a model .*, not a GaussianMixture estimator"):
        GaussianMixture.load(str(tmp_path / "m"))


def test_format_version_1_directories_load_through_spark(spark, data, tmp_path):
    df, X = data
    mixture = make_mixture("diag", n_components=2, n_features=3, seed=5)
    summary = {"logLikelihood": -4.5, "logLikelihoodHistory": [-5.0, -4.5], "iterationSeconds": [0.1],
               "numIter": 1, "converged": True, "clusterSizes": [100, 200], "numRows": 300, "weightSum": 300.0,
               "numParameters": 13, "bic": 1.0, "aic": 2.0}
    write_format_1_model_dir(tmp_path / "old", mixture, spark_params={"k": 2, "inputCols": ["x", "y", "z"]},
                             summary=summary)
    model = GaussianMixtureModel.load(f"file://{tmp_path}/old")
    assert model.getInputCols() == ["x", "y", "z"] and model.summary.clusterSizes == (100, 200)
    np.testing.assert_allclose(log_densities(model, df), mixture.score_samples(X), rtol=1e-12)
