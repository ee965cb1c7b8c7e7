"""The distributed estimator: exact against scikit-learn from the same start, input forms, errors, and clean-up."""

import numpy as np
import pytest
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from helpers import (assert_matches_sklearn, frame, job_descriptions_since, last_job_id, make_mixture,
                     overlapping_data_and_start, persisted_rdd_count, sklearn_fit, spark_jobs)
from sparkgmm import GaussianMixture, Mixture
from sparkgmm.em import local_passes, run_em

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("partitions, depth", [(1, 2), (5, 3)])
def test_distributed_fit_equals_sklearn(spark, covariance_type, partitions, depth):
    X, start = overlapping_data_and_start(covariance_type)
    df = frame(spark, X, partitions)
    model = GaussianMixture(k=3, covarianceType=covariance_type, maxIter=6, tol=0.0, initialModel=start,
                            acceleration="none", aggregationDepth=depth).fit(df)
    reference = sklearn_fit(X, start, 6)
    assert model.summary.numIter == reference.n_iter_ == 6
    assert_matches_sklearn(model.mixture, reference)
    np.testing.assert_allclose(model.summary.logLikelihood, reference.score(X), rtol=1e-10)
    np.testing.assert_allclose(model.summary.logLikelihoodHistory[-2], reference.lower_bound_, rtol=1e-10)
    assert sum(model.summary.clusterSizes) == model.summary.numRows == X.shape[0]
    np.testing.assert_array_equal(model.summary.clusterSizes, np.bincount(reference.predict(X), minlength=3))


def test_fit_from_own_initialisation_matches_local_em_and_rises(spark):
    """On overlapping clusters, where EM from the fit's own start (the sample search) still has work to do, the Spark
    fit's SQUAREM run is the in-memory run from that start with the same settings: the same iterations, extrapolated
    and rejected steps and passes, the same log-likelihoods and parameters (only the order of the sums differs)."""
    truth = make_mixture("full", n_components=3, n_features=2, seed=3, separation=1.5)
    X, _ = truth.sample(600, seed=2)
    df = frame(spark, X, 4)
    model = GaussianMixture(k=3, maxIter=100, tol=1e-8, seed=11).fit(df)
    summary = model.summary
    history = np.array(summary.logLikelihoodHistory)
    assert model.getAcceleration() == "squarem"  # the default
    assert summary.converged and 10 <= summary.numIter < 100  # measured: 14 iterations (plain EM from there: 48)
    assert len(history) == summary.numIter + 1 and len(summary.iterationSeconds) == summary.numIter
    # The fit's own start: the same fit stopped before its first iteration; its log-likelihood opens the history.
    start = GaussianMixture(k=3, maxIter=0, tol=1e-8, seed=11).fit(df).mixture
    np.testing.assert_allclose(start.score(X), history[0], rtol=1e-12)
    # The same EM from that start, run in memory with the fit's own settings.
    local = run_em(start, local_passes(X), max_iter=model.getMaxIter(), tol=model.getTol(),
                   reg_covar=model.getRegCovar(), acceleration=model.getAcceleration())
    assert local.converged and local.n_iter == summary.numIter
    assert local.n_passes == summary.restarts[0]["numPasses"]
    assert summary.numExtrapolations == local.n_extrapolations >= 3  # measured: 5
    assert summary.numRejectedSteps == local.n_rejected >= 1  # measured: 1
    assert summary.numReseeds == local.n_reseeds == 0
    np.testing.assert_allclose(history, local.log_likelihood_history, rtol=1e-10)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(model, name), getattr(local.mixture, name), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    # The log-likelihood rises: SQUAREM keeps an extrapolated point only if it is no lower than the last point kept,
    # and EM steps never go down (without re-seeds, as here); measured, every step gains more than 1e-9.
    assert np.all(np.diff(history) >= 0.0) and history[-1] - history[0] > 1e-6
    np.testing.assert_allclose(summary.logLikelihood, model.mixture.score(X), rtol=1e-12)
    # The overlapping clusters are still found: each true mean has a fitted mean nearby (measured: at most 0.26).
    for mean in truth.means:
        assert np.min(np.linalg.norm(model.means - mean, axis=1)) < 0.3
    np.testing.assert_allclose(summary.bic, model.mixture.bic(X), rtol=1e-10)
    np.testing.assert_allclose(summary.aic, model.mixture.aic(X), rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("init_mode", ["k-means||", "k-means"])
def test_same_seed_same_model_whatever_the_partitioning(spark, init_mode):
    """Every random draw of a row comes from a hash of its values, so the initialisation picks the same rows from 1, 2
    or 7 input partitions (dealt over the cores, as they are, or coalesced); what is left is the order in which the
    tree-reduce adds per-partition sums, bounded here, after 10 iterations, at 1e-9 (measured: 1.2e-14 relative, 9e-16
    absolute; after 30 iterations, near the optimum, where round-off grows, 1.2e-9 relative on a mean of 0.035, 4e-10
    absolute). Ten iterations are enough: from starts drawn from other rows the models would differ at once."""
    X, _ = overlapping_data_and_start("diag", n=900)
    estimator = GaussianMixture(k=3, covarianceType="diag", maxIter=10, tol=0.0, seed=5, initMode=init_mode)
    fits = {partitions: estimator.fit(frame(spark, X, partitions)) for partitions in (1, 2, 7)}
    again = estimator.fit(frame(spark, X, 2))
    np.testing.assert_array_equal(again.means, fits[2].means)  # run after run: identical
    np.testing.assert_array_equal(again.covariances, fits[2].covariances)
    for partitions in (1, 7):
        np.testing.assert_allclose(fits[partitions].means, fits[2].means, rtol=1e-9, atol=1e-9)  # data of sd ~3
        np.testing.assert_allclose(fits[partitions].covariances, fits[2].covariances, rtol=1e-9)
        np.testing.assert_allclose(fits[partitions].weights, fits[2].weights, rtol=1e-9)
        # (not the iteration count: at the optimum SQUAREM's accept test compares log-likelihoods equal to round-off)
        np.testing.assert_allclose(fits[partitions].summary.logLikelihood, fits[2].summary.logLikelihood, rtol=1e-13)


def test_vector_float_array_and_input_columns_give_the_same_fit(spark):
    X, start = overlapping_data_and_start("full", n=400)
    X = X.astype(np.float32).astype(np.float64)  # exactly representable in float32
    base = frame(spark, X, 2, extra={"a": X[:, 0], "b": X[:, 1].astype(np.float32), "c": (X[:, 2])})
    estimator = GaussianMixture(k=3, maxIter=3, tol=0.0, initialModel=start)
    reference = estimator.fit(base).mixture
    as_vector = base.withColumn("features", array_to_vector("features"))
    as_float = base.withColumn("features", F.col("features").cast("array<float>"))
    for df, est in [(as_vector, estimator), (as_float, estimator),
                    (base.drop("features"), estimator.copy().setInputCols(["a", "b", "c"]))]:
        np.testing.assert_allclose(est.fit(df).means, reference.means, rtol=1e-12)


def test_weight_column_equals_repeated_rows(spark):
    X, start = overlapping_data_and_start("tied", n=300, seed=2)
    counts = np.random.default_rng(0).integers(1, 4, X.shape[0])
    weighted = GaussianMixture(k=3, covarianceType="tied", maxIter=4, tol=0.0, initialModel=start, weightCol="w")
    repeated = GaussianMixture(k=3, covarianceType="tied", maxIter=4, tol=0.0, initialModel=start)
    a = weighted.fit(frame(spark, X, 3, extra={"w": counts.astype(float)}))
    b = repeated.fit(frame(spark, np.repeat(X, counts, axis=0), 3))
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-10)
    np.testing.assert_allclose(a.summary.logLikelihood, b.summary.logLikelihood, rtol=1e-12)
    assert a.summary.numRows == 300 and a.summary.weightSum == counts.sum()


def test_degenerate_data_fits_thanks_to_reg_covar(spark, covariance_type):
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(0, 1, (5, 3)), 40, axis=0)  # 5 distinct points, each 40 times
    X[:, 2] = 7.0  # a constant feature
    model = GaussianMixture(k=3, covarianceType=covariance_type, maxIter=20, regCovar=1e-3, seed=1).fit(
        frame(spark, X, 2)
    )
    assert np.all(np.isfinite(model.covariances))
    assert np.isfinite(model.summary.logLikelihood)
    diag = {"full": lambda c: np.diagonal(c, axis1=1, axis2=2), "tied": np.diag, "diag": lambda c: c,
            "spherical": lambda c: c}[covariance_type](model.covariances)
    assert np.all(diag >= 1e-3 - 1e-12)


def test_blocks_are_released_after_fit_and_after_failure(spark):
    X, _ = overlapping_data_and_start("full", n=200)
    before = persisted_rdd_count(spark)
    GaussianMixture(k=2, maxIter=2).fit(frame(spark, X))
    assert persisted_rdd_count(spark) == before
    X[5, 1] = np.nan
    with pytest.raises(ValueError):
        GaussianMixture(k=2, maxIter=2).fit(frame(spark, X))
    assert persisted_rdd_count(spark) == before


@pytest.mark.parametrize("partitions", [1, 17])
def test_the_loop_runs_one_task_per_core_whatever_the_input_partitioning(spark, partitions):
    from pyspark import StorageLevel

    from sparkgmm.spark.engine.rdd import RddBlocks

    X, start = overlapping_data_and_start("spherical", n=500)
    df = frame(spark, X, partitions)
    for storage in ("local-files", "spark-cache"):
        with RddBlocks(df, F.col("features"), None, StorageLevel.MEMORY_ONLY, block_bytes=2048,
                       block_storage=storage) as blocks:
            assert blocks.loop_rdd.getNumPartitions() == spark.sparkContext.defaultParallelism == 2
            # one input partition is dealt over the cores; 17 are merged into at most 4 per core before packing
            assert blocks.stored.getNumPartitions() == {1: 2, 17: 8}[partitions]
            sizes = blocks.task_rows()
            assert sum(sizes) == 500 and min(sizes) > 0
    model = GaussianMixture(k=3, covarianceType="spherical", maxIter=3, tol=0.0, initialModel=start).fit(df)
    assert_matches_sklearn(model.mixture, sklearn_fit(X, start, 3))


@pytest.mark.parametrize("storage_level", ["MEMORY_AND_DISK", "DISK_ONLY"])
def test_storage_levels(spark, storage_level):
    X, start = overlapping_data_and_start("diag", n=300)
    model = GaussianMixture(k=3, covarianceType="diag", maxIter=2, tol=0.0, initialModel=start,
                            storageLevel=storage_level).fit(frame(spark, X))
    assert_matches_sklearn(model.mixture, sklearn_fit(X, start, 2))


def test_pipeline(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler

    X, _ = overlapping_data_and_start("full", n=300)
    df = spark.createDataFrame([tuple(map(float, row)) for row in X], ["x", "y", "z"])
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["x", "y", "z"], outputCol="features"),
                                GaussianMixture(k=3, maxIter=10, seed=2)])
    out = pipeline.fit(df).transform(df)
    assert {"x", "features", "prediction", "probability", "logDensity"} <= set(out.columns)
    assert out.count() == 300


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda X: X.__setitem__((3, 0), np.nan), "1 rows have null, NaN or infinite values"),
        (lambda X: X.__setitem__((3, 0), np.inf), "1 rows have null, NaN or infinite values"),
    ],
)
def test_non_finite_values_raise(spark, mutate, message):
    X, _ = overlapping_data_and_start("full", n=100)
    mutate(X)
    with pytest.raises(ValueError, match=message):
        GaussianMixture(k=2).fit(frame(spark, X))


def test_null_rows_ragged_rows_and_bad_weights_raise(spark):
    schema = "features array<double>, w double"
    nulls = spark.createDataFrame([([1.0, 2.0], 1.0), (None, 1.0), ([3.0, 1.0], 1.0)], schema)
    with pytest.raises(ValueError, match="1 rows have null"):
        GaussianMixture(k=2).fit(nulls)
    ragged = spark.createDataFrame([([1.0, 2.0], 1.0), ([1.0, 2.0, 3.0], 1.0), ([3.0, 1.0], 1.0)], schema)
    with pytest.raises(ValueError, match="different lengths"):
        GaussianMixture(k=2).fit(ragged)
    negative = spark.createDataFrame([([1.0, 2.0], 1.0), ([2.0, 2.0], -1.0), ([3.0, 1.0], 1.0)], schema)
    with pytest.raises(ValueError, match="weight column 'w'"):
        GaussianMixture(k=2, weightCol="w").fit(negative)


@pytest.mark.slow
def test_invalid_rows_are_skipped_and_counted_when_asked(spark):
    """handleInvalid="skip" fits the rows that can be used, and only them: the same model as a fit of the clean rows
    alone (other rows in other partitions, yet the same draws: they come from the rows' values)."""
    X, _ = overlapping_data_and_start("full", n=600)
    w = np.random.default_rng(3).uniform(0.5, 2.0, 600)
    bad = np.zeros(600, bool)
    bad[[0, 1, 2, 50, 51, 300, 599]] = True
    features = [None if i in (0, 300) else row.tolist() for i, row in enumerate(X)]
    features[1][0], features[50][2] = np.nan, np.inf
    weights = w.copy()
    weights[2], weights[51], weights[599] = -1.0, np.nan, np.inf
    df = spark.createDataFrame([(f, float(v)) for f, v in zip(features, weights, strict=True)],
                               "features array<double>, w double")
    estimator = GaussianMixture(k=3, weightCol="w", seed=4, tol=1e-8)
    with pytest.raises(ValueError, match="7 rows have null, NaN or infinite values in features 'features' or in weight "
                                         r"column 'w' .*skip them \(handleInvalid='skip', --invalid-rows skip\)"):
        estimator.fit(df.repartition(3))
    skipped = estimator.copy().setHandleInvalid("skip").fit(df.repartition(3))
    clean = estimator.fit(frame(spark, X[~bad], 2, extra={"w": w[~bad]}))
    assert skipped.summary.numSkippedRows == 7 and clean.summary.numSkippedRows == 0
    assert skipped.summary.numRows == clean.summary.numRows == 593
    np.testing.assert_allclose(skipped.summary.weightSum, w[~bad].sum(), rtol=1e-12)
    np.testing.assert_allclose(skipped.means, clean.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(skipped.covariances, clean.covariances, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="handleInvalid='drop' must be one of error, skip"):
        estimator.copy().setHandleInvalid("drop").fit(df)


def test_fewer_rows_than_components(spark):
    df = spark.createDataFrame([([1.0, 2.0],), ([2.0, 1.0],)], "features array<double>")
    with pytest.raises(ValueError, match="k=3 components need at least 3 rows; the data has 2"):
        GaussianMixture(k=3).fit(df)


@pytest.mark.parametrize("init_mode", ["k-means||", "k-means", "random_from_data"])
def test_fewer_distinct_rows_than_components(spark, init_mode):
    X = np.repeat([[1.0, 2.0], [2.0, 1.0]], 30, axis=0)  # 60 rows, 2 distinct
    with pytest.raises(ValueError, match="k=3 components need at least 3 distinct rows of positive weight; the data "
                                         "has 2"):
        GaussianMixture(k=3, initMode=init_mode).fit(frame(spark, X, 2))
    three = np.vstack([X, [[5.0, 5.0]]])  # one more distinct row: k=3 can be fitted
    assert GaussianMixture(k=3, initMode=init_mode, maxIter=3).fit(frame(spark, three, 2)).summary.numRows == 61


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(k=0), "k=0 must be >= 1"),
        (dict(covarianceType="banana"), "covarianceType='banana'"),
        (dict(regCovar=-1.0), "regCovar=-1.0"),
        (dict(tol=-1.0), "tol=-1.0"),
        (dict(maxIter=-1), "maxIter=-1"),
        (dict(initMode="kmeans||"), "initMode='kmeans||'"),
        (dict(storageLevel="IN_THE_CLOUD"), "storageLevel='IN_THE_CLOUD'"),
        (dict(aggregationDepth=0), "aggregationDepth=0"),
    ],
)
def test_bad_params_raise_before_touching_data(spark, params, message):
    df = spark.createDataFrame([([1.0, 2.0],), ([2.0, 1.0],)], "features array<double>")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|")):
        GaussianMixture(**params).fit(df)


def test_wrong_columns_are_named(spark):
    df = spark.createDataFrame([([1.0, 2.0], "a"), ([2.0, 1.0], "b")], "features array<double>, s string")
    with pytest.raises(ValueError, match="'feats' is not in the DataFrame"):
        GaussianMixture(featuresCol="feats").fit(df)
    with pytest.raises(ValueError, match="'s' has type string"):
        GaussianMixture(featuresCol="s").fit(df)
    with pytest.raises(ValueError, match="input column 's' has type string"):
        GaussianMixture(inputCols=["s"]).fit(df)


def test_initial_model_must_fit_the_problem(spark):
    df = spark.createDataFrame([([1.0, 2.0],), ([2.0, 1.0],), ([0.0, 1.0],)], "features array<double>")
    start = make_mixture("full", n_components=2, n_features=3)
    with pytest.raises(ValueError, match="initialModel has 3 features but the data has 2"):
        GaussianMixture(k=2, initialModel=start).fit(df)
    with pytest.raises(ValueError, match="initialModel has 2 full components but k=3"):
        GaussianMixture(k=3, initialModel=start).fit(df)
    with pytest.raises(TypeError, match=r"sparkgmm\.Mixture"):
        GaussianMixture(k=2, initialModel="model.json")


def test_initialisation_sample_is_bounded_weighted_and_from_the_data(spark):
    from pyspark import StorageLevel

    from sparkgmm.passes import WeightedSample
    from sparkgmm.spark.engine.rdd import RddBlocks

    X = np.column_stack([np.arange(2000.0), np.zeros(2000)])  # row i is (i, 0): the first feature names the row
    weights = np.where(np.arange(2000) < 1000, 3.0, 1.0)
    weights[::7] = 0.0  # zero weight: never drawn
    df = frame(spark, X, 4, extra={"w": weights})
    with RddBlocks(df, F.col("features"), "w", StorageLevel.MEMORY_ONLY, block_bytes=4096) as blocks:
        sample, everything = blocks.run_pass(
            [WeightedSample(800, (3, 0)), WeightedSample(5000, (3, 1))], "two samples"
        )
        assert blocks.n_rows == 2000 and blocks.n_features == 2 and sample.rows.shape == (800, 2)
        ids = sample.rows[:, 0].astype(int)
        assert len(set(ids)) == 800 and np.all(sample.rows[:, 1] == 0.0) and np.all(ids % 7 != 0)
        # In proportion to the weight: the first half (weight 3) holds about 3/4 of the sample (sd ~12 rows), and
        # within each half each quarter of the ids about as many as the other.
        first_half = int((ids < 1000).sum())
        assert abs(first_half - 600) < 60
        np.testing.assert_array_equal(np.sort(everything.rows[:, 0]), X[weights > 0, 0])  # all, when asked for more
    # The answer is bounded by the request, and the same rows, whatever the partitioning and the block size.
    samples = []
    for partitions, block_bytes in ((16, None), (3, 512)):
        with RddBlocks(frame(spark, X, partitions), F.col("features"), None, StorageLevel.MEMORY_ONLY,
                       block_bytes=block_bytes) as blocks:
            (sample,) = blocks.run_pass([WeightedSample(100, (3, 0))], "sample")
            assert sample.rows.shape == (100, 2) and len(set(sample.rows[:, 0])) == 100
            samples.append(sample.rows)
    np.testing.assert_array_equal(samples[0], samples[1])


@pytest.mark.parametrize("init_mode", ["sample", "k-means||"])
def test_every_pass_is_a_named_spark_job_counted_in_num_passes_and_the_name_is_cleared_after(spark, init_mode):
    X, _ = overlapping_data_and_start("diag", n=200)
    df = frame(spark, X)
    before = last_job_id(spark)
    model = GaussianMixture(k=2, covarianceType="diag", maxIter=3, tol=0.0, initMode=init_mode).fit(df)
    descriptions = job_descriptions_since(spark, before)
    descriptions = [d for d in descriptions if d]  # jobs of the DataFrame itself (its shuffle) have no name
    lloyd = [d for d in descriptions if "Lloyd pass" in d]
    # The blocks' local files are removed after the fit: a job, but not a pass over the data.
    assert descriptions.pop() == "sparkgmm: remove local block files"
    if init_mode == "sample":  # the start is searched on the conversion's sample: no pass before EM
        init = []
        assert model.summary.sampleRows == 200 and model.summary.sampleSearchSeconds > 0
    else:
        assert 1 <= len(lloyd) <= 3
        init = ["sparkgmm: k-means|| first centre", "sparkgmm: k-means|| round 1", "sparkgmm: k-means|| round 2",
                "sparkgmm: k-means|| candidate weights", *lloyd]
        assert model.summary.sampleRows == 0
    assert descriptions == [
        "sparkgmm: convert features to blocks", *init,
        "sparkgmm: EM iteration 1", "sparkgmm: EM iteration 2", "sparkgmm: EM iteration 3",
        "sparkgmm: final log-likelihood and cluster sizes",
    ]
    assert model.summary.numPasses == len(descriptions) == model.summary.fullDataPasses + 1
    assert model.summary.restarts[0]["initPasses"] == len(init)
    spark.range(3).count()
    assert spark_jobs(spark)[-1][1] is None


def test_fit_multiple_converts_once_and_equals_separate_fits(spark):
    truth = make_mixture("diag", n_components=3, n_features=2, seed=4, separation=4.0)
    X, _ = truth.sample(1500, seed=2)
    df = frame(spark, X, 3)
    gmm = GaussianMixture(maxIter=20, tol=1e-6, seed=9)
    maps = [{gmm.k: 2}, {gmm.k: 3, gmm.covarianceType: "diag"}, {gmm.k: 4, gmm.covarianceType: "spherical"}]
    before = last_job_id(spark)
    models = gmm.fit(df, maps)
    descriptions = job_descriptions_since(spark, before)
    assert descriptions.count("sparkgmm: convert features to blocks") == 1
    assert persisted_rdd_count(spark) == 0
    for param_map, model in zip(maps, models, strict=True):
        alone = gmm.copy(param_map).fit(df)
        assert (model.mixture.n_components, model.mixture.covariance_type) == (
            alone.mixture.n_components, alone.mixture.covariance_type)
        np.testing.assert_allclose(model.means, alone.means, rtol=1e-12)
        np.testing.assert_allclose(model.covariances, alone.covariances, rtol=1e-12)
        assert model.summary.numIter == alone.summary.numIter


def test_fit_multiple_with_different_inputs_and_after_a_failure(spark):
    X, _ = make_mixture("full", n_components=2, n_features=2, seed=1).sample(400, seed=0)
    df = frame(spark, X, 2, extra={"a": X[:, 0], "b": X[:, 1]})
    gmm = GaussianMixture(k=2, maxIter=5, seed=1)
    by_array, by_columns = gmm.fit(df, [{gmm.featuresCol: "features"}, {gmm.inputCols: ["a", "b"]}])
    np.testing.assert_allclose(by_array.means, by_columns.means, rtol=1e-12)
    # k larger than the data: the shared conversion is released when a candidate fails
    with pytest.raises(ValueError, match="k=500 components need at least 500 rows"):
        gmm.fit(df, [{gmm.k: 2}, {gmm.k: 500}])
    assert persisted_rdd_count(spark) == 0


@pytest.mark.slow
def test_cross_validator_tunes_k_through_fit_multiple(spark):
    from pyspark.ml.evaluation import ClusteringEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    # Three equal clusters of unit variance, eight standard deviations apart: k=3 is the answer.
    truth = Mixture(np.full(3, 1 / 3), [[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]], np.ones((3, 2)), "diag")
    X, _ = truth.sample(900, seed=3)
    df = frame(spark, X, 2).select(array_to_vector("features").alias("features"))
    gmm = GaussianMixture(covarianceType="diag", maxIter=20, seed=2)
    grid = ParamGridBuilder().addGrid(gmm.k, [2, 3]).build()
    cv = CrossValidator(estimator=gmm, estimatorParamMaps=grid, evaluator=ClusteringEvaluator(), numFolds=2,
                        parallelism=2, seed=1)
    before = last_job_id(spark)
    best = cv.fit(df)
    descriptions = job_descriptions_since(spark, before)
    assert descriptions.count("sparkgmm: convert features to blocks") == 3  # each fold once, then the refit
    assert len(best.avgMetrics) == 2 and all(np.isfinite(best.avgMetrics))
    assert best.avgMetrics[1] > best.avgMetrics[0]  # the silhouette: larger is better
    assert best.bestModel.mixture.n_components == 3
    for mean in truth.means:  # refitted on all the data, it finds the three clusters
        assert np.min(np.linalg.norm(best.bestModel.means - mean, axis=1)) < 0.3
    assert persisted_rdd_count(spark) == 0
