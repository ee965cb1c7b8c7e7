"""The fit, predict and select jobs, run in-process on the shared local[2] session: outputs, metrics, exit codes."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import leftovers, make_mixture, write_points
from sparkgmm import GaussianMixture, GaussianMixtureModel, Mixture
from sparkgmm.cli import run
from sparkgmm.spark import jobs
from sparkgmm.summary import GaussianMixtureSummary

pytestmark = pytest.mark.spark

FEATURES = ["x0", "x1", "x2"]
MODEL_FILES = {"_SUCCESS", "metadata", "data", "metrics.json"}
# What metrics.json holds beside the summary's own report: the job's, the mixture's and the input's.
JOB_METRICS = {"k", "covariance_type", "warnings", "init", "acceleration", "n_features", "feature_names", "input",
               "sparkgmm_version"}


@pytest.fixture(scope="module")
def truth() -> Mixture:
    return make_mixture("diag", n_components=3, n_features=3, seed=21, separation=6.0)


@pytest.fixture(scope="module")
def points(tmp_path_factory, truth) -> tuple[str, np.ndarray]:
    X, _ = truth.sample(3000, seed=4)
    labels = np.array(["a", "b", "c"])[np.arange(3000) % 3]
    return write_points(tmp_path_factory.mktemp("points") / "points.parquet", X, label=labels), X


@pytest.fixture(scope="module")
def fitted(spark, points, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("fitted") / "model")
    assert run("fit", ["--input", points[0], "--output", out, "--features", "x0,x1,x2", "--k", "3", "--seed", "5"]) == 0
    return out


def files_of(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path -> bytes): to tell whether a directory was replaced."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def error_lines(captured: str) -> list[str]:
    return [line for line in captured.splitlines() if line.startswith("sparkgmm ")]


def test_metrics_json_is_what_the_summary_reports(spark, fitted):
    """metrics.json holds the saved model's summary as its schema reports it (every name, value and order of
    ``to_metrics``; the seconds are the job's), and reads back as that summary."""
    metrics = json.loads((Path(fitted) / "metrics.json").read_text())
    summary = GaussianMixtureModel.load(fitted).summary
    reported = summary.to_metrics()
    assert set(metrics) == set(reported) | JOB_METRICS
    assert [key for key in metrics if key in reported] == list(reported)
    assert {key: metrics[key] for key in reported if key != "seconds"} == {
        key: value for key, value in reported.items() if key != "seconds"}
    assert metrics["seconds"] > summary.seconds > 0  # the job's wall time holds the fit's and the input's reading
    assert GaussianMixtureSummary.from_metrics(metrics) == dataclasses.replace(summary, seconds=metrics["seconds"])


def test_fit_job_writes_a_loadable_model_and_its_metrics(spark, points, fitted, caplog):
    path, X = points
    assert {p.name for p in Path(fitted).iterdir()} == MODEL_FILES
    assert leftovers(Path(fitted).parent) == []
    mixture = Mixture.load(fitted)
    model = GaussianMixtureModel.load(fitted)
    np.testing.assert_array_equal(model.means, mixture.means)
    assert model.getInputCols() == FEATURES
    # The job passes k, seed and features through: the same fit through the Python API gives the same model.
    direct = GaussianMixture(k=3, inputCols=FEATURES, seed=5).fit(spark.read.parquet(path))
    np.testing.assert_allclose(mixture.means, direct.means, rtol=1e-10)
    np.testing.assert_allclose(mixture.covariances, direct.covariances, rtol=1e-10)

    metrics = json.loads((Path(fitted) / "metrics.json").read_text())
    # Every reported figure against an independent computation on the same rows in NumPy.
    np.testing.assert_allclose(metrics["log_likelihood"], mixture.score(X), rtol=1e-10)
    np.testing.assert_allclose(metrics["bic"], mixture.bic(X), rtol=1e-10)
    np.testing.assert_allclose(metrics["aic"], mixture.aic(X), rtol=1e-10)
    assert metrics["cluster_sizes"] == np.bincount(mixture.predict(X), minlength=3).tolist()
    assert (metrics["k"], metrics["covariance_type"], metrics["n_rows"], metrics["n_features"]) == (3, "full", 3000, 3)
    assert metrics["feature_names"] == FEATURES and metrics["n_parameters"] == mixture.n_parameters
    history = metrics["history"]
    assert [h["iteration"] for h in history] == list(range(1, metrics["n_iter"] + 1))
    assert history[-1]["log_likelihood"] == metrics["log_likelihood"]
    lls = [metrics["initial_log_likelihood"]] + [h["log_likelihood"] for h in history]
    np.testing.assert_allclose([h["change"] for h in history], np.diff(lls), rtol=1e-12)
    assert all(change > -1e-9 for change in np.diff(lls)) and all(h["seconds"] > 0 for h in history)
    assert metrics["converged"] is True


def test_fit_logs_one_line_per_iteration(spark, points, tmp_path, caplog):
    out = str(tmp_path / "model")
    with caplog.at_level(logging.INFO, logger="sparkgmm"):
        assert run("fit", ["--input", points[0], "--output", out, "--features", "vec", "--k", "3", "--seed", "5",
                           "--covariance-type", "diag", "--tol", "0", "--max-iter", "4"]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("iteration ")]
    assert [line.split(":")[0] for line in lines] == [f"iteration {t}" for t in range(1, 5)]
    assert all("log-likelihood" in line and "change" in line and line.endswith(" s") for line in lines)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    assert metrics["feature_names"] == ["vec[0]", "vec[1]", "vec[2]"] and metrics["n_iter"] == 4


def test_fit_job_dtype_and_block_storage_flags_reach_the_fit_and_its_metrics(spark, points, fitted, tmp_path):
    path, X = points
    out = tmp_path / "model"
    assert run("fit", ["--input", path, "--output", str(out), "--features", "x0,x1,x2", "--k", "3", "--seed", "5",
                       "--dtype", "float32", "--block-storage", "spark-cache", "--tol", "1e-6"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["dtype"], metrics["block_storage"]) == ("float32", "spark-cache")
    assert metrics["block_bytes"] == X.size * 4 + len(X) * 8  # float32 rows, and a 64-bit hash of each
    assert 0 < metrics["conversion_seconds"] < metrics["seconds"]
    wide = json.loads((Path(fitted) / "metrics.json").read_text())  # the same fit in float64, local files
    assert (wide["dtype"], wide["block_storage"]) == ("float64", "local-files")
    # float32 arithmetic measured the model's log-likelihood to single precision; the fit found the same optimum
    np.testing.assert_allclose(metrics["log_likelihood"], Mixture.load(out).score(X), rtol=1e-6)
    np.testing.assert_allclose(metrics["log_likelihood"], wide["log_likelihood"], atol=2e-3)


def test_fit_job_restarts_acceleration_and_a_warning_when_it_stops_at_max_iter(spark, points, tmp_path, caplog):
    path, X = points
    out = tmp_path / "model"
    with caplog.at_level(logging.WARNING, logger="sparkgmm"):
        assert run("fit", ["--input", path, "--output", str(out), "--features", "x0,x1,x2", "--k", "3", "--seed", "5",
                           "--n-init", "3", "--acceleration", "squarem", "--max-iter", "1", "--tol", "1e-12"]) == 0
    assert any("did not converge in 1 iterations" in r.getMessage() for r in caplog.records)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["converged"] is False and metrics["warnings"] == [
        "EM did not converge in 1 iterations (tol 1e-12): raise max_iter or tol"]
    assert metrics["acceleration"] == "squarem" and metrics["init"] == "sample" and len(metrics["restarts"]) == 3
    assert metrics["log_likelihood"] == max(r["logLikelihood"] for r in metrics["restarts"])
    np.testing.assert_allclose(metrics["log_likelihood"], Mixture.load(out).score(X), rtol=1e-10)
    # the conversion, one EM pass and the final pass, shared by the three restarts: the starts cost no pass
    assert metrics["passes"] == GaussianMixtureModel.load(str(out)).summary.numPasses == 3
    assert metrics["full_data_passes"] == 2 and all(r["initPasses"] == 0 for r in metrics["restarts"])
    # the sample search: every row (fewer than sampleRows), 16 restarts; its best start scored on the sample
    assert (metrics["sample_rows"], metrics["sample_restarts"]) == (len(X), 16)
    assert metrics["sample_passes"] > 0 and 0 < metrics["sample_search_seconds"] < metrics["seconds"]
    # the sample is every row here, so the best start's score is the full data's, and EM only went up from it
    assert metrics["sample_log_likelihood"] <= metrics["log_likelihood"] + 1e-9


def test_fit_job_warm_starts_from_a_model_directory(spark, points, fitted, tmp_path, capsys):
    path, X = points
    out = tmp_path / "warm"
    assert run("fit", ["--input", path, "--output", str(out), "--features", "x0,x1,x2", "--k", "3",
                       "--initial-model", fitted, "--max-iter", "2", "--tol", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["init"] == "initial_model" and metrics["restarts"][0]["initPasses"] == 0
    np.testing.assert_allclose(metrics["initial_log_likelihood"], Mixture.load(fitted).score(X), rtol=1e-10)
    assert run("fit", ["--input", path, "--output", str(tmp_path / "m"), "--k", "3", "--initial-model",
                       str(tmp_path / "nope")]) == 2
    assert "--initial-model " + str(tmp_path / "nope") + " does not exist" in error_lines(capsys.readouterr().err)[0]
    assert run("fit", ["--input", path, "--output", str(tmp_path / "m"), "--features", "x0,x1,x2", "--k", "4",
                       "--initial-model", fitted]) == 2
    assert "initialModel has 3 full components but k=4" in error_lines(capsys.readouterr().err)[0]
    assert not (tmp_path / "m").exists()


def test_features_default_to_every_numeric_column_but_the_weight(spark, tmp_path):
    X, _ = make_mixture("full", n_components=2, n_features=2, seed=2).sample(500, seed=1)
    table = pa.table({"x0": X[:, 0], "x1": X[:, 1], "n": np.arange(500) % 7, "w": np.ones(500), "name": ["r"] * 500})
    pq.write_table(table, tmp_path / "in.parquet")
    out = tmp_path / "model"
    assert run("fit", ["--input", str(tmp_path / "in.parquet"), "--output", str(out), "--weight-col", "w"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["feature_names"] == ["x0", "x1", "n"] and metrics["k"] == 2
    assert GaussianMixtureModel.load(str(out)).getWeightCol() == "w"


def test_an_existing_output_is_refused_replaced_only_when_asked_and_kept_when_the_job_fails(spark, points, tmp_path,
                                                                                            capsys):
    out = tmp_path / "model"
    base = ["--input", points[0], "--output", str(out), "--features", "x0,x1", "--seed", "1"]
    assert run("fit", base + ["--k", "3"]) == 0
    first = files_of(out)
    capsys.readouterr()

    assert run("fit", base + ["--k", "2"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"sparkgmm fit: error: output {out} already exists; pass --overwrite to replace it"]
    assert files_of(out) == first

    assert run("fit", base[:-4] + ["--features", "nope", "--seed", "1", "--overwrite"]) == 2
    assert "input column 'nope' is not in the DataFrame" in error_lines(capsys.readouterr().err)[0]
    assert files_of(out) == first and leftovers(tmp_path) == []

    assert run("fit", base + ["--k", "2", "--overwrite"]) == 0
    assert Mixture.load(out).n_components == 2 and (out / "_SUCCESS").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--features", "x0,label"], "input column 'label' has type string; it must be numeric"),
    (["--features", "x0", "--k", "5000"], "k=5000 components need at least 5000 rows; the data has 3000"),
    (["--features", "x0", "--weight-col", "label"], "weight"),
])
def test_input_problems_found_by_spark_exit_2_with_one_line_and_no_output(spark, points, tmp_path, capsys, args,
                                                                           message):
    out = tmp_path / "model"
    assert run("fit", ["--input", points[0], "--output", str(out), *args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("sparkgmm fit: error: ") and message in lines[0]
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_missing_input_and_non_finite_rows_exit_2(spark, tmp_path, capsys):
    X = np.arange(100.0).reshape(50, 2)
    X[7, 1] = np.nan
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1]}), path)
    assert run("fit", ["--input", str(path), "--output", str(tmp_path / "m")]) == 2
    assert "1 rows have null, NaN or infinite values in features a, b" in error_lines(capsys.readouterr().err)[0]
    assert not (tmp_path / "m").exists()
    assert run("fit", ["--input", str(path), "--output", str(tmp_path / "m"), "--invalid-rows", "skip"]) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert (metrics["n_skipped_rows"], metrics["n_rows"]) == (1, 49)
    shutil.rmtree(tmp_path / "m")
    assert run("fit", ["--input", "file://" + str(tmp_path / "missing"), "--output", str(tmp_path / "m")]) == 2
    assert "does not exist" in error_lines(capsys.readouterr().err)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), ValueError("a bug, not bad input")])
def test_an_unexpected_failure_exits_1(spark, points, tmp_path, monkeypatch, capsys, error):
    def broken(spark, config):
        raise error

    monkeypatch.setitem(jobs.RUNNERS, "fit", broken)
    assert run("fit", ["--input", points[0], "--output", str(tmp_path / "m")]) == 1
    assert error_lines(capsys.readouterr().err)[-1] == f"sparkgmm fit: failed: {type(error).__name__}: {error}"


def read_sorted(path: str) -> pa.Table:
    return pq.read_table(path).sort_by("id")


def test_predict_job_scores_every_row_like_the_model(spark, points, fitted, tmp_path):
    path, X = points
    out = str(tmp_path / "scores")
    assert run("predict", ["--model", fitted, "--input", path, "--output", out]) == 0
    assert (Path(out) / "_SUCCESS").exists() and leftovers(tmp_path) == []
    table = read_sorted(out)
    assert table.column_names == ["id", *FEATURES, "vec", "label", "prediction", "probability", "log_density"]
    assert str(table.schema.field("prediction").type) == "int32"
    assert str(table.schema.field("probability").type) == "list<element: double>"
    assert str(table.schema.field("log_density").type) == "double"
    mixture = Mixture.load(fitted)
    assert table.num_rows == len(X)
    np.testing.assert_array_equal(table["id"].to_numpy(), np.arange(len(X)))
    np.testing.assert_array_equal(table["prediction"].to_numpy(), mixture.predict(X))
    np.testing.assert_allclose(np.stack(table["probability"].to_pylist()), mixture.predict_proba(X), rtol=1e-12,
                               atol=1e-300)
    np.testing.assert_allclose(table["log_density"].to_numpy(), mixture.score_samples(X), rtol=1e-12)


def test_predict_keep_cols_and_clashes(spark, points, fitted, tmp_path, capsys):
    path, _ = points
    out = tmp_path / "scores"
    keep = ["--keep-cols", "id,x0,x1,x2"]
    assert run("predict", ["--model", fitted, "--input", path, "--output", str(out), *keep]) == 0
    assert pq.read_table(out).column_names == ["id", *FEATURES, "prediction", "probability", "log_density"]
    assert run("predict", ["--model", fitted, "--input", path, "--output", str(tmp_path / "x"), "--keep-cols",
                           "id,nope"]) == 2
    assert "--keep-cols names 'nope', not in the input" in error_lines(capsys.readouterr().err)[0]
    # Scoring a predict output again would overwrite its prediction column: refused unless it is left out.
    again = ["--model", fitted, "--input", str(out), "--output", str(tmp_path / "y")]
    assert run("predict", again) == 2
    assert "input column 'prediction' clashes with an output column" in error_lines(capsys.readouterr().err)[0]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert run("predict", again + keep) == 0
    assert pq.read_table(tmp_path / "y").column_names == pq.read_table(out).column_names


def test_predict_flags_outliers_below_the_models_training_quantile(spark, points, fitted, tmp_path, capsys):
    path, X = points
    out = str(tmp_path / "scores")
    args = ["--input", path, "--keep-cols", "id", "--outlier-quantile", "0.01"]
    assert run("predict", ["--model", fitted, "--output", out, *args]) == 0
    table = read_sorted(out)
    assert table.column_names == ["id", "prediction", "probability", "log_density", "is_outlier"]
    assert str(table.schema.field("is_outlier").type) == "bool"
    model = GaussianMixtureModel.load(fitted)
    threshold = model.logDensityQuantiles[0.01]
    assert json.loads((Path(fitted) / "metrics.json").read_text())["log_density_quantiles"]["0.01"] == threshold
    log_density = model.mixture.score_samples(X)
    np.testing.assert_array_equal(table["is_outlier"].to_numpy(), log_density < threshold)
    exact = np.quantile(log_density, 0.01, method="inverted_cdf")  # the sketch's threshold is close to it
    assert abs(np.mean(log_density < threshold) - np.mean(log_density < exact)) <= 0.002
    # A model without training quantiles (a Mixture saved by hand) is refused before anything is written.
    bare = tmp_path / "bare"
    model.mixture.save(bare)
    assert run("predict", ["--model", str(bare), "--output", str(tmp_path / "x"), *args]) == 2
    assert "holds no training log-density quantiles" in error_lines(capsys.readouterr().err)[0]
    assert not (tmp_path / "x").exists()


def test_predict_refuses_a_damaged_model_before_starting(spark, points, tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text("{}")
    assert run("predict", ["--model", str(model), "--input", points[0], "--output", str(tmp_path / "out")]) == 2
    assert str(model) in error_lines(capsys.readouterr().err)[0]
    assert not (tmp_path / "out").exists()


def test_select_job_writes_candidates_and_the_best_model(spark, points, tmp_path):
    path, X = points
    out = tmp_path / "selection"
    assert run("select", ["--input", path, "--output", str(out), "--features", "x0,x1,x2", "--k-range", "1:4",
                          "--covariance-types", "full,diag", "--seed", "3"]) == 0
    assert {p.name for p in out.iterdir()} == {"_SUCCESS", "candidates.json", "candidates.csv", "best"}
    document = json.loads((out / "candidates.json").read_text())
    rows = document["candidates"]
    assert [(r["k"], r["covariance_type"]) for r in rows] == [(k, t) for t in ("full", "diag") for k in (1, 2, 3, 4)]
    with open(out / "candidates.csv") as f:
        from_csv = list(csv.DictReader(f))
    assert list(from_csv[0]) == ["k", "covariance_type", "log_likelihood", "bic", "aic", "n_parameters", "n_iter",
                                 "converged", "passes", "seconds"]
    for row, csv_row in zip(rows, from_csv, strict=True):
        assert float(csv_row["bic"]) == row["bic"] and int(csv_row["k"]) == row["k"]
    best = min(range(len(rows)), key=lambda i: rows[i]["bic"])
    assert document["best"] == {"k": rows[best]["k"], "covariance_type": rows[best]["covariance_type"], "index": best}
    # Three well-separated diagonal components: BIC picks exactly that.
    assert (rows[best]["k"], rows[best]["covariance_type"]) == (3, "diag")
    chosen = Mixture.load(out / "best")
    np.testing.assert_allclose(chosen.bic(X), rows[best]["bic"], rtol=1e-10)
    best_metrics = json.loads((out / "best" / "metrics.json").read_text())
    reported = GaussianMixtureModel.load(str(out / "best")).summary.to_metrics()
    assert {key: best_metrics[key] for key in reported} == reported  # the select job keeps the fit's own seconds
    assert rows[best] == {key: best_metrics[key] for key in from_csv[0]}
    assert (document["n_rows"], document["feature_names"]) == (best_metrics["n_rows"], FEATURES) == (len(X), FEATURES)
    # The k=1 candidate has a closed form: the sample mean and covariance.
    one = next(r for r in rows if r["k"] == 1 and r["covariance_type"] == "full")
    single = Mixture([1.0], [X.mean(0)], [np.cov(X.T, bias=True) + 1e-6 * np.eye(3)])
    np.testing.assert_allclose(one["log_likelihood"], single.score(X), rtol=1e-10)


def test_select_by_aic_and_a_failing_candidate_is_named(spark, points, tmp_path, capsys):
    path, _ = points
    out = tmp_path / "selection"
    assert run("select", ["--input", path, "--output", str(out), "--features", "x0", "--k-range", "2,4000"]) == 2
    line = error_lines(capsys.readouterr().err)[0]
    assert "k=4000 components need at least 4000 rows" in line and not out.exists()
    assert run("select", ["--input", path, "--output", str(out), "--features", "x0,x1", "--k-range", "2:3",
                          "--criterion", "aic"]) == 0
    document = json.loads((out / "candidates.json").read_text())
    assert document["criterion"] == "aic"
    assert document["best"]["index"] == int(np.argmin([r["aic"] for r in document["candidates"]]))


SIGTERM_DURING_COMMIT = """
import os, signal, sys
from sparkgmm import cli
from sparkgmm.spark import outputs

commit = outputs.StagedOutput.commit

def terminated_then_commit(self):
    os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stopping the job with the output staged, not yet committed
    commit(self)

outputs.StagedOutput.commit = terminated_then_commit
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_with_the_output_staged_exits_143_and_leaves_nothing(points, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "model"
    # One iteration: the signal arrives at the commit whatever the fit before it was.
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_COMMIT, "fit", "--input", points[0], "--output", str(out),
         "--features", "x0,x1", "--k", "2", "--max-iter", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 143, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_predict_nulls_for_unusable_rows_and_refuses_when_no_row_fits_the_model(spark, fitted, tmp_path, capsys,
                                                                                caplog):
    X = np.arange(30, dtype=float).reshape(10, 3)
    X[4, 1] = np.nan
    path = write_points(tmp_path / "in.parquet", X, files=1)
    with caplog.at_level(logging.WARNING, logger="sparkgmm"):
        assert run("predict", ["--model", fitted, "--input", path, "--output", str(tmp_path / "scores")]) == 0
    assert "1 of 10 rows have null, ragged or non-finite features" in caplog.text
    table = read_sorted(str(tmp_path / "scores"))
    predictions = table["prediction"].to_pylist()
    assert predictions[4] is None and table["log_density"].to_pylist()[4] is None
    expected = Mixture.load(fitted).predict(np.delete(X, 4, axis=0)).tolist()
    assert predictions[:4] + predictions[5:] == expected
    # Vectors of two values against a model of three features: nothing can be scored, so nothing is written.
    short = write_points(tmp_path / "short.parquet", X[:, :2], files=1)
    assert run("predict", ["--model", fitted, "--input", short, "--output", str(tmp_path / "none"),
                           "--features", "vec"]) == 2
    assert "no row could be scored: the model wants 3 finite features per row from vec" in error_lines(
        capsys.readouterr().err)[0]
    assert not (tmp_path / "none").exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_many_input_partitions_fit_under_a_small_max_result_size(tmp_path):
    """What the driver collects does not grow with the input's rows or partitions: every pass returns one bounded
    answer per core, under a 2 MiB spark.driver.maxResultSize (its own JVM, so the limit is real).

    The size is what makes this fail when that breaks. The k-means initialisation draws a sample of 10,000 rows
    (init.INIT_SAMPLE_ROWS) per restart; each of the 100 partitions holds 1,000 rows, fewer than that, so a sample
    drawn per partition (as the earlier sampling did), or anything else collected per row, would send the driver
    every one of the 100,000 rows: 100,000 x 4 features x 8 bytes = 3.2 MB for the features alone, over the limit
    even for one restart. 100 partitions are more than the conversion keeps (MAX_PARTITIONS_PER_CORE = 4 per
    core): they are merged. What the driver does get per pass is bounded by the cores, not the input: two restarts'
    samples of 10,000 rows and their keys, from each of the 2 tasks, 1.6 MB (measured: with the merging and the one
    task per core undone, the third task's answer of about 0.8 MB already goes over: "Total size of serialized
    results of 3 tasks (2.3 MiB) is bigger than spark.driver.maxResultSize (2.0 MiB)")."""
    import subprocess
    import sys

    X, _ = make_mixture("diag", n_components=3, n_features=4, seed=1, separation=5.0).sample(100_000, seed=2)
    path = write_points(tmp_path / "in.parquet", X, files=2)
    config = tmp_path / "fit.toml"
    config.write_text('[spark]\npartitions = 100\n[spark.conf]\n"spark.driver.maxResultSize" = "2m"\n'
                      '"spark.ui.enabled" = "false"\n')
    out = tmp_path / "model"
    result = subprocess.run(
        [sys.executable, "-m", "sparkgmm", "fit", "--config", str(config), "--input", path, "--output", str(out),
         "--features", "x0,x1,x2,x3", "--k", "3", "--init", "k-means", "--n-init", "2", "--max-iter", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(Mixture.load(out).score(X), json.loads((out / "metrics.json").read_text())[
        "log_likelihood"], rtol=1e-10)


def test_fit_job_with_a_prior_fits_a_bayesian_mixture_and_reports_the_components_it_uses(spark, points, tmp_path,
                                                                                          capsys):
    path, X = points
    out = tmp_path / "bayes"
    assert run("fit", ["--input", path, "--output", str(out), "--features", "x0,x1,x2", "--k", "8", "--seed", "5",
                       "--prior", "dirichlet_process", "--covariance-type", "diag", "--merge-every", "5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = GaussianMixtureModel.load(str(out))
    assert model.posterior is not None and model.prior.prior_type == "dirichlet_process"
    assert (metrics["prior"], metrics["effective_components"], metrics["acceleration"]) == ("dirichlet_process", 3,
                                                                                            "none")
    assert metrics["lower_bounds"] == list(model.summary.lowerBoundHistory) and len(metrics["lower_bounds"]) == \
        metrics["n_iter"]
    assert [h["lower_bound"] for h in metrics["history"]] == metrics["lower_bounds"]
    assert metrics["n_merges"] == model.summary.numMerges  # the sample search merged the 8 starts down to 3 already
    np.testing.assert_allclose(metrics["log_likelihood"], model.mixture.score(X), rtol=1e-10)
    # a Bayesian setting without --prior is refused before Spark starts
    assert run("fit", ["--input", path, "--output", str(tmp_path / "no"), "--merge-every", "5"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "sparkgmm fit: error: --merge-every is a setting of a Bayesian mixture: give --prior too (or prior in the "
        "config file)"]
    assert not (tmp_path / "no").exists()


def test_select_job_with_a_prior_compares_bayesian_candidates(spark, points, tmp_path):
    path, _ = points
    out = tmp_path / "selection"
    assert run("select", ["--input", path, "--output", str(out), "--features", "x0,x1,x2", "--k-range", "3,6",
                          "--covariance-types", "diag", "--seed", "3", "--prior", "dirichlet_distribution"]) == 0
    best = GaussianMixtureModel.load(str(out / "best"))
    assert best.prior.prior_type == "dirichlet_distribution" and best.summary.effectiveComponents == 3
