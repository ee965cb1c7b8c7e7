"""sparkgmm through Spark Connect: a local Connect server started for this module (``LocalConnectServer``), and a
client session beside the classic ``spark`` fixture's. Fit, transform, save and load through it; the fit must give
the model the classic session's RDD engine gives on the same rows."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pyarrow as pa
import pytest

from helpers import make_mixture
from sparkgmm import BayesianGaussianMixture, GaussianMixture, GaussianMixtureModel
from sparkgmm.errors import InputError
from sparkgmm.spark.checkpoints import connect_local_dir

pytestmark = [pytest.mark.spark, pytest.mark.connect, pytest.mark.slow]

_CONNECT_MODE = "SPARK_CONNECT_MODE_ENABLED"
PARAMS = dict(k=3, maxIter=5, tol=0.0, seed=11, featuresCol="vec")


@contextlib.contextmanager
def connect_mode():
    """pyspark's column functions (``F.col``, ``arrow_udf``, ``vector_to_array``) build Connect columns only while
    SPARK_CONNECT_MODE_ENABLED is set (``pyspark.sql.utils.is_remote``), as it is all along in a process that only
    talks to a Connect server. Set it around the Connect calls, and take it away again so that the classic session
    of this module and of the other tests keeps working."""
    before = os.environ.get(_CONNECT_MODE)
    os.environ[_CONNECT_MODE] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_CONNECT_MODE, None)
        else:
            os.environ[_CONNECT_MODE] = before


def rows() -> tuple[np.ndarray, pa.Table]:
    X, _ = make_mixture("full", n_components=3, n_features=3, seed=5).sample(1500, seed=6)
    n, d = X.shape
    features = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), pa.array(X.ravel()))
    return X, pa.table({"id": np.arange(n), "features": features})


def with_vectors(session, table: pa.Table):
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    return session.createDataFrame(table).select("id", array_to_vector(F.col("features")).alias("vec")).repartition(2)


@pytest.fixture(scope="module")
def server():
    """A Connect server on 127.0.0.1 (local[2]), launched first: it starts while the classic fit runs."""
    from sparkgmm.spark.connect_server import LocalConnectServer

    server = LocalConnectServer("local[2]", {"spark.sql.shuffle.partitions": "4"}).launch()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def classic(server, spark):
    """The reference: the fit (k-means|| initialisation, then EM) in the classic session, on its RDD engine."""
    _, table = rows()
    return GaussianMixture(**PARAMS).fit(with_vectors(spark, table))


@pytest.fixture(scope="module")
def connect(server, classic):
    """A client session of the server, next to the classic session."""
    from pyspark.sql import SparkSession

    server.wait()
    with connect_mode():  # create() sets SPARK_CONNECT_MODE_ENABLED for the whole process: connect_mode restores it
        # create(), not getOrCreate(): the latter refuses to connect while a classic SparkContext runs here.
        session = SparkSession.builder.remote(server.url).create()
    yield session
    with connect_mode():
        session.stop()


@pytest.fixture(scope="module")
def fits(classic, connect, tmp_path_factory):
    """The classic fit, and the same fit through Connect, which also keeps its checkpoint in a directory of the
    client's."""
    X, table = rows()
    checkpoints = tmp_path_factory.mktemp("connect-checkpoints")
    with connect_mode():
        df = with_vectors(connect, table)
        remote = GaussianMixture(**PARAMS, checkpointDir=str(checkpoints), keepCheckpoint=True).fit(df)
    return X, df, classic, remote, checkpoints


def test_a_fit_through_connect_gives_the_classic_sessions_model(fits):
    X, _, classic, remote, checkpoints = fits
    assert remote.summary.numIter == classic.summary.numIter == 5
    assert remote.summary.numRows == len(X) and remote.summary.blockStorage == "local-files"
    np.testing.assert_allclose(remote.weights, classic.weights, rtol=1e-9)
    np.testing.assert_allclose(remote.means, classic.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(remote.covariances, classic.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(remote.summary.logLikelihoodHistory, classic.summary.logLikelihoodHistory, rtol=1e-12)
    kept = [path.name for path in checkpoints.iterdir()]  # written by the client, one after every pass: the last
    assert len(kept) == 1 and kept[0].startswith("checkpoint-") and (checkpoints / kept[0] / "state.json").is_file()


def test_transform_through_connect_adds_the_scores(fits):
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql import types as T

    X, df, _, remote, _ = fits
    with connect_mode():
        scored = remote.transform(df)
        types = {field.name: field.dataType for field in scored.schema.fields}
        out = sorted(scored.collect(), key=lambda row: row.id)
    assert list(types) == ["id", "vec", "prediction", "probability", "logDensity"]
    assert isinstance(types["prediction"], T.IntegerType) and isinstance(types["probability"], VectorUDT)
    assert isinstance(types["logDensity"], T.DoubleType)
    mixture = remote.mixture
    np.testing.assert_array_equal([row.prediction for row in out], mixture.predict(X))
    np.testing.assert_allclose(np.array([row.probability.toArray() for row in out]), mixture.predict_proba(X),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([row.logDensity for row in out], mixture.score_samples(X), rtol=1e-12)


def test_a_model_saved_and_loaded_through_connect_is_the_same(fits, tmp_path):
    _, _, _, remote, _ = fits
    path = str(tmp_path / "model")
    with connect_mode():
        remote.write().overwrite().save(path)
        loaded = GaussianMixtureModel.load(path)
    np.testing.assert_array_equal(loaded.weights, remote.weights)
    np.testing.assert_array_equal(loaded.means, remote.means)
    np.testing.assert_array_equal(loaded.covariances, remote.covariances)
    assert (loaded.getK(), loaded.getFeaturesCol()) == (3, "vec")


def test_the_rdd_engine_and_non_local_checkpoints_are_refused_under_connect(fits):
    _, df, _, _, _ = fits
    with connect_mode(), pytest.raises(InputError, match="engine='rdd' needs a SparkContext"):
        GaussianMixture(**PARAMS, engine="rdd").fit(df)
    with pytest.raises(InputError, match="checkpointDir='hdfs://nn/ckpt': under Spark Connect"):
        connect_local_dir("hdfs://nn/ckpt")
    assert connect_local_dir("file:///tmp/ckpt").as_posix() == "/tmp/ckpt"


def test_a_bayesian_mixture_fits_through_connect_as_in_the_classic_session(fits, spark, tmp_path):
    X, df, _, _, _ = fits
    start = make_mixture("full", n_components=4, n_features=3, seed=5)
    params = dict(k=4, initialModel=start, maxIter=6, tol=0.0, featuresCol="vec")
    classic = BayesianGaussianMixture(**params).fit(with_vectors(spark, rows()[1]))
    with connect_mode():
        remote = BayesianGaussianMixture(**params).fit(df)  # the moments for the priors come from its conversion
        remote.write().save(str(tmp_path / "model"))
        loaded = GaussianMixtureModel.load(str(tmp_path / "model"))
    np.testing.assert_allclose(remote.prior.covariance, np.cov(X.T), rtol=1e-10)
    np.testing.assert_allclose(remote.posterior.covariances, classic.posterior.covariances, rtol=1e-9)
    np.testing.assert_allclose(remote.summary.lowerBoundHistory, classic.summary.lowerBoundHistory, rtol=1e-12)
    np.testing.assert_array_equal(loaded.posterior.weight_concentration, remote.posterior.weight_concentration)


def test_a_model_updates_through_connect_as_in_memory_and_train_on_is_refused(fits, connect, tmp_path):
    from sparkgmm.spark.online import update_model
    from sparkgmm.spark.streaming import train_on

    X, df, _, remote, _ = fits
    model = remote.copy().setHalfLife(3.0)
    expected = remote.mixture.partial_fit(X, half_life=3.0, reg_covar=remote.getRegCovar())
    with connect_mode():
        one_job = update_model(model, df)  # read, packed and scored in one job, nothing stored
        measured = update_model(model, df, measure_after=True)  # through stored blocks, with a second pass
        stream = connect.readStream.schema("x0 double, x1 double, x2 double").parquet(str(tmp_path))
        with pytest.raises(InputError, match="train_on runs in a classic Spark session"):
            train_on(stream, model, str(tmp_path / "models"), str(tmp_path / "checkpoint"))
    for update in (one_job, measured):
        np.testing.assert_allclose(update.model.means, expected.means, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(update.model.covariances, expected.covariances, rtol=1e-9, atol=1e-12)
        assert (update.result.n_samples, update.model.mixture.seen.batches) == (len(X), 2)
    np.testing.assert_allclose(measured.result.log_likelihood_after, expected.score(X), rtol=1e-10)
    assert not remote.isSet("halfLife") and model.getOrDefault("halfLife") == 3.0  # copied, not changed
