"""Helpers the test modules share (no test module imports another): small synthetic mixtures and data, the
scikit-learn oracle from a given start (Gaussian and Bayesian mixtures), checkpoints through their files' bytes, a
pass runner interrupted as a killed driver would be, Parquet inputs, and what Spark's status store says of jobs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from sparkgmm import Mixture

# The JIT of the suite's JVMs: C1 only (no C2). They live seconds to minutes on two cores shared with the test process
# and the Python workers, where C2's compiler threads cost more CPU than their code wins back. Measured here: a
# spark-submit of jobs/fit_gmm.py on the 200k example rows took 14.9 s (19.2 s of CPU) with both compilers and
# 12.2 s (10.5 s of CPU) with C1 only; test_spark_fit and test_spark_selection, in-process, 121-122 s with both
# and 109 s with C1 only.
# Behaviour does not depend on it: only how fast the JVM's own code runs.
TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


def make_mixture(covariance_type: str, n_components: int = 3, n_features: int = 3, seed: int = 0,
                 separation: float = 3.0) -> Mixture:
    """A random but well-conditioned mixture whose components overlap a little (so responsibilities are soft)."""
    rng = np.random.default_rng(seed)
    k, d = n_components, n_features
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(0.0, separation, (k, d))
    if covariance_type == "full":
        a = rng.normal(0.0, 0.5, (k, d, d))
        covariances = a @ a.transpose(0, 2, 1) + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(0.0, 0.5, (d, d))
        covariances = a @ a.T + np.eye(d)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.5, 2.0, (k, d))
    else:
        covariances = rng.uniform(0.5, 2.0, k)
    return Mixture(weights, means, covariances, covariance_type)


def precisions_of(mixture: Mixture) -> np.ndarray:
    """The precisions scikit-learn's ``precisions_init`` wants (the test oracle may invert; the library never does)."""
    cov = mixture.covariances
    if mixture.covariance_type in ("full", "tied"):
        return np.linalg.inv(cov)
    return 1.0 / cov


def write_format_1_model_dir(path, mixture: Mixture, spark_params: dict | None = None,
                             summary: dict | None = None) -> None:
    """A model directory as sparkgmm wrote it before format version 2, by hand: metadata.json and params.npz, with
    the Spark model's spark_params.json and summary.json when given."""
    path.mkdir(parents=True)
    metadata = {"format": "sparkgmm.mixture", "format_version": 1, "covariance_type": mixture.covariance_type,
                "n_components": mixture.n_components, "n_features": mixture.n_features}
    (path / "metadata.json").write_text(json.dumps(metadata))
    np.savez(path / "params.npz", weights=mixture.weights, means=mixture.means, covariances=mixture.covariances)
    for name, document in (("spark_params.json", spark_params), ("summary.json", summary)):
        if document is not None:
            (path / name).write_text(json.dumps(document))


def overlapping_data_and_start(covariance_type, n=800, seed=0):
    truth = make_mixture(covariance_type, n_components=3, n_features=3, seed=seed, separation=2.0)
    X, _ = truth.sample(n, seed=seed + 10)
    start = make_mixture(covariance_type, n_components=3, n_features=3, seed=seed + 100, separation=2.0)
    return X, start


def overlapping_blobs(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5], [2.5, 2.5], [1.2, 1.2]])
    labels = rng.integers(0, 5, n)
    return centres[labels] + rng.normal(0.0, 0.8, (n, 2))


def sklearn_fit(X, initial: Mixture, max_iter: int, tol: float = 0.0, reg_covar: float = 1e-6):
    model = SkGaussianMixture(
        n_components=initial.n_components, covariance_type=initial.covariance_type, max_iter=max_iter, tol=tol,
        reg_covar=reg_covar, weights_init=initial.weights, means_init=initial.means,
        precisions_init=precisions_of(initial), init_params="random_from_data", random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def assert_matches_sklearn(ours: Mixture, theirs, rtol=1e-8):
    np.testing.assert_allclose(ours.weights, theirs.weights_, rtol=rtol)
    np.testing.assert_allclose(ours.means, theirs.means_, rtol=rtol, atol=rtol * np.abs(theirs.means_).max())
    np.testing.assert_allclose(ours.covariances, theirs.covariances_, rtol=rtol,
                               atol=rtol * np.abs(theirs.covariances_).max())


# --- Bayesian mixtures against scikit-learn's -------------------------------------------------------------------------

BAYESIAN_K = 5


class SkFromResponsibilities(SkBayesianGaussianMixture):
    """scikit-learn's Bayesian mixture started from given responsibilities: its ``_initialize(X, resp)`` (the
    M-step its own initialisations end with) on ours, so both runs start from the same posterior."""

    def __init__(self, resp=None, **params):
        super().__init__(**params)
        self.resp = resp

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.resp)


def bayesian_data_and_start(covariance_type: str, seed: int = 1) -> tuple[np.ndarray, Mixture]:
    """600 rows of a 3-component mixture, and a BAYESIAN_K-component start on five of them."""
    X, _ = make_mixture(covariance_type, 3, 3, seed=seed).sample(600, seed=seed + 1)
    shape = make_mixture(covariance_type, BAYESIAN_K, 3, seed=7)
    return X, Mixture(shape.weights, X[[0, 100, 200, 300, 400]], shape.covariances, covariance_type)


def sklearn_bayesian_fit(X, start: Mixture, prior_type: str, max_iter: int, tol: float):
    """scikit-learn's BayesianGaussianMixture from ``start``'s responsibilities, its default priors."""
    model = SkFromResponsibilities(resp=start.predict_proba(X), n_components=BAYESIAN_K,
                                   covariance_type=start.covariance_type, weight_concentration_prior_type=prior_type,
                                   max_iter=max_iter, tol=tol, reg_covar=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def assert_posterior_matches(ours, theirs, rtol=1e-8):
    """A ``sparkgmm.bayesian.Posterior`` against a fitted scikit-learn BayesianGaussianMixture (whose tied degrees of
    freedom are one number)."""
    def close(a, b):
        b = np.asarray(b, dtype=np.float64)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())

    close(ours.mixture.weights, theirs.weights_)
    close(ours.means, theirs.means_)
    close(ours.covariances, theirs.covariances_)
    close(ours.mean_precision, theirs.mean_precision_)
    close(ours.weight_concentration, np.asarray(theirs.weight_concentration_))
    close(ours.degrees_of_freedom, np.broadcast_to(theirs.degrees_of_freedom_, ours.degrees_of_freedom.shape))


# --- checkpoints and interrupted fits ---------------------------------------------------------------------------------

def as_files(document, arrays):
    """The checkpoint through the bytes a store writes and reads: JSON text, and an .npz read without pickle."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = {name: npz[name] for name in npz.files}
    return json.loads(json.dumps(document, allow_nan=False)), loaded


class Interrupted(Exception):
    """Stands for the driver dying: raised by the pass runner instead of running a pass."""


def interrupt_after(monkeypatch, passes: int):
    """Let ``passes`` passes of the RDD engine run, then fail the next one, as a killed driver would never run it."""
    from sparkgmm.spark.engine.rdd import RddBlocks

    run_pass = RddBlocks.run_pass
    made = []

    def counted(self, requests, description):
        if len(made) == passes:
            raise Interrupted(description)
        made.append(description)
        return run_pass(self, requests, description)

    monkeypatch.setattr(RddBlocks, "run_pass", counted)
    return made


def write_points(path: Path, X: np.ndarray, files: int = 3, **extra) -> str:
    """Parquet in ``files`` files: id, x0..x{d-1}, vec (array<double>) and any extra columns."""
    path.mkdir(parents=True)
    n, d = X.shape
    for i, rows in enumerate(np.array_split(np.arange(n), files)):
        columns = {"id": pa.array(rows.astype(np.int64))}
        columns.update({f"x{j}": pa.array(X[rows, j]) for j in range(d)})
        columns["vec"] = pa.array([list(row) for row in X[rows]], pa.list_(pa.float64()))
        columns.update({name: pa.array(np.asarray(values)[rows]) for name, values in extra.items()})
        pq.write_table(pa.table(columns), path / f"part-{i}.parquet")
    return str(path)


def leftovers(directory: Path) -> list[str]:
    """Staging or replaced directories a job left beside its output."""
    return [p.name for p in directory.iterdir() if ".sparkgmm-" in p.name]


def frame(spark, X, partitions=3, extra=None):
    """A DataFrame with an array<double> ``features`` column (and any extra columns), in ``partitions`` pieces."""
    n, d = X.shape
    columns = {"features": pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)),
                                                    pa.array(X.ravel()))}
    columns.update(extra or {})
    return spark.createDataFrame(pa.table(columns)).repartition(partitions)


def spark_jobs(spark) -> list[tuple[int, str | None]]:
    """Every job Spark's status store still holds, as (job id, description or None), oldest first."""
    jobs = spark.sparkContext._jsc.sc().statusStore().jobsList(None)  # a Scala Seq
    found = [(jobs.apply(i).jobId(), jobs.apply(i).description()) for i in range(jobs.size())]
    return sorted((job_id, d.get() if d.isDefined() else None) for job_id, d in found)


def job_descriptions_since(spark, job_id: int) -> list[str | None]:
    """Descriptions of the jobs after ``job_id``, oldest first (by id: the store drops old jobs once it is full)."""
    return [description for later, description in spark_jobs(spark) if later > job_id]


def last_job_id(spark) -> int:
    return max((job_id for job_id, _ in spark_jobs(spark)), default=-1)


def persisted_rdd_count(spark):
    return spark.sparkContext._jsc.getPersistentRDDs().size()


def summary_of_every_field():
    """A training summary in which every field holds a value of its own (none its default, no two counts alike), so
    that writing and reading it back shows each field arrive. Numbers are exact in binary: JSON keeps them."""
    from sparkgmm.summary import GaussianMixtureSummary

    lls = (-4.0, -3.5, -3.25, -3.125)
    return GaussianMixtureSummary(
        logLikelihood=lls[-1], logLikelihoodHistory=lls, iterationSeconds=(0.25, 0.5, 0.75), numIter=3,
        converged=True, clusterSizes=(70, 31), numRows=101, weightSum=99.5, numParameters=11, numPasses=9,
        numReseeds=2, numExtrapolations=5, numRejectedSteps=1, bestRestart=1,
        restarts=({"logLikelihood": -3.5, "numIter": 2, "converged": False, "numPasses": 3, "initPasses": 0},
                  {"logLikelihood": -3.125, "numIter": 3, "converged": True, "numPasses": 4, "initPasses": 0}),
        seconds=4.5, conversionSeconds=1.5, blockBytes=4096, blockStorage="spark-cache", dtype="float32",
        numSkippedRows=4, resumedFromPass=6, logDensityQuantiles={0.01: -9.0, 0.5: -3.0}, sampleRows=60,
        sampleRestarts=7, samplePasses=12, sampleSearchSeconds=0.625, sampleLogLikelihood=-3.0625,
    )


def bayesian_summary_of_every_field():
    """``summary_of_every_field`` as a Bayesian mixture's fit reports it: its lower bounds, effective components and
    prior type set, and a log-likelihood history of the initial and the returned mixture."""
    import dataclasses

    return dataclasses.replace(summary_of_every_field(), logLikelihoodHistory=(-4.0, -3.125),
                               lowerBoundHistory=(-50.5, -40.25, -39.75), effectiveComponents=2, numMerges=3,
                               weightConcentrationPriorType="dirichlet_process")


class Background:
    """A child process started now and left running while other tests run; ``finish`` waits for it (once) and
    returns its exit code and output; ``stop`` kills it, with every process it started (its own session), if it
    still runs."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.command = command
        self.stdout, self.stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # files: a pipe could fill up
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=self.stdout, stderr=self.stderr,
                                        start_new_session=True)
        self.result: subprocess.CompletedProcess | None = None

    def finish(self, timeout: float) -> subprocess.CompletedProcess:
        if self.result is None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.stop()
                raise
            finally:
                outputs = []
                for file in (self.stdout, self.stderr):
                    file.seek(0)
                    outputs.append(file.read().decode(errors="replace"))
                    file.close()
                self.result = subprocess.CompletedProcess(self.command, self.process.returncode, *outputs)
        return self.result

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# --- streams: Parquet files a file-source stream reads one per micro-batch ------------------------------------------

STREAM_FEATURES = ("x0", "x1", "x2")
STREAM_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"}


def write_stream_files(directory: Path, batches: int = 4, rows: int = 400, seed: int = 0) -> str:
    """``batches`` Parquet files of ``rows`` rows (x0, x1, x2 and vec, their array) from two components drifting
    right, with increasing modification times (a file source takes new files oldest first)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for t in range(batches):
        X = np.vstack([rng.normal(0.0, 1.0, (rows // 2, 3)), rng.normal(5.0, 1.0, (rows - rows // 2, 3))])
        X = X[rng.permutation(rows)] + [0.3 * t, 0.0, 0.0]
        path = directory / f"part-{t:03d}.parquet"
        columns = {name: pa.array(X[:, j]) for j, name in enumerate(STREAM_FEATURES)}
        columns["vec"] = pa.array([list(row) for row in X], pa.list_(pa.float64()))
        pq.write_table(pa.table(columns), path)
        os.utime(path, (1_700_000_000 + t, 1_700_000_000 + t))
    return str(directory)


def stream_start_model():
    """The model a test stream starts from: two components near the data's, standing for 500 rows, half-life 2."""
    from sparkgmm import GaussianMixtureModel

    start = Mixture([0.5, 0.5], [[0.5, 0.0, 0.0], [4.5, 5.0, 5.0]], np.stack([np.eye(3)] * 2))
    return GaussianMixtureModel(start).setInputCols(list(STREAM_FEATURES)).setEffectiveCount(500.0).setHalfLife(2.0)


def stream_of(spark, directory: str):
    """The file-source stream of ``directory``: one file per micro-batch."""
    schema = "x0 double, x1 double, x2 double, vec array<double>"
    return spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(directory)
