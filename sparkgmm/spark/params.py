"""The params that ``GaussianMixture`` and ``GaussianMixtureModel`` share: declared, defaulted and validated once."""

from __future__ import annotations

import math
import zlib
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

from ..config import BLOCK_STORAGES, DEFAULT_BLOCK_STORAGE, HANDLE_INVALID, STORAGE_LEVELS
from ..em import ACCELERATIONS, DEFAULT_ACCELERATION, DEFAULT_MAX_RESEEDS
from ..errors import InputError
from ..gaussian import COVARIANCE_TYPES
from ..init import DEFAULT_INIT_MODE, INIT_MODES
from ..mixture import Mixture
from ..passes import BLOCK_DTYPES
from ..sampling import DEFAULT_SAMPLE_ROWS
from ..search import DEFAULT_SAMPLE_RESTARTS
from ..sketch import OUTLIER_LEVEL_RULE, is_outlier_level

# pyspark's HasSeed defaults to hash(class name), which Python randomises per process: fix it so that an unseeded
# fit is reproducible from run to run.
_DEFAULT_SEED = zlib.crc32(b"sparkgmm.GaussianMixture")
# How a fit runs its passes: "rdd" (FeatureBlocks: broadcast and treeReduce, needs a SparkContext), "dataframe"
# (FrameBlocks: DataFrame operations only, as a Spark Connect client must), "auto" (rdd when the session has a
# SparkContext, where it is faster; else dataframe).
ENGINES = ("auto", "rdd", "dataframe")


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
    """Params shared by the estimator and the model; defaults declared once, here."""

    k: Param[int] = Param(Params._dummy(), "k", "number of mixture components (>= 1)", TypeConverters.toInt)
    covarianceType: Param[str] = Param(
        Params._dummy(), "covarianceType", f"covariance type: one of {', '.join(COVARIANCE_TYPES)}",
        TypeConverters.toString,
    )
    regCovar: Param[float] = Param(
        Params._dummy(), "regCovar", "non-negative value added to the diagonal of every covariance",
        TypeConverters.toFloat,
    )
    initMode: Param[str] = Param(
        Params._dummy(), "initMode", f"initialisation: one of {', '.join(INIT_MODES)}", TypeConverters.toString
    )
    initialModel: Param[Mixture] = Param(
        Params._dummy(), "initialModel",
        "a sparkgmm.Mixture, GaussianMixtureModel or fitted sklearn.mixture.GaussianMixture to start EM from "
        "(overrides initMode and nInit)", _to_mixture,
    )
    initSteps: Param[int] = Param(
        Params._dummy(), "initSteps", "k-means|| oversampling rounds (passes over the data), >= 1",
        TypeConverters.toInt,
    )
    sampleRows: Param[int] = Param(
        Params._dummy(), "sampleRows",
        "rows the conversion keeps as a weighted sample for initMode='sample' (>= 1; at most 2 x sampleRows x "
        "features doubles reach the driver's memory)", TypeConverters.toInt,
    )
    sampleRestarts: Param[int] = Param(
        Params._dummy(), "sampleRestarts",
        "k-means++ and EM restarts per fit on the sample, in memory on the driver (initMode='sample'; >= 1)",
        TypeConverters.toInt,
    )
    maxReseeds: Param[int] = Param(
        Params._dummy(), "maxReseeds",
        "re-seeds of collapsed components (less than one row's weight, or a covariance regCovar cannot keep valid) "
        "per EM run at most; 0 = never", TypeConverters.toInt,
    )
    nInit: Param[int] = Param(
        Params._dummy(), "nInit", "restarts on the full data, run side by side in shared passes; the best log-likelihood wins "
        "(>= 1; with initMode='sample', from the nInit best distinct optima of the sample search)",
        TypeConverters.toInt,
    )
    acceleration: Param[str] = Param(
        Params._dummy(), "acceleration", f"EM acceleration: one of {', '.join(ACCELERATIONS)}",
        TypeConverters.toString,
    )
    storageLevel: Param[str] = Param(
        Params._dummy(), "storageLevel",
        f"storage level of what Spark persists (the blocks with blockStorage=spark-cache, else where their files are): "
        f"one of {', '.join(STORAGE_LEVELS)}",
        TypeConverters.toString,
    )
    dtype: Param[str] = Param(
        Params._dummy(), "dtype",
        f"type of the stored blocks and the per-row arithmetic: one of {', '.join(BLOCK_DTYPES)} (sums are float64)",
        TypeConverters.toString,
    )
    blockStorage: Param[str] = Param(
        Params._dummy(), "blockStorage",
        f"where the converted blocks live between passes: one of {', '.join(BLOCK_STORAGES)}", TypeConverters.toString,
    )
    logDensityCol: Param[str] = Param(
        Params._dummy(), "logDensityCol", "output column for each row's log-density", TypeConverters.toString
    )
    handleInvalid: Param[str] = Param(
        Params._dummy(), "handleInvalid",
        f"rows with null, NaN or infinite features, or a null, negative or non-finite weight: one of "
        f"{', '.join(HANDLE_INVALID)} ('error' refuses the input, counting them; 'skip' leaves them out and counts "
        f"them in the summary)",
        TypeConverters.toString,
    )
    checkpointDir: Param[str] = Param(
        Params._dummy(), "checkpointDir",
        "directory (any Hadoop file system URI) where the fit saves its state after every pass; a fit of the same "
        "input and settings that finds a checkpoint there resumes from it",
        TypeConverters.toString,
    )
    engine: Param[str] = Param(
        Params._dummy(), "engine",
        f"how the fit runs its passes: one of {', '.join(ENGINES)} ('auto': rdd in a classic session, dataframe "
        "under Spark Connect)", TypeConverters.toString,
    )
    keepCheckpoint: Param[bool] = Param(
        Params._dummy(), "keepCheckpoint", "keep the last checkpoint when the fit ends (default: remove it)",
        TypeConverters.toBoolean,
    )
    outlierQuantile: Param[float] = Param(
        Params._dummy(), "outlierQuantile",
        "when set, transform adds outlierCol, true for rows whose log-density is below this quantile of the training "
        "log-densities (a level in (0, 0.5]; levels between those the model stores are interpolated)",
        TypeConverters.toFloat,
    )
    outlierCol: Param[str] = Param(
        Params._dummy(), "outlierCol", "output column flagging outliers (with outlierQuantile)",
        TypeConverters.toString,
    )

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(
            k=2, maxIter=100, tol=1e-3, covarianceType="full", regCovar=1e-6, initMode=DEFAULT_INIT_MODE,
            initSteps=2, nInit=1, acceleration=DEFAULT_ACCELERATION, storageLevel="MEMORY_AND_DISK_DESER",
            dtype="float64", blockStorage=DEFAULT_BLOCK_STORAGE, aggregationDepth=2, logDensityCol="logDensity",
            seed=_DEFAULT_SEED, handleInvalid="error", keepCheckpoint=False, outlierCol="isOutlier", engine="auto",
            sampleRows=DEFAULT_SAMPLE_ROWS, sampleRestarts=DEFAULT_SAMPLE_RESTARTS, maxReseeds=DEFAULT_MAX_RESEEDS,
        )

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

    def _input_cols(self) -> list[str] | None:
        return self.getInputCols() if self.isDefined(self.inputCols) else None

    def _weight_col(self) -> str | None:
        return self.getWeightCol() if self.isDefined(self.weightCol) and self.getWeightCol() else None

    def _validated(self) -> dict[str, Any]:
        """Every param checked once, with a message naming the bad value."""
        checks = {
            "k": (self.getK(), lambda v: v >= 1, "must be >= 1"),
            "maxIter": (self.getMaxIter(), lambda v: v >= 0, "must be >= 0"),
            "tol": (self.getTol(), lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0"),
            "regCovar": (self.getRegCovar(), lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0"),
            "aggregationDepth": (self.getAggregationDepth(), lambda v: v >= 1, "must be >= 1"),
            "covarianceType": (self.getCovarianceType(), lambda v: v in COVARIANCE_TYPES,
                               f"must be one of {', '.join(COVARIANCE_TYPES)}"),
            "initMode": (self.getInitMode(), lambda v: v in INIT_MODES, f"must be one of {', '.join(INIT_MODES)}"),
            "initSteps": (self.getInitSteps(), lambda v: v >= 1, "must be >= 1"),
            "nInit": (self.getNInit(), lambda v: v >= 1, "must be >= 1"),
            "sampleRows": (self.getSampleRows(), lambda v: v >= 1, "must be >= 1"),
            "sampleRestarts": (self.getSampleRestarts(), lambda v: v >= 1, "must be >= 1"),
            "maxReseeds": (self.getMaxReseeds(), lambda v: v >= 0, "must be >= 0 (0: never re-seed)"),
            "acceleration": (self.getAcceleration(), lambda v: v in ACCELERATIONS,
                             f"must be one of {', '.join(ACCELERATIONS)}"),
            "storageLevel": (self.getStorageLevel(), lambda v: v in STORAGE_LEVELS,
                             f"must be one of {', '.join(STORAGE_LEVELS)}"),
            "dtype": (self.getDtype(), lambda v: v in BLOCK_DTYPES, f"must be one of {', '.join(BLOCK_DTYPES)}"),
            "blockStorage": (self.getBlockStorage(), lambda v: v in BLOCK_STORAGES,
                             f"must be one of {', '.join(BLOCK_STORAGES)}"),
            "handleInvalid": (self.getHandleInvalid(), lambda v: v in HANDLE_INVALID,
                              f"must be one of {', '.join(HANDLE_INVALID)}"),
            "checkpointDir": (self.getCheckpointDir(), lambda v: v is None or bool(v.strip()), "must not be empty"),
            "engine": (self.getEngine(), lambda v: v in ENGINES, f"must be one of {', '.join(ENGINES)}"),
            "outlierQuantile": (self.getOutlierQuantile(), lambda v: v is None or is_outlier_level(v),
                                OUTLIER_LEVEL_RULE),
            "outlierCol": (self.getOutlierCol(), lambda v: bool(v.strip()), "must not be empty"),
        }
        for name, (value, ok, rule) in checks.items():
            if not ok(value):
                raise InputError(f"{name}={value!r} {rule}")
        return {name: value for name, (value, _, _) in checks.items()}
