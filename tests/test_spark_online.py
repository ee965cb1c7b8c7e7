"""Online updates on Spark: GaussianMixtureModel.update against the in-memory update, the update job (exit codes,
atomic output, metrics), and Structured Streaming (train_on): versions, exactly-once restart after a real kill, bad
micro-batches, and scoring a stream."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import (
    STREAM_FEATURES, Background, frame, job_descriptions_since, last_job_id, leftovers, make_mixture,
    persisted_rdd_count, stream_of, stream_start_model, write_points, write_stream_files,
)
from sparkgmm import BayesianGaussianMixture, GaussianMixture, GaussianMixtureModel, Mixture
from sparkgmm.cli import run
from sparkgmm.errors import InputError
from sparkgmm.spark.online import update_model
from sparkgmm.spark.streaming import LATEST_FILE, latest_model, train_on

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "faults" / "probe_stream_kill.py"
KILL_AT = 2


def start_in_background(workdir: Path) -> Background:
    """The stream killed mid-way (tests/faults/probe_stream_kill.py), run while the tests before this module run."""
    files = write_stream_files(workdir / "files")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return Background([sys.executable, str(PROBE), files, str(workdir / "models"), str(workdir / "checkpoint"),
                       str(KILL_AT)], env=env)


def assert_same_model(ours: GaussianMixtureModel, theirs: GaussianMixtureModel | Mixture, exact: bool = True):
    a, b = ours.mixture, getattr(theirs, "mixture", theirs)
    pairs = [(getattr(a, n), getattr(b, n)) for n in ("weights", "means", "covariances")]
    pairs += [(getattr(a.seen, n), getattr(b.seen, n)) for n in ("nk", "first", "second")]
    for mine, other in pairs:
        if exact:
            assert np.array_equal(mine, other)
        else:
            np.testing.assert_allclose(mine, other, rtol=1e-9, atol=1e-9 * np.abs(other).max())
    assert (a.seen.rows, a.seen.weight, a.seen.batches) == (b.seen.rows, b.seen.weight, b.seen.batches)


@pytest.fixture(scope="module")
def data():
    truth = make_mixture("full", n_components=3, n_features=3, seed=8, separation=4.0)
    X, _ = truth.sample(3000, seed=2)
    return X[np.random.default_rng(0).permutation(3000)]


@pytest.mark.parametrize("engine, dtype", [("rdd", "float64"), ("dataframe", "float64"), ("rdd", "float32")])
def test_update_equals_the_in_memory_update_and_keeps_the_models_params(spark, data, engine, dtype):
    model = GaussianMixture(k=3, seed=1, maxIter=5, engine=engine, dtype=dtype).fit(frame(spark, data[:2000]))
    model.setHalfLife(4.0)
    updated = model.update(frame(spark, data[2000:]))
    expected = model.mixture.partial_fit(data[2000:], half_life=4.0, reg_covar=model.getRegCovar())
    rtol = 1e-5 if dtype == "float32" else 1e-9
    np.testing.assert_allclose(updated.means, expected.means, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(updated.covariances, expected.covariances, rtol=rtol, atol=rtol)
    assert (updated.mixture.seen.rows, updated.mixture.seen.batches) == (3000, 2)
    assert updated.getOrDefault("halfLife") == 4.0 and updated.getEngine() == engine
    assert not updated.hasSummary
    # outliers are flagged by the quantiles of the new rows' log-densities under the model that scored them
    expected_median = np.median(model.mixture.score_samples(data[2000:]))
    assert abs(updated.logDensityQuantiles[0.5] - expected_median) < 0.05


def test_update_with_weights_measures_before_and_after_and_survives_a_save(spark, data, tmp_path):
    weights = np.random.default_rng(1).integers(0, 3, 1000).astype(float)
    model = GaussianMixture(k=3, seed=1, maxIter=5, weightCol="w").fit(frame(spark, data[:2000], extra={
        "w": pa.array(np.ones(2000))}))
    new = frame(spark, data[2000:], extra={"w": pa.array(weights)})
    update = update_model(model, new, measure_after=True)
    expected = model.mixture.partial_fit(data[2000:], sample_weight=weights)
    np.testing.assert_allclose(update.model.means, expected.means, rtol=1e-9)
    result = update.result
    assert result.weight_sum == weights.sum() and result.n_samples == 1000
    np.testing.assert_allclose(result.log_likelihood_before,
                               np.average(model.mixture.score_samples(data[2000:]), weights=weights), rtol=1e-10)
    np.testing.assert_allclose(result.log_likelihood_after,
                               np.average(expected.score_samples(data[2000:]), weights=weights), rtol=1e-9)
    model.write().save(str(tmp_path / "m"))
    loaded = GaussianMixtureModel.load(str(tmp_path / "m"))
    assert_same_model(loaded.update(new), model.update(new))


def test_averaged_stepwise_updates_on_spark_equal_the_in_memory_ones(spark, data):
    model = GaussianMixtureModel(make_mixture("full", n_components=3))._set(effectiveCount=50.0, stepPower=0.7,
                                                                             averageAfter=1)
    updated = model.update(frame(spark, data[:1000])).update(frame(spark, data[1000:2000]))
    rule = dict(step_power=0.7, average_after=1)
    expected = model.mixture.partial_fit(data[:1000], effective_count=50.0, **rule).partial_fit(data[1000:2000], **rule)
    assert_same_model(updated, expected, exact=False)
    assert updated.mixture.seen.averaged == expected.seen.averaged == 2


def test_models_that_cannot_be_updated_say_why(spark, data):
    df = frame(spark, data[:300])
    bare = GaussianMixtureModel(make_mixture("full", n_components=3))
    with pytest.raises(InputError, match=r"holds no statistics .* give effectiveCount"):
        bare.update(df)
    assert bare.setEffectiveCount(0.0).update(df).mixture.seen.rows == 300
    with pytest.raises(InputError, match="have 2 values per row but the model has 3 features"):
        bare.update(frame(spark, data[:300, :2]))
    with pytest.raises(InputError, match=r"^stepPower \(stepwise EM\) and decayFactor or halfLife"):
        bare.setStepPower(0.7).setHalfLife(3.0).update(df)
    rows = data[:300].copy()
    rows[[3, 9], 1] = np.nan
    fresh = GaussianMixtureModel(make_mixture("full", n_components=3)).setEffectiveCount(0.0)
    with pytest.raises(InputError, match="2 rows have null, NaN or infinite values in features 'features'"):
        fresh.update(frame(spark, rows))
    update = update_model(fresh._set(handleInvalid="skip"), frame(spark, rows))
    assert (update.skipped_rows, update.result.n_samples) == (2, 298)
    bayesian = BayesianGaussianMixture(k=3, seed=1, maxIter=3).fit(df)
    with pytest.raises(InputError, match="a Bayesian mixture's model cannot be updated online"):
        bayesian.update(df)


@pytest.mark.parametrize("engine", ["rdd", "dataframe"])
def test_an_update_reads_and_scores_its_rows_in_its_named_job_and_stores_nothing(spark, data, engine):
    model = GaussianMixtureModel(make_mixture("full", n_components=3))._set(engine=engine, effectiveCount=0.0)
    rows = data[:600].copy()
    rows[[4, 7, 11], 0] = np.inf
    df = frame(spark, rows)
    before, persisted = last_job_id(spark), persisted_rdd_count(spark)
    update = update_model(model._set(handleInvalid="skip"), df)
    # every job named, the input's own shuffle's too; nothing stored
    assert set(job_descriptions_since(spark, before)) == {"sparkgmm: online update: E-step"}
    assert persisted_rdd_count(spark) == persisted
    kept = np.isfinite(rows).all(axis=1)
    expected = model.mixture.partial_fit(rows[kept], effective_count=0.0, reg_covar=model.getRegCovar())
    np.testing.assert_allclose(update.model.means, expected.means, rtol=1e-9)
    assert (update.skipped_rows, update.result.n_samples) == (3, 597)
    with pytest.raises(InputError, match="3 rows have null, NaN or infinite values in features 'features'"):
        model._set(handleInvalid="error").update(df)
    with pytest.raises(InputError, match="have 2 values per row but the model has 3 features"):
        model.update(frame(spark, data[:300, :2]))


# --- the update job ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def job_inputs(spark, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("update-job")
    old = write_points(root / "old.parquet", data[:2000])
    new = write_points(root / "new.parquet", data[2000:] + 0.5)
    assert run("fit", ["--input", old, "--output", str(root / "model"), "--features", "x0,x1,x2", "--k", "3",
                       "--seed", "5"]) == 0
    return root, new


def test_update_job_writes_the_updated_model_and_its_metrics(spark, data, job_inputs, tmp_path):
    root, new = job_inputs
    out = tmp_path / "updated"
    assert run("update", ["--model", str(root / "model"), "--input", new, "--output", str(out),
                          "--half-life", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "data", "metadata", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    old = GaussianMixtureModel.load(str(root / "model"))
    expected = old.mixture.partial_fit(data[2000:] + 0.5, half_life=3.0, reg_covar=old.getRegCovar())
    updated = Mixture.load(out)
    np.testing.assert_allclose(updated.means, expected.means, rtol=1e-9)
    assert (metrics["n_rows"], metrics["seen_rows"], metrics["seen_batches"]) == (1000, 3000, 2)
    np.testing.assert_allclose(metrics["log_likelihood_before"], old.mixture.score(data[2000:] + 0.5), rtol=1e-10)
    np.testing.assert_allclose(metrics["log_likelihood_after"], expected.score(data[2000:] + 0.5), rtol=1e-9)
    assert metrics["log_likelihood_after"] > metrics["log_likelihood_before"]
    assert metrics["rule"] == "half-life 3 batches" and metrics["feature_names"] == ["x0", "x1", "x2"]
    # the output is the next run's model: batches and rows add up
    again = tmp_path / "again"
    assert run("update", ["--model", str(out), "--input", new, "--output", str(again)]) == 0
    assert json.loads((again / "metrics.json").read_text())["seen_batches"] == 3


def test_update_job_refuses_bad_input_with_one_line_and_leaves_no_output(spark, job_inputs, tmp_path, capsys):
    root, new = job_inputs
    out = tmp_path / "updated"
    base = ["--model", str(root / "model"), "--input", new, "--output", str(out)]
    cases = [
        (base + ["--features", "x0,x1"], "the model has 3 features but 2 columns were named: x0, x1"),
        (base + ["--step-power", "0.4"], "--step-power: '0.4' must be in (0.5, 1]"),
        (base + ["--step-power", "0.8", "--half-life", "2"], "stepPower (stepwise EM) and decayFactor or halfLife"),
        (["--model", str(tmp_path / "nope"), "--input", new, "--output", str(out)], "does not exist"),
    ]
    for args, message in cases:
        assert run("update", args) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sparkgmm ")]
        assert len(lines) == 1 and lines[0].startswith("sparkgmm update: error: ") and message in lines[0], lines
        assert not out.exists() and leftovers(tmp_path) == []
    assert run("update", base) == 0
    first = (out / "metrics.json").read_bytes()
    assert run("update", base) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == first


# --- Structured Streaming ------------------------------------------------------------------------------------------

def run_stream(spark, files: str, root: Path, keep: int = 10, model=None):
    stream = train_on(stream_of(spark, files), model or stream_start_model(), str(root / "models"),
                      str(root / "checkpoint"), keep=keep, trigger={"availableNow": True})
    stream.await_termination()
    return stream


@pytest.fixture(scope="module")
def uninterrupted(spark, background):
    """The background's stream files, learnt by a query never interrupted."""
    files = str(background[1] / "files")
    root = Path(str(background[1]) + "-uninterrupted")
    run_stream(spark, files, root)
    yield files, root
    shutil.rmtree(root, ignore_errors=True)


def test_each_micro_batch_is_a_version_and_the_stream_equals_updates_one_by_one(spark, uninterrupted):
    files, root = uninterrupted
    models = root / "models"
    assert sorted(p.name for p in models.iterdir()) == [LATEST_FILE] + [f"version-{i}" for i in range(4)]
    assert (models / LATEST_FILE).read_text() == "version-3\n"
    expected = stream_start_model()
    for i in range(4):
        expected = expected.update(spark.read.parquet(f"{files}/part-{i:03d}.parquet"))
        assert_same_model(GaussianMixtureModel.load(str(models / f"version-{i}")), expected, exact=False)
    assert_same_model(latest_model(spark, str(models)), expected, exact=False)
    assert latest_model(spark, str(models)).mixture.seen.batches == 5  # the start's 500 rows count as one


@pytest.mark.slow  # a child JVM (started in the background)
def test_a_stream_killed_mid_way_restarts_from_its_checkpoint_to_the_same_model(spark, background, uninterrupted):
    child, workdir = background
    result = child.finish(timeout=300)
    assert result.returncode == -9, result.stderr[-3000:]
    models = workdir / "models"
    assert sorted(p.name for p in models.iterdir() if p.name.startswith("version-")) == [
        f"version-{i}" for i in range(KILL_AT + 1)]
    assert (models / LATEST_FILE).read_text() == f"version-{KILL_AT - 1}\n"  # killed before the pointer
    run_stream(spark, str(workdir / "files"), workdir)
    assert (models / LATEST_FILE).read_text() == "version-3\n"
    assert_same_model(latest_model(spark, str(models)), latest_model(spark, str(uninterrupted[1] / "models")))


def test_old_versions_are_pruned_to_the_keep_count(spark, tmp_path):
    files = write_stream_files(tmp_path / "files", batches=3, rows=200)
    run_stream(spark, files, tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [LATEST_FILE, "version-1", "version-2"]
    with pytest.raises(InputError, match="keep=0 must be an integer >= 1"):
        train_on(stream_of(spark, files), stream_start_model(), str(tmp_path / "m"), str(tmp_path / "c"), keep=0)
    with pytest.raises(InputError, match="needs a streaming DataFrame"):
        train_on(spark.read.parquet(files), stream_start_model(), str(tmp_path / "m"), str(tmp_path / "c"))


@pytest.mark.parametrize("bad, message", [
    ("features", "micro-batch 2: features 'vec' have 4 values per row but the model has 3 features"),
    ("nan", "micro-batch 2: 1 rows have null, NaN or infinite values in features 'vec'"),
])
def test_a_bad_micro_batch_stops_the_query_with_one_line_and_keeps_the_last_good_version(spark, tmp_path, bad,
                                                                                          message):
    files = tmp_path / "files"
    write_stream_files(files, batches=2, rows=200)
    X = np.random.default_rng(0).normal(size=(50, 4 if bad == "features" else 3))
    if bad == "nan":
        X[7, 1] = np.nan
    pq.write_table(pa.table({"vec": pa.array([list(row) for row in X], pa.list_(pa.float64()))}),
                   files / "part-bad.parquet")
    os.utime(files / "part-bad.parquet", (1_800_000_000, 1_800_000_000))
    model = GaussianMixtureModel(stream_start_model().mixture).setFeaturesCol("vec").setEffectiveCount(500.0)
    stream = train_on(stream_of(spark, str(files)), model, str(tmp_path / "models"), str(tmp_path / "checkpoint"),
                      trigger={"availableNow": True})
    with pytest.raises(InputError) as error:
        stream.await_termination()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert stream.error == str(error.value)
    assert (tmp_path / "models" / LATEST_FILE).read_text() == "version-1\n"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [LATEST_FILE, "version-0", "version-1"]
    assert leftovers(tmp_path / "models") == []


def test_a_stream_is_scored_by_the_latest_model_with_outliers(spark, uninterrupted, tmp_path):
    files, root = uninterrupted
    model = latest_model(spark, str(root / "models")).setOutlierQuantile(0.05)
    query = model.transform(stream_of(spark, files)).writeStream.format("memory").queryName("scored_stream") \
        .trigger(availableNow=True).start()
    query.awaitTermination()
    scored = spark.sql("select x0, x1, x2, prediction, logDensity, isOutlier from scored_stream").toPandas()
    X = scored[list(STREAM_FEATURES)].to_numpy()
    assert len(scored) == 1600
    np.testing.assert_allclose(scored["logDensity"], model.mixture.score_samples(X), rtol=1e-10)
    np.testing.assert_array_equal(scored["prediction"], model.mixture.predict(X))
    threshold = model.outlier_threshold(0.05)
    np.testing.assert_array_equal(scored["isOutlier"], scored["logDensity"] < threshold)
    assert 0 < scored["isOutlier"].sum() < 0.2 * len(scored)
