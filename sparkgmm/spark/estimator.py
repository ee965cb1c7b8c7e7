"""``GaussianMixture``: a pyspark.ml Estimator fitting a Gaussian mixture by distributed EM, and its model."""

from __future__ import annotations

import logging
import math
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from pyspark import StorageLevel, keyword_only
from pyspark.ml import Estimator, Model
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
from pyspark.sql import DataFrame

from ..config import STORAGE_LEVELS
from ..em import run_em
from ..errors import InputError
from ..gaussian import COVARIANCE_TYPES
from ..init import INIT_MODES, initial_mixture
from ..mixture import Mixture, information_criteria
from ..persistence import load_mixture, read_json, write_model_dir
from .blocks import FeatureBlocks, features_column
from .scoring import score_dataframe

logger = logging.getLogger("sparkgmm")

# Rows gathered to the driver for initialisation: enough for k-means++ to see every sizeable cluster, bounded so the
# driver's memory does not grow with the data.
INIT_SAMPLE_ROWS = 10_000

# pyspark's HasSeed defaults to hash(class name), which Python randomises per process: fix it so that an unseeded
# fit is reproducible from run to run.
_DEFAULT_SEED = zlib.crc32(b"sparkgmm.GaussianMixture")

_SPARK_PARAMS_FILE = "spark_params.json"
_SUMMARY_FILE = "summary.json"


def _to_mixture(value: Any) -> Mixture:
    if not isinstance(value, Mixture):
        raise TypeError(f"initialModel must be a sparkgmm.Mixture; got {type(value).__name__}")
    return value


class _GaussianMixtureParams(
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
        Params._dummy(), "initialModel", "a sparkgmm.Mixture to start EM from (overrides initMode)", _to_mixture
    )
    storageLevel: Param[str] = Param(
        Params._dummy(), "storageLevel", f"storage level of the cached feature blocks: one of {', '.join(STORAGE_LEVELS)}",
        TypeConverters.toString,
    )
    logDensityCol: Param[str] = Param(
        Params._dummy(), "logDensityCol", "output column for each row's log-density", TypeConverters.toString
    )

    def __init__(self, *args: Any):
        super().__init__(*args)
        self._setDefault(
            k=2, maxIter=100, tol=1e-3, covarianceType="full", regCovar=1e-6, initMode="k-means",
            storageLevel="MEMORY_AND_DISK_DESER", aggregationDepth=2, logDensityCol="logDensity",
            seed=_DEFAULT_SEED,
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

    def getStorageLevel(self) -> str:
        return self.getOrDefault(self.storageLevel)

    def getLogDensityCol(self) -> str:
        return self.getOrDefault(self.logDensityCol)

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
            "storageLevel": (self.getStorageLevel(), lambda v: v in STORAGE_LEVELS,
                             f"must be one of {', '.join(STORAGE_LEVELS)}"),
        }
        for name, (value, ok, rule) in checks.items():
            if not ok(value):
                raise InputError(f"{name}={value!r} {rule}")
        return {name: value for name, (value, _, _) in checks.items()}


@dataclass(frozen=True)
class GaussianMixtureSummary:
    """What the fit did. ``logLikelihood`` is the mean per-sample log-likelihood of the training data under the
    returned parameters; ``logLikelihoodHistory[t]`` that after ``t`` iterations (index 0: the initial parameters)."""

    logLikelihood: float
    logLikelihoodHistory: tuple[float, ...]
    iterationSeconds: tuple[float, ...]
    numIter: int
    converged: bool
    clusterSizes: tuple[int, ...]
    numRows: int
    weightSum: float
    numParameters: int

    @property
    def bic(self) -> float:
        """BIC of the training data (weights count as rows); lower is better."""
        return information_criteria(self.logLikelihood, self.weightSum, self.numParameters)[0]

    @property
    def aic(self) -> float:
        return information_criteria(self.logLikelihood, self.weightSum, self.numParameters)[1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bic": self.bic, "aic": self.aic}


class GaussianMixture(Estimator, _GaussianMixtureParams):
    """Gaussian mixture fitted by EM over persisted NumPy blocks, for the covariance types full, tied, diag and
    spherical. Params as ``pyspark.ml.clustering.GaussianMixture`` where they mean the same; ``tol`` applies to
    the change of the *mean* per-sample log-likelihood, as in scikit-learn."""

    @keyword_only
    def __init__(
        self, *, featuresCol: str = "features", inputCols: list[str] | None = None, predictionCol: str = "prediction",
        probabilityCol: str = "probability", logDensityCol: str = "logDensity", k: int = 2,
        covarianceType: str = "full", maxIter: int = 100, tol: float = 1e-3, regCovar: float = 1e-6,
        seed: int | None = None, initMode: str = "k-means", initialModel: Mixture | None = None,
        weightCol: str | None = None, aggregationDepth: int = 2, storageLevel: str = "MEMORY_AND_DISK_DESER",
    ):
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self, *, featuresCol: str = "features", inputCols: list[str] | None = None, predictionCol: str = "prediction",
        probabilityCol: str = "probability", logDensityCol: str = "logDensity", k: int = 2,
        covarianceType: str = "full", maxIter: int = 100, tol: float = 1e-3, regCovar: float = 1e-6,
        seed: int | None = None, initMode: str = "k-means", initialModel: Mixture | None = None,
        weightCol: str | None = None, aggregationDepth: int = 2, storageLevel: str = "MEMORY_AND_DISK_DESER",
    ) -> "GaussianMixture":
        kwargs = {key: value for key, value in self._input_kwargs.items() if value is not None}
        return self._set(**kwargs)

    def setK(self, value: int) -> "GaussianMixture":
        return self._set(k=value)

    def setCovarianceType(self, value: str) -> "GaussianMixture":
        return self._set(covarianceType=value)

    def setMaxIter(self, value: int) -> "GaussianMixture":
        return self._set(maxIter=value)

    def setTol(self, value: float) -> "GaussianMixture":
        return self._set(tol=value)

    def setRegCovar(self, value: float) -> "GaussianMixture":
        return self._set(regCovar=value)

    def setSeed(self, value: int) -> "GaussianMixture":
        return self._set(seed=value)

    def setInitMode(self, value: str) -> "GaussianMixture":
        return self._set(initMode=value)

    def setInitialModel(self, value: Mixture) -> "GaussianMixture":
        return self._set(initialModel=value)

    def setWeightCol(self, value: str) -> "GaussianMixture":
        return self._set(weightCol=value)

    def setAggregationDepth(self, value: int) -> "GaussianMixture":
        return self._set(aggregationDepth=value)

    def setStorageLevel(self, value: str) -> "GaussianMixture":
        return self._set(storageLevel=value)

    def _fit(self, dataset: DataFrame) -> "GaussianMixtureModel":
        self._validated()
        with self._feature_blocks(dataset, self.getK()) as blocks:
            return self._fit_blocks(blocks)

    def fitMultiple(self, dataset: DataFrame, paramMaps: Sequence[dict[Param, Any]]) -> Iterator[tuple[int, "GaussianMixtureModel"]]:
        """Fit one model per param map, converting the features to cached blocks once for all of them when the maps
        agree on the input (features, weights, storage level, seed), as when they vary only ``k``, the covariance
        type or the EM settings. Yields ``(index, model)``; thread-safe, as pyspark.ml's tuning expects."""
        estimators = [self.copy(param_map) for param_map in paramMaps]
        for estimator in estimators:
            estimator._validated()
        if len({estimator._input_key() for estimator in estimators}) > 1:
            return super().fitMultiple(dataset, paramMaps)
        return _SharedBlockFits(dataset, estimators)

    def _input_key(self) -> tuple:
        """What decides the cached blocks: maps that agree on it can share one conversion."""
        input_cols = self._input_cols()
        return (
            tuple(input_cols) if input_cols else None, None if input_cols else self.getFeaturesCol(),
            self._weight_col(), self.getStorageLevel(), self.getSeed(),
        )

    def _feature_blocks(self, dataset: DataFrame, max_k: int) -> FeatureBlocks:
        """Convert and cache ``dataset``'s features, with an initialisation sample big enough for ``max_k``."""
        features = features_column(dataset, self.getFeaturesCol(), self._input_cols())
        storage_level = getattr(StorageLevel, self.getStorageLevel())
        sample_rows = max(INIT_SAMPLE_ROWS, 20 * max_k)
        return FeatureBlocks(dataset, features, self._weight_col(), storage_level, self._seed(), sample_rows)

    def _seed(self) -> int:
        return self.getSeed() & 0xFFFFFFFFFFFFFFFF

    def _fit_blocks(self, blocks: FeatureBlocks) -> "GaussianMixtureModel":
        """EM over blocks that are already cached (they stay cached: the caller owns them)."""
        p = self._validated()
        k, covariance_type, reg_covar = p["k"], p["covarianceType"], p["regCovar"]
        initial_model = self.getInitialModel()
        if initial_model is not None and (
            initial_model.n_components != k or initial_model.covariance_type != covariance_type
        ):
            raise InputError(
                f"initialModel has {initial_model.n_components} {initial_model.covariance_type} components but "
                f"k={k} and covarianceType={covariance_type!r}"
            )
        self._check_blocks(blocks, k, initial_model)
        initial = initial_model or initial_mixture(
            blocks.sample, blocks.sample_weight, k, covariance_type, reg_covar, p["initMode"], self._seed()
        )
        logger.info(
            "fitting %d %s components to %d rows x %d features in %d partitions",
            k, covariance_type, blocks.n_rows, blocks.n_features, blocks.loop_rdd.getNumPartitions(),
        )
        result = run_em(
            initial, blocks.expectation(p["aggregationDepth"]), max_iter=p["maxIter"], tol=p["tol"],
            reg_covar=reg_covar,
        )
        summary = GaussianMixtureSummary(
            logLikelihood=result.log_likelihood,
            logLikelihoodHistory=result.log_likelihood_history,
            iterationSeconds=result.iteration_seconds,
            numIter=result.n_iter,
            converged=result.converged,
            clusterSizes=result.cluster_sizes,
            numRows=result.n_samples,
            weightSum=result.weight_sum,
            numParameters=result.mixture.n_parameters,
        )
        return self._copyValues(GaussianMixtureModel(result.mixture, summary))

    def _check_blocks(self, blocks: FeatureBlocks, k: int, initial_model: Mixture | None) -> None:
        what = ", ".join(self._input_cols()) if self._input_cols() else repr(self.getFeaturesCol())
        if blocks.ragged_rows:
            raise InputError(f"features {what}: rows have different lengths; every row needs the same number of features")
        if blocks.invalid_rows:
            weight = f" or in weight column {self._weight_col()!r} (null, negative or not finite)" if self._weight_col() else ""
            raise InputError(
                f"{blocks.invalid_rows} rows have null, NaN or infinite values in features {what}{weight}; "
                "drop or impute them before fitting"
            )
        if blocks.n_rows < k:
            raise InputError(f"k={k} components need at least {k} rows; the data has {blocks.n_rows}")
        if blocks.n_features < 1:
            raise InputError(f"features {what} are empty: rows need at least one feature")
        if blocks.weight_sum <= 0.0:
            raise InputError(f"weight column {self._weight_col()!r} sums to {blocks.weight_sum}; it must be positive")
        if initial_model is not None and initial_model.n_features != blocks.n_features:
            raise InputError(
                f"initialModel has {initial_model.n_features} features but the data has {blocks.n_features}"
            )


class _SharedBlockFits:
    """``fitMultiple``'s iterator when every estimator reads the same input: the blocks are converted on the first
    ``next`` and released after the last model or the first failure."""

    def __init__(self, dataset: DataFrame, estimators: list[GaussianMixture]):
        self._dataset = dataset
        self._estimators = estimators
        self._next = 0
        self._blocks: FeatureBlocks | None = None
        self._lock = threading.Lock()

    def __iter__(self) -> "_SharedBlockFits":
        return self

    def __next__(self) -> tuple[int, "GaussianMixtureModel"]:
        with self._lock:
            index = self._next
            if index >= len(self._estimators):
                raise StopIteration
            self._next += 1
            try:
                if self._blocks is None:
                    max_k = max(estimator.getK() for estimator in self._estimators)
                    self._blocks = self._estimators[0]._feature_blocks(self._dataset, max_k)
                model = self._estimators[index]._fit_blocks(self._blocks)
            except BaseException:
                self._next = len(self._estimators)
                self.close()
                raise
            if self._next == len(self._estimators):
                self.close()
            return index, model

    def close(self) -> None:
        if self._blocks is not None:
            self._blocks.unpersist()
            self._blocks = None


class GaussianMixtureModel(Model, _GaussianMixtureParams):
    """A fitted mixture: ``transform`` adds the prediction, probability (Vector) and log-density columns."""

    def __init__(self, mixture: Mixture, summary: GaussianMixtureSummary | None = None):
        super().__init__()
        self.mixture = mixture
        self._summary = summary

    @property
    def weights(self) -> np.ndarray:
        return self.mixture.weights

    @property
    def means(self) -> np.ndarray:
        return self.mixture.means

    @property
    def covariances(self) -> np.ndarray:
        return self.mixture.covariances

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    @property
    def summary(self) -> GaussianMixtureSummary:
        if self._summary is None:
            raise RuntimeError("this model has no training summary")
        return self._summary

    def _transform(self, dataset: DataFrame) -> DataFrame:
        features = features_column(dataset, self.getFeaturesCol(), self._input_cols())
        return score_dataframe(
            dataset, features, self.mixture, self.getPredictionCol(), self.getProbabilityCol(), self.getLogDensityCol()
        )

    def save(self, path: str, overwrite: bool = False) -> None:
        """A model directory on the driver's file system: the mixture, the params and the summary as JSON."""
        params = {
            param.name: value
            for param, value in self.extractParamMap().items()
            if param.name not in ("initialModel",)
        }
        extra = {_SPARK_PARAMS_FILE: params}
        if self._summary is not None:
            extra[_SUMMARY_FILE] = self._summary.to_dict()
        write_model_dir(path, self.mixture, overwrite, extra)

    @classmethod
    def load(cls, path: str) -> "GaussianMixtureModel":
        mixture = load_mixture(path)
        root = Path(path)
        summary = None
        if (root / _SUMMARY_FILE).exists():
            document = read_json(root / _SUMMARY_FILE, "model summary")
            fields = GaussianMixtureSummary.__dataclass_fields__
            summary = GaussianMixtureSummary(**{
                name: tuple(value) if isinstance(value, list) else value
                for name, value in document.items() if name in fields
            })
        model = cls(mixture, summary)
        if (root / _SPARK_PARAMS_FILE).exists():
            params = read_json(root / _SPARK_PARAMS_FILE, "model params")
            model._set(**{name: value for name, value in params.items() if model.hasParam(name)})
        return model

    def __repr__(self) -> str:
        return f"GaussianMixtureModel({self.mixture!r})"

