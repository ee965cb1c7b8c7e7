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

from ..mixture import Mixture
from ..options import PARAMS, param_defaults, validate_params

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


# A Param's type converter, by the option's kind.
_CONVERTERS = {int: TypeConverters.toInt, float: TypeConverters.toFloat, str: TypeConverters.toString,
               bool: TypeConverters.toBoolean, list[str]: TypeConverters.toListString, Mixture: _to_mixture}


def _declared(name: str) -> Param:
    """The Param ``name`` as the option table describes it."""
    option = PARAMS[name]
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

    k: Param[int] = _declared("k")
    covarianceType: Param[str] = _declared("covarianceType")
    regCovar: Param[float] = _declared("regCovar")
    initMode: Param[str] = _declared("initMode")
    initialModel: Param[Mixture] = _declared("initialModel")
    initSteps: Param[int] = _declared("initSteps")
    sampleRows: Param[int] = _declared("sampleRows")
    sampleRestarts: Param[int] = _declared("sampleRestarts")
    maxReseeds: Param[int] = _declared("maxReseeds")
    nInit: Param[int] = _declared("nInit")
    acceleration: Param[str] = _declared("acceleration")
    storageLevel: Param[str] = _declared("storageLevel")
    dtype: Param[str] = _declared("dtype")
    blockStorage: Param[str] = _declared("blockStorage")
    logDensityCol: Param[str] = _declared("logDensityCol")
    handleInvalid: Param[str] = _declared("handleInvalid")
    checkpointDir: Param[str] = _declared("checkpointDir")
    engine: Param[str] = _declared("engine")
    keepCheckpoint: Param[bool] = _declared("keepCheckpoint")
    outlierQuantile: Param[float] = _declared("outlierQuantile")
    outlierCol: Param[str] = _declared("outlierCol")

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
