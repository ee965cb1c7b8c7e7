"""The params that ``GaussianMixture`` and ``GaussianMixtureModel`` share, as the option table (``sparkgmm.options``)
describes, defaults and checks them."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasAggregationDepth,
    HasFeaturesCol,
    HasInputCols,
    HasMaxIter,
    HasPredictionCol,
    HasProbabilityCol,
    HasSeed,
    HasTol,
    HasWeightCol,
)

import numpy as np

from ..mixture import Mixture
from ..options import COVARIANCE_PRIOR, ONLINE_PARAMS, PARAMS, Option, param_defaults, validate_params

def _to_mixture(value: Any) -> Mixture:
    """An initialModel as a ``Mixture``: one already, a ``GaussianMixtureModel``'s, or a fitted scikit-learn
    ``GaussianMixture``'s parameters."""
    if not isinstance(value, Mixture) and hasattr(value, "covariance_type") and hasattr(value, "n_components"):
        return Mixture.from_sklearn(value)  # refuses one that is not fitted
    mixture = getattr(value, "mixture", value)  # a GaussianMixtureModel holds its Mixture
    if not isinstance(mixture, Mixture):
        raise TypeError(
            "initialModel must be a sparkgmm.Mixture, a GaussianMixtureModel or a fitted "
            f"sklearn.mixture.GaussianMixture; got {type(value).__name__}"
        )
    return mixture


def _to_covariance_prior(value: Any) -> float | list:
    """A covariancePrior as JSON-ready numbers: one (spherical), a list (diag) or a list of lists (full, tied)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"covariancePrior must be a number, a list of numbers or a matrix; got {value!r}") from None
    return float(array) if array.ndim == 0 else array.tolist()


# A Param's type converter, by the option's kind.
_CONVERTERS = {int: TypeConverters.toInt, float: TypeConverters.toFloat, str: TypeConverters.toString,
               bool: TypeConverters.toBoolean, list[str]: TypeConverters.toListString,
               list[float]: TypeConverters.toListFloat, Mixture: _to_mixture, COVARIANCE_PRIOR: _to_covariance_prior}


def declared(name: str, table: dict[str, Option] = PARAMS) -> Param:
    """The Param ``name`` as the option table (``table``: the shared Params, or the Bayesian ones) describes it."""
    option = table[name]
    return Param(Params._dummy(), name, option.help, _CONVERTERS[option.kind])



class GaussianMixtureParams(
    HasMaxIter,
    HasFeaturesCol,
    HasInputCols,
    HasSeed,
    HasPredictionCol,
    HasProbabilityCol,
    HasTol,
    HasAggregationDepth,
    HasWeightCol,
):
    """Params shared by the estimator and the model: declared here, described, defaulted and checked by the option
    table (pyspark's shared params keep their own descriptions)."""

    k: Param[int] = declared("k")
    covarianceType: Param[str] = declared("covarianceType")
    regCovar: Param[float] = declared("regCovar")
    initMode: Param[str] = declared("initMode")
    initialModel: Param[Mixture] = declared("initialModel")
    initSteps: Param[int] = declared("initSteps")
    sampleRows: Param[int] = declared("sampleRows")
    sampleRestarts: Param[int] = declared("sampleRestarts")
    maxReseeds: Param[int] = declared("maxReseeds")
    nInit: Param[int] = declared("nInit")
    acceleration: Param[str] = declared("acceleration")
    storageLevel: Param[str] = declared("storageLevel")
    dtype: Param[str] = declared("dtype")
    blockStorage: Param[str] = declared("blockStorage")
    logDensityCol: Param[str] = declared("logDensityCol")
    handleInvalid: Param[str] = declared("handleInvalid")
    checkpointDir: Param[str] = declared("checkpointDir")
    engine: Param[str] = declared("engine")
    keepCheckpoint: Param[bool] = declared("keepCheckpoint")
    outlierQuantile: Param[float] = declared("outlierQuantile")
    outlierCol: Param[str] = declared("outlierCol")

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(**param_defaults())

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getCovarianceType(self) -> str:
        return self.getOrDefault(self.covarianceType)

    def getRegCovar(self) -> float:
        return self.getOrDefault(self.regCovar)

    def getInitMode(self) -> str:
        return self.getOrDefault(self.initMode)

    def getInitialModel(self) -> Mixture | None:
        return self.getOrDefault(self.initialModel) if self.isDefined(self.initialModel) else None

    def getInitSteps(self) -> int:
        return self.getOrDefault(self.initSteps)

    def getNInit(self) -> int:
        return self.getOrDefault(self.nInit)

    def getSampleRows(self) -> int:
        return self.getOrDefault(self.sampleRows)

    def getSampleRestarts(self) -> int:
        return self.getOrDefault(self.sampleRestarts)

    def getMaxReseeds(self) -> int:
        return self.getOrDefault(self.maxReseeds)

    def getAcceleration(self) -> str:
        return self.getOrDefault(self.acceleration)

    def getStorageLevel(self) -> str:
        return self.getOrDefault(self.storageLevel)

    def getDtype(self) -> str:
        return self.getOrDefault(self.dtype)

    def getBlockStorage(self) -> str:
        return self.getOrDefault(self.blockStorage)

    def getLogDensityCol(self) -> str:
        return self.getOrDefault(self.logDensityCol)

    def getHandleInvalid(self) -> str:
        return self.getOrDefault(self.handleInvalid)

    def getCheckpointDir(self) -> str | None:
        return self.getOrDefault(self.checkpointDir) if self.isDefined(self.checkpointDir) else None

    def getKeepCheckpoint(self) -> bool:
        return self.getOrDefault(self.keepCheckpoint)

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)

    def getOutlierQuantile(self) -> float | None:
        return self.getOrDefault(self.outlierQuantile) if self.isDefined(self.outlierQuantile) else None

    def getOutlierCol(self) -> str:
        return self.getOrDefault(self.outlierCol)

    # Setters for the columns: the estimator and the model both have them.
    def setFeaturesCol(self, value: str):
        return self._set(featuresCol=value)

    def setInputCols(self, value: list[str]):
        return self._set(inputCols=value)

    def setPredictionCol(self, value: str):
        return self._set(predictionCol=value)

    def setProbabilityCol(self, value: str):
        return self._set(probabilityCol=value)

    def setLogDensityCol(self, value: str):
        return self._set(logDensityCol=value)

    def setOutlierQuantile(self, value: float | None):
        """A level in (0, 0.5] adds ``outlierCol`` on transform; None removes it."""
        if value is None:
            self.clear(self.outlierQuantile)
            return self
        return self._set(outlierQuantile=value)

    def setOutlierCol(self, value: str):
        return self._set(outlierCol=value)

    def input_columns(self) -> list[str] | None:
        """The numeric columns named by ``inputCols``, or None when the features come from ``featuresCol``."""
        return self.getInputCols() if self.isDefined(self.inputCols) else None

    def _weight_col(self) -> str | None:
        return self.getWeightCol() if self.isDefined(self.weightCol) and self.getWeightCol() else None

    def _validated(self) -> dict[str, Any]:
        """Every param (None where unset) checked against the option table, with a message naming the bad value.
        An empty weightCol means no weights, as in pyspark.ml."""
        values = {name: self.getOrDefault(name) if self.isDefined(name) else None for name in PARAMS}
        return validate_params({**values, "weightCol": self._weight_col()})


class OnlineParams(Params):
    """``GaussianMixtureModel``'s own Params: how ``update`` blends new rows into what the model has seen
    (``sparkgmm.online``), described, defaulted and checked by the option table."""

    decayFactor: Param[float] = declared("decayFactor", ONLINE_PARAMS)
    halfLife: Param[float] = declared("halfLife", ONLINE_PARAMS)
    timeUnit: Param[str] = declared("timeUnit", ONLINE_PARAMS)
    stepPower: Param[float] = declared("stepPower", ONLINE_PARAMS)
    averageAfter: Param[int] = declared("averageAfter", ONLINE_PARAMS)
    effectiveCount: Param[float] = declared("effectiveCount", ONLINE_PARAMS)

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(**param_defaults(ONLINE_PARAMS))

    def setDecayFactor(self, value: float):
        return self._set(decayFactor=value)

    def setHalfLife(self, value: float):
        return self._set(halfLife=value)

    def setTimeUnit(self, value: str):
        return self._set(timeUnit=value)

    def setStepPower(self, value: float):
        return self._set(stepPower=value)

    def setAverageAfter(self, value: int):
        return self._set(averageAfter=value)

    def setEffectiveCount(self, value: float):
        return self._set(effectiveCount=value)

    def getDecayFactor(self) -> float:
        return self.getOrDefault(self.decayFactor)

    def getTimeUnit(self) -> str:
        return self.getOrDefault(self.timeUnit)

    def online_settings(self) -> dict[str, Any]:
        """The online Params (None where unset), checked against the option table."""
        values = {name: self.getOrDefault(name) if self.isDefined(name) else None for name in ONLINE_PARAMS}
        return validate_params(values, ONLINE_PARAMS)
