"""The work of the fit, predict and select jobs, given a session and a validated config (``sparkgmm.config``).

Each job reads Parquet, calls the estimator or the model, and writes its output through ``staged_output`` so that it
appears whole, with a ``_SUCCESS`` marker, or not at all. Argument parsing, logging set-up and exit codes are the
command line's (``sparkgmm.cli``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.ml.linalg import VectorUDT
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from .. import __version__
from ..config import (
    BEST_MODEL_DIR, CANDIDATES_CSV, CANDIDATES_JSON, METRICS_FILE, OUTLIER_COLUMN, PREDICTION_COLUMNS, FitConfig,
    PredictConfig, SelectConfig, UpdateConfig,
)
from ..errors import InputError
from .features import NUMERIC_TYPES, features_column
from .checkpoints import CheckpointStore
from .failures import raise_input_error
from .bayesian import BayesianGaussianMixture
from .estimator import GaussianMixture, GaussianMixtureModel
from .online import ModelUpdate, update_model, update_rule
from .outputs import StagedOutput, staged_output
from .readwrite import read_saved
from .local_parquet import local_directory, write_scored
from .scoring import Outputs, score_dataframe, scoring_plan
from .selection import CANDIDATE_FIELDS, candidate_row, select_model
from .session import job_session

logger = logging.getLogger("sparkgmm.jobs")



@dataclass(frozen=True)
class Features:
    """Which columns feed the model: a list of numeric columns, or one Vector/array column."""

    input_cols: tuple[str, ...] | None
    features_col: str | None

    def names(self, n_features: int) -> list[str]:
        if self.input_cols:
            return list(self.input_cols)
        return [f"{self.features_col}[{i}]" for i in range(n_features)]

    def params(self) -> dict[str, Any]:
        """The estimator or model params that select these columns."""
        return {"inputCols": list(self.input_cols)} if self.input_cols else {"featuresCol": self.features_col}

    def apply(self, estimator_or_model):
        estimator_or_model.clear(estimator_or_model.inputCols)  # inputCols would win over featuresCol
        return estimator_or_model._set(**self.params())


def resolve_features(df: DataFrame, named: tuple[str, ...], weight_col: str | None) -> Features:
    """``--features`` against the input's schema: one Vector/array column, numeric columns, or (none named) every
    numeric column but the weight column."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    if len(named) == 1 and isinstance(fields.get(named[0]), (VectorUDT, T.ArrayType)):
        return Features(None, named[0])
    if named:
        columns = tuple(named)
    else:
        columns = tuple(name for name, dtype in fields.items()
                        if isinstance(dtype, NUMERIC_TYPES) and name != weight_col)
        if not columns:
            raise InputError(
                f"the input has no numeric columns (columns: {', '.join(fields)}); name the features with --features"
            )
    features_column(df, "features", list(columns))  # names a missing or non-numeric column
    return Features(columns, None)


def read_input(spark: SparkSession, path: str, partitions: int | None) -> DataFrame:
    """The Parquet input; ``InputError`` naming the path and the problem when Spark cannot read it (missing, no
    files, not Parquet or a damaged footer: what schema inference finds; damaged rows surface in the first job)."""
    try:
        df = spark.read.parquet(path)
    except Exception as error:
        raise_input_error(error, path)
        raise
    return df.repartition(partitions) if partitions else df


def _estimator_params(config: FitConfig | SelectConfig, features: Features) -> dict[str, Any]:
    """The GaussianMixture params of the job's settings (those that are Params: the option table says which)."""
    params = config.estimator_params()
    if config.checkpoint_dir:
        # kept through the fit: the job removes it once the output is written (remove_checkpoint)
        params["keepCheckpoint"] = True
    return {**params, **features.params()}


def fit_metrics(model: GaussianMixtureModel, features: Features, input_path: str, seconds: float) -> dict[str, Any]:
    """What ``metrics.json`` holds: the candidate's row (``seconds``: the job's), a warning when EM stopped at
    maxIter, the start and acceleration, everything else the summary reports (``GaussianMixtureSummary.to_metrics``)
    and the features and input."""
    summary = model.summary
    warnings = []
    if not summary.converged and model.getTol() > 0.0:
        what = "EM" if summary.weightConcentrationPriorType is None else "variational inference"
        warnings.append(f"{what} did not converge in {model.getMaxIter()} iterations (tol {model.getTol():g}): "
                        "raise max_iter or tol")
    reported = {**summary.to_metrics(), "seconds": seconds}
    return {
        **candidate_row(model, seconds),  # first, as in candidates.json; the same keys below keep these places
        "warnings": warnings,
        "init": model.getInitMode() if model.getInitialModel() is None else "initial_model",
        "acceleration": model.getAcceleration(),
        **reported,
        "n_features": model.mixture.n_features,
        "feature_names": features.names(model.mixture.n_features),
        "input": input_path,
        "sparkgmm_version": __version__,
    }


def _json_text(document: Any) -> str:
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def _write_model_with_metrics(output: StagedOutput, name: str | None, model: GaussianMixtureModel,
                              metrics: dict[str, Any]) -> None:
    """The model directory (the same writer as ``model.write()``) with its ``metrics.json``, into the staged output
    (``name``: a sub-directory of it)."""
    model.write().session(output.spark).saveImpl(output.staging if name is None else f"{output.staging}/{name}")
    output.put_text(METRICS_FILE if name is None else f"{name}/{METRICS_FILE}", _json_text(metrics))


def remove_checkpoint(spark: SparkSession, config: FitConfig | SelectConfig) -> None:
    """Once the output is in place, the checkpoint has served (unless asked to keep it)."""
    if config.checkpoint_dir and not config.keep_checkpoint:
        CheckpointStore(spark, config.checkpoint_dir).remove()


def run_fit(spark: SparkSession, config: FitConfig) -> dict[str, Any]:
    """Fit one mixture and write the model directory with its ``metrics.json``; returns the metrics."""
    started = time.perf_counter()
    with staged_output(spark, config.output, config.overwrite) as output:
        df = read_input(spark, config.input, config.spark.partitions)
        features = resolve_features(df, config.features, config.weight_col)
        estimator_class = BayesianGaussianMixture if config.bayesian else GaussianMixture
        estimator = estimator_class(**_estimator_params(config, features))
        if config.initial_model:
            estimator.setInitialModel(read_saved(spark, config.initial_model).mixture)
        model = estimator.fit(df)
        metrics = fit_metrics(model, features, config.input, time.perf_counter() - started)
        _write_model_with_metrics(output, None, model, metrics)
    remove_checkpoint(spark, config)
    used = "" if metrics.get("effective_components") is None else \
        f" ({metrics['effective_components']} used, Bayesian {metrics['prior']} prior)"
    logger.info(
        "wrote %s: %d %s components%s, log-likelihood %.6g, BIC %.6g, %d iterations%s",
        config.output, config.k, config.covariance_type, used, metrics["log_likelihood"], metrics["bic"],
        metrics["n_iter"], "" if metrics["converged"] else " (not converged)",
    )
    return metrics


def run_select(spark: SparkSession, config: SelectConfig) -> dict[str, Any]:
    """Fit every (covariance type, k) candidate on one conversion of the input; write candidates.json/.csv and the
    candidate with the lowest criterion as ``best/``. Returns the candidates document."""
    started = time.perf_counter()
    with staged_output(spark, config.output, config.overwrite) as output:
        df = read_input(spark, config.input, config.spark.partitions)
        features = resolve_features(df, config.features, config.weight_col)
        selection = select_model(df, config.k_range, config.covariance_types, config.criterion,
                                 **_estimator_params(config, features))
        rows, models = list(selection.candidates), selection.models
        for index, row in enumerate(rows):
            logger.info("candidate %d/%d: k=%d %s, %s %.6g, %d iterations%s", index + 1, len(rows), row["k"],
                        row["covariance_type"], config.criterion, row[config.criterion], row["n_iter"],
                        "" if row["converged"] else " (not converged)")
        best = selection.best
        metrics = fit_metrics(models[best], features, config.input, rows[best]["seconds"])
        document = {
            "criterion": config.criterion,
            "best": {"k": rows[best]["k"], "covariance_type": rows[best]["covariance_type"], "index": best},
            "candidates": rows,
            "n_rows": metrics["n_rows"],
            "feature_names": metrics["feature_names"],
            "input": config.input,
            "seconds": time.perf_counter() - started,
            "sparkgmm_version": __version__,
        }
        _write_model_with_metrics(output, BEST_MODEL_DIR, models[best], metrics)
        output.put_text(CANDIDATES_JSON, _json_text(document))
        output.put_text(CANDIDATES_CSV, candidates_csv(rows))
    remove_checkpoint(spark, config)
    logger.info("wrote %s: best k=%d %s (%s %.6g) of %d candidates", config.output, rows[best]["k"],
                rows[best]["covariance_type"], config.criterion, rows[best][config.criterion], len(rows))
    return document


def candidates_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CANDIDATE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: repr(value) if isinstance(value, float) and math.isfinite(value) else value
                         for key, value in row.items()})
    return out.getvalue()


def run_predict(spark: SparkSession, config: PredictConfig) -> None:
    """Score the input with a saved model; write Parquet with the kept columns plus prediction (int), probability
    (array<double>) and log_density (double), and with ``outlier_quantile`` is_outlier (boolean). Rows whose features
    are unusable get nulls."""
    model = GaussianMixtureModel.read().session(spark).load(config.model)
    threshold = None if config.outlier_quantile is None else model.outlier_threshold(config.outlier_quantile)
    scores = Outputs(*PREDICTION_COLUMNS, probability_as_vector=False,
                     outlier=None if threshold is None else OUTLIER_COLUMN, outlier_threshold=threshold)
    with staged_output(spark, config.output, config.overwrite) as output:
        df = read_input(spark, config.input, config.spark.partitions)
        keep = list(config.keep_cols) if config.keep_cols else df.columns
        missing = [name for name in keep if name not in df.columns]
        if missing:
            raise InputError(f"--keep-cols names {', '.join(map(repr, missing))}, not in the input "
                             f"(columns: {', '.join(df.columns)})")
        outputs = config.output_columns
        clashes = [name for name in keep if name in outputs]
        if clashes:
            raise InputError(f"input column {clashes[0]!r} clashes with an output column of the same name; "
                             "leave it out with --keep-cols")
        if config.features:
            resolve_features(df, config.features, None).apply(model)
        input_cols = model.input_columns()
        features_column(df, model.getFeaturesCol(), input_cols)  # names a missing or unusable column first
        model.check_input_cols()
        plan = scoring_plan(df, model.getFeaturesCol(), input_cols, model.mixture, scores, keep)
        directory = None if plan is None else local_directory(spark, output.staging, plan.schema)
        try:
            if plan is not None and directory is not None:  # the scoring tasks write the files, and count the rows
                rows, scored_rows = write_scored(spark, plan, directory, scores.prediction)
            else:
                score_dataframe(df, model.getFeaturesCol(), input_cols, model.mixture, *PREDICTION_COLUMNS,
                                probability_as_vector=False, outlier_col=scores.outlier,
                                outlier_threshold=threshold, keep=keep).write.parquet(output.staging)
        except Exception as error:  # a damaged input file is found here, by the job that reads its rows
            raise_input_error(error, config.input)
            raise
        if directory is None:
            # One pass over the prediction column just written: rows that could not be scored are worth a word,
            # and a run that scored none (features of another length than the model's, say) is an error, not an
            # output. Its part files by name, as Spark ignores (with a warning) a directory named like the hidden
            # staging one.
            parts = output.staged_files("part-")
            rows, scored_rows = 0, 0
            if parts:
                counts = spark.read.parquet(*parts).agg(F.count("*"), F.count("prediction")).first()
                if counts is None:
                    raise RuntimeError("an aggregation without grouping returned no row")
                rows, scored_rows = counts
        if rows and not scored_rows:
            raise InputError(f"no row could be scored: the model wants {model.mixture.n_features} finite features "
                             f"per row from {', '.join(input_cols or [model.getFeaturesCol()])}")
        if scored_rows < rows:
            logger.warning("%d of %d rows have null, ragged or non-finite features: their outputs are null",
                           rows - scored_rows, rows)
    logger.info("wrote %s: %d rows, %s plus %s", config.output, rows, ", ".join(keep) or "no input columns",
                ", ".join(outputs))


def run_update(spark: SparkSession, config: UpdateConfig) -> dict[str, Any]:
    """Update a saved model with the rows of the input (``GaussianMixtureModel.update``) and write the new model
    directory with its ``metrics.json``: the rows and batches the model has seen, and the new rows' log-likelihood
    under the model before and after the update. Returns the metrics."""
    started = time.perf_counter()
    model = GaussianMixtureModel.read().session(spark).load(config.model)
    with staged_output(spark, config.output, config.overwrite) as output:
        df = read_input(spark, config.input, config.spark.partitions)
        features = (resolve_features(df, config.features, config.weight_col) if config.features else
                    Features(tuple(model.input_columns() or ()) or None, model.getFeaturesCol()))
        features.apply(model)
        model._set(**config.model_params())
        update = update_model(model, df, measure_after=True)
        metrics = update_metrics(update, features, config, time.perf_counter() - started)
        _write_model_with_metrics(output, None, update.model, metrics)
    logger.info("wrote %s: log-likelihood of the new rows %.6g before the update, %.6g after; the model has seen %d "
                "rows in %d batches", config.output, metrics["log_likelihood_before"], metrics["log_likelihood_after"],
                metrics["seen_rows"], metrics["seen_batches"])
    return metrics


def update_metrics(update: ModelUpdate, features: Features, config: UpdateConfig, seconds: float) -> dict[str, Any]:
    """What the update job's ``metrics.json`` holds."""
    result, mixture = update.result, update.model.mixture
    seen = mixture.seen
    if seen is None or result.log_likelihood_after is None:
        raise RuntimeError("an update without its remembered statistics or its measure after")
    return {
        "n_rows": result.n_samples,
        "weight_sum": result.weight_sum,
        "skipped_rows": update.skipped_rows,
        "log_likelihood_before": result.log_likelihood_before,
        "log_likelihood_after": result.log_likelihood_after,
        "seen_rows": seen.rows,
        "seen_weight": seen.weight,
        "seen_batches": seen.batches,
        "effective_weight": seen.effective_weight,
        "rule": update_rule(update.model).describe(),
        "discount": result.discount,
        "n_reseeds": result.n_reseeds,
        "k": mixture.n_components,
        "covariance_type": mixture.covariance_type,
        "n_features": mixture.n_features,
        "feature_names": features.names(mixture.n_features),
        "model": config.model,
        "input": config.input,
        "conversion_seconds": update.conversion_seconds,
        "seconds": seconds,
        "sparkgmm_version": __version__,
    }


# Each takes the session and its own job's config.
RUNNERS: dict[str, Callable[[SparkSession, Any], dict[str, Any] | None]] = {
    "fit": run_fit, "predict": run_predict, "select": run_select, "update": run_update}


def run_job(command: str, config: FitConfig | PredictConfig | SelectConfig) -> None:
    """Start (or join) the session, run the job, and stop the session if this call started it."""
    owns_session = SparkSession.getActiveSession() is None
    spark = job_session(config.spark.master, config.spark.app_name or f"sparkgmm-{command}",
                        config.spark.spark_conf())
    try:
        RUNNERS[command](spark, config)
    finally:
        if owns_session:
            try:
                spark.stop()
            except Exception:  # the JVM may be gone already (a SIGTERM reaches it too): keep the job's own outcome
                logger.warning("could not stop the Spark session cleanly", exc_info=True)
