"""Model and estimator directories through a Spark session: pyspark.ml persistence (``MLWriter``/``MLReader``) for
``GaussianMixture`` and ``GaussianMixtureModel``, and the jobs' reading of a model.

The directories have ``sparkgmm.persistence``'s layout (encoded and decoded by its functions) and are written and
read here only through the session's DataFrame writers and readers, so any Hadoop URI works (``hdfs://``,
``s3a://``, ``file://``, a path on the default file system), on a classic session or under Spark Connect; their
metadata is pyspark.ml's DefaultParams metadata, so ``Pipeline``, ``PipelineModel``, ``CrossValidator`` and
``CrossValidatorModel`` save and load them as stages. Saving
over an existing path needs ``write().overwrite()``; how a failed save is cleaned up is ``outputs.save_directory``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyspark.ml.param import Params
from pyspark.ml.util import MLReader, MLWriter

from ..persistence import (
    DATA_DIR,
    ESTIMATOR_FORMAT,
    FORMAT_VERSION,
    LEGACY_METADATA,
    METADATA_DIR,
    ModelFormatError,
    SavedModel,
    data_table,
    decode,
    decode_legacy,
    metadata_line,
    model_metadata_line,
    parse_metadata,
)
from ..summary import GaussianMixtureSummary
from .outputs import known_file_system, save_directory

logger = logging.getLogger("sparkgmm")

# Params whose values are not JSON: the estimator saves its initialModel as a model directory beside its metadata,
# a model leaves it out (it is how the fit started, not part of the model).
NOT_JSON = ("initialModel",)
INITIAL_MODEL_DIR = "initialModel"
HOW_TO_OVERWRITE = "use write().overwrite().save(path) (or save(path, overwrite=True))"


def class_name(instance_or_class: Any) -> str:
    cls = instance_or_class if isinstance(instance_or_class, type) else type(instance_or_class)
    return f"{cls.__module__}.{cls.__name__}"


def json_params(param_map: dict) -> dict[str, Any]:
    return {param.name: value for param, value in param_map.items() if param.name not in NOT_JSON}


def apply_params(instance: Params, uid: str | None, params: dict, default_params: dict, where: str) -> None:
    """Give ``instance`` the saved uid, defaults and explicitly set params (as pyspark's DefaultParamsReader does);
    names this version does not know are left out with a warning."""
    if uid:
        instance._resetUid(uid)
    unknown = sorted(name for name in {**default_params, **params} if not instance.hasParam(name))
    if unknown:
        logger.warning("%s: leaving out params this sparkgmm does not know: %s", where, ", ".join(unknown))
    try:
        instance._setDefault(**{k: v for k, v in default_params.items() if instance.hasParam(k) and v is not None})
        instance._set(**{k: v for k, v in params.items() if instance.hasParam(k) and v is not None})
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"params in {where!r} are damaged: {e}") from None


class DirectoryWriter(MLWriter):
    """An ``MLWriter`` whose ``save`` stages the directory (``outputs.save_directory``) and whose ``saveImpl`` writes
    it with DataFrame writers only."""

    def __init__(self, instance: Params, write: Callable[[Any, str], None], what: str):
        super().__init__()
        self.instance = instance
        self._write = write
        self._what = what

    def save(self, path: str) -> None:
        save_directory(self.sparkSession, path, self.shouldOverwrite, self.saveImpl, self._what, HOW_TO_OVERWRITE)

    def saveImpl(self, path: str) -> None:
        self._write(self.sparkSession, path)


def saved_model(model) -> SavedModel:
    """What the directory of a ``GaussianMixtureModel`` holds: its mixture, summary, quantiles and params."""
    return SavedModel(
        model.mixture, model.summary.to_dict() if model.hasSummary else None, model.logDensityQuantiles,
        json_params(model._paramMap), json_params(model._defaultParamMap), class_name(model), model.uid,
        posterior=model.posterior, prior=model.prior,
    )


def model_from_saved(cls: type, saved: SavedModel, where: str):
    """The ``GaussianMixtureModel`` (class ``cls``) a model directory ``where`` holds."""
    summary = None if saved.summary is None else GaussianMixtureSummary.from_dict(saved.summary, where)
    model = cls(saved.mixture, summary, saved.log_density_quantiles, posterior=saved.posterior, prior=saved.prior)
    apply_params(model, saved.uid, saved.params, saved.default_params, where)
    return model


def model_writer(model) -> DirectoryWriter:
    """The writer of a ``GaussianMixtureModel`` (``saved_model``)."""
    return DirectoryWriter(model, lambda spark, path: write_with_spark(spark, path, saved_model(model)), "model path")


class ModelReader(MLReader):
    """Reads either format version of the model directory, from any URI the session can read."""

    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str):
        return model_from_saved(self.cls, read_saved(self.sparkSession, path), path)


def read_saved(spark, uri: str) -> SavedModel:
    """The model directory ``uri``, through the session."""
    with known_file_system(uri, "model path"):
        return read_with_spark(spark, uri)


def estimator_writer(estimator) -> DirectoryWriter:
    def write(spark, path: str) -> None:
        initial_model = estimator.getInitialModel()
        block = {"format": ESTIMATOR_FORMAT, "format_version": FORMAT_VERSION,
                 "initial_model": None if initial_model is None else INITIAL_MODEL_DIR}
        write_metadata_with_spark(spark, path, metadata_line(
            class_name(estimator), estimator.uid, json_params(estimator._paramMap),
            json_params(estimator._defaultParamMap), spark.version, block))
        if initial_model is not None:
            write_with_spark(spark, join(path, INITIAL_MODEL_DIR), SavedModel(initial_model))

    return DirectoryWriter(estimator, write, "estimator path")


class EstimatorReader(MLReader):
    """Reads an estimator directory: its params, and its initialModel when it has one."""

    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str):
        spark = self.sparkSession
        with known_file_system(path, "estimator path"):
            try:
                lines = read_metadata_with_spark(spark, path)
            except Exception as error:
                if not is_missing_path(error):
                    raise
                raise ModelFormatError(f"estimator path {path!r} has no {join(path, 'metadata')!r}: it does not exist "
                                       "or is not a saved sparkgmm GaussianMixture") from None
            document = parse_metadata(lines, path, ESTIMATOR_FORMAT)
            estimator = self.cls()
            apply_params(estimator, document.get("uid"), document.get("paramMap") or {},
                         document.get("defaultParamMap") or {}, path)
            initial_model = document["sparkgmm"].get("initial_model")
            if initial_model:
                estimator._set(initialModel=read_with_spark(spark, join(path, str(initial_model))).mixture)
            return estimator


# --- the layout through a Spark session (classic or Connect), any Hadoop URI -----------------------------------------

def join(uri: str, name: str) -> str:
    return uri.rstrip("/") + "/" + name


def is_missing_path(error: BaseException) -> bool:
    """Spark's ``[PATH_NOT_FOUND]`` (an AnalysisException, classic or Connect), told by its text alone."""
    return type(error).__name__ == "AnalysisException" and "[PATH_NOT_FOUND]" in str(error)


def write_metadata_with_spark(spark, uri: str, line: str) -> None:
    spark.createDataFrame([(line,)], "value string").coalesce(1).write.text(join(uri, METADATA_DIR))


def write_with_spark(spark, uri: str, saved: SavedModel) -> None:
    """Write ``saved`` into ``uri`` (which must not exist: overwriting is the caller's) with the session's
    DataFrame writers: two small jobs."""
    write_metadata_with_spark(spark, uri, model_metadata_line(saved, spark.version))
    spark.createDataFrame(data_table(saved.mixture)).coalesce(1).write.parquet(join(uri, DATA_DIR))


def read_metadata_with_spark(spark, uri: str) -> list[str]:
    """The metadata lines of the directory ``uri`` (an AnalysisException ``[PATH_NOT_FOUND]`` when it has none)."""
    return [row[0] for row in spark.read.text(join(uri, METADATA_DIR)).collect()]


def read_with_spark(spark, uri: str) -> SavedModel:
    """Read the model directory ``uri`` with the session's DataFrame readers, either format version."""
    try:
        lines = read_metadata_with_spark(spark, uri)
    except Exception as error:
        if not is_missing_path(error):
            raise
        return _read_legacy_with_spark(spark, uri)
    try:
        table = spark.read.parquet(join(uri, DATA_DIR)).toArrow()
    except Exception as error:
        if is_missing_path(error) or "[UNABLE_TO_INFER_SCHEMA]" in str(error):
            raise ModelFormatError(f"model data {join(uri, DATA_DIR)!r} is missing") from None
        if "[FAILED_READ_FILE" in str(error):  # not Parquet, or damaged
            raise ModelFormatError(f"model data in {uri!r} is unreadable ({str(error).splitlines()[0]})") from None
        raise
    return decode(lines, table, uri)


def _read_legacy_with_spark(spark, uri: str) -> SavedModel:
    try:
        rows = (spark.read.format("binaryFile").option("pathGlobFilter", "*.{json,npz}").load(uri)
                .select("path", "content").collect())
    except Exception as error:
        if not is_missing_path(error):
            raise
        raise ModelFormatError(f"model path {uri!r} does not exist") from None
    files = {row[0].rstrip("/").rsplit("/", 1)[-1]: bytes(row[1]) for row in rows}
    if LEGACY_METADATA not in files:
        raise ModelFormatError(f"model path {uri!r} is not a sparkgmm model directory: it has no {METADATA_DIR}/ "
                               f"(nor {LEGACY_METADATA})")
    return decode_legacy(files, uri)

