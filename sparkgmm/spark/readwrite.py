"""pyspark.ml persistence (``MLWriter``/``MLReader``) for ``GaussianMixture`` and ``GaussianMixtureModel``.

The directories have ``sparkgmm.persistence``'s layout and are written and read only through the session's
DataFrame writers and readers, so any Hadoop URI works (``hdfs://``, ``s3a://``, ``file://``, a path on the default
file system), on a classic session or under Spark Connect; their metadata is pyspark.ml's DefaultParams metadata, so
``Pipeline``, ``PipelineModel``, ``CrossValidator`` and ``CrossValidatorModel`` save and load them as stages. Saving
over an existing path needs ``write().overwrite()``; how a failed save is cleaned up is ``outputs.save_directory``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pyspark.ml.param import Params
from pyspark.ml.util import MLReader, MLWriter

from ..persistence import (
    ESTIMATOR_FORMAT,
    FORMAT_VERSION,
    ModelFormatError,
    SavedModel,
    is_missing_path,
    join,
    metadata_line,
    parse_metadata,
    read_metadata_with_spark,
    read_with_spark,
    write_metadata_with_spark,
    write_with_spark,
)
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


def model_writer(model) -> DirectoryWriter:
    """The writer of a ``GaussianMixtureModel``: ``model._saved()`` is what it holds."""
    return DirectoryWriter(model, lambda spark, path: write_with_spark(spark, path, model._saved()), "model path")


class ModelReader(MLReader):
    """Reads either format version of the model directory, from any URI the session can read."""

    def __init__(self, cls: type):
        super().__init__()
        self.cls = cls

    def load(self, path: str):
        return self.cls._from_saved(read_saved(self.sparkSession, path), path)


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
