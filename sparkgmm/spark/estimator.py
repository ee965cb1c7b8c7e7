"""``GaussianMixture``: a pyspark.ml Estimator fitting Gaussian mixtures by distributed EM, alone or many side by
side in shared passes over one conversion of the input."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from pyspark import StorageLevel, keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame

from ..candidates import FitOutcome, FitSpec, fit_side_by_side, restart_runs
from ..em import EMSettings
from ..errors import InputError
from ..init import SAMPLE_INIT_MODE
from ..sampling import SAMPLE_STREAM
from ..mixture import Mixture
from ..summary import GaussianMixtureSummary
from .checkpoints import CheckpointStore, fit_key
from .engine import open_blocks
from .engine.base import Converted, StoredBlocks
from .features import features_column
from .model import GaussianMixtureModel
from .params import GaussianMixtureParams
from .readwrite import DirectoryWriter, EstimatorReader, estimator_writer

__all__ = ["GaussianMixture", "GaussianMixtureModel", "GaussianMixtureSummary", "fit_on_blocks", "open_feature_blocks"]

logger = logging.getLogger("sparkgmm")


class GaussianMixture(Estimator, GaussianMixtureParams, MLWritable, MLReadable["GaussianMixture"]):
    """Gaussian mixture fitted by EM over persisted NumPy blocks, for the covariance types full, tied, diag and
    spherical. Params as ``pyspark.ml.clustering.GaussianMixture`` where they mean the same; ``tol`` applies to
    the change of the *mean* per-sample log-likelihood, as in scikit-learn."""

    _input_kwargs: dict[str, Any]  # the keywords given, set by @keyword_only (as pyspark.ml's own classes declare it)

    # The keyword defaults are written out as pyspark.ml writes them, for the reader: @keyword_only passes on only
    # the keywords given, and the Params' defaults come from the option table (tests/test_options.py checks both
    # signatures against it).
    @keyword_only
    def __init__(
        self, *, featuresCol: str = "features", inputCols: list[str] | None = None, predictionCol: str = "prediction",
        probabilityCol: str = "probability", logDensityCol: str = "logDensity", k: int = 2,
        covarianceType: str = "full", maxIter: int = 100, tol: float = 1e-3, regCovar: float = 1e-6,
        seed: int | None = None, initMode: str = "sample", initialModel: Any = None, initSteps: int = 2,
        nInit: int = 1, acceleration: str = "squarem", weightCol: str | None = None,
        aggregationDepth: int = 2, storageLevel: str = "MEMORY_AND_DISK_DESER", dtype: str = "float64",
        blockStorage: str = "local-files", handleInvalid: str = "error", checkpointDir: str | None = None,
        keepCheckpoint: bool = False, outlierQuantile: float | None = None, outlierCol: str = "isOutlier",
        engine: str = "auto", sampleRows: int = 131072, sampleRestarts: int = 16,
        maxReseeds: int = 8,
    ):
        super().__init__()
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(
        self, *, featuresCol: str = "features", inputCols: list[str] | None = None, predictionCol: str = "prediction",
        probabilityCol: str = "probability", logDensityCol: str = "logDensity", k: int = 2,
        covarianceType: str = "full", maxIter: int = 100, tol: float = 1e-3, regCovar: float = 1e-6,
        seed: int | None = None, initMode: str = "sample", initialModel: Any = None, initSteps: int = 2,
        nInit: int = 1, acceleration: str = "squarem", weightCol: str | None = None,
        aggregationDepth: int = 2, storageLevel: str = "MEMORY_AND_DISK_DESER", dtype: str = "float64",
        blockStorage: str = "local-files", handleInvalid: str = "error", checkpointDir: str | None = None,
        keepCheckpoint: bool = False, outlierQuantile: float | None = None, outlierCol: str = "isOutlier",
        engine: str = "auto", sampleRows: int = 131072, sampleRestarts: int = 16,
        maxReseeds: int = 8,
    ) -> GaussianMixture:
        kwargs = {key: value for key, value in self._input_kwargs.items() if value is not None}
        return self._set(**kwargs)

    def setK(self, value: int) -> GaussianMixture:
        return self._set(k=value)

    def setCovarianceType(self, value: str) -> GaussianMixture:
        return self._set(covarianceType=value)

    def setMaxIter(self, value: int) -> GaussianMixture:
        return self._set(maxIter=value)

    def setTol(self, value: float) -> GaussianMixture:
        return self._set(tol=value)

    def setRegCovar(self, value: float) -> GaussianMixture:
        return self._set(regCovar=value)

    def setSeed(self, value: int) -> GaussianMixture:
        return self._set(seed=value)

    def setInitMode(self, value: str) -> GaussianMixture:
        return self._set(initMode=value)

    def setInitialModel(self, value: Any) -> GaussianMixture:
        return self._set(initialModel=value)

    def setInitSteps(self, value: int) -> GaussianMixture:
        return self._set(initSteps=value)

    def setNInit(self, value: int) -> GaussianMixture:
        return self._set(nInit=value)

    def setSampleRows(self, value: int) -> GaussianMixture:
        return self._set(sampleRows=value)

    def setSampleRestarts(self, value: int) -> GaussianMixture:
        return self._set(sampleRestarts=value)

    def setMaxReseeds(self, value: int) -> GaussianMixture:
        return self._set(maxReseeds=value)

    def setAcceleration(self, value: str) -> GaussianMixture:
        return self._set(acceleration=value)

    def setWeightCol(self, value: str) -> GaussianMixture:
        return self._set(weightCol=value)

    def setAggregationDepth(self, value: int) -> GaussianMixture:
        return self._set(aggregationDepth=value)

    def setStorageLevel(self, value: str) -> GaussianMixture:
        return self._set(storageLevel=value)

    def setDtype(self, value: str) -> GaussianMixture:
        return self._set(dtype=value)

    def setBlockStorage(self, value: str) -> GaussianMixture:
        return self._set(blockStorage=value)

    def setHandleInvalid(self, value: str) -> GaussianMixture:
        return self._set(handleInvalid=value)

    def setCheckpointDir(self, value: str) -> GaussianMixture:
        return self._set(checkpointDir=value)

    def setKeepCheckpoint(self, value: bool) -> GaussianMixture:
        return self._set(keepCheckpoint=value)

    def setEngine(self, value: str) -> GaussianMixture:
        return self._set(engine=value)

    def write(self) -> DirectoryWriter:
        """A pyspark.ml ``MLWriter`` (any Hadoop URI, under Spark Connect too): the params as DefaultParams metadata,
        and the initialModel, if set, as a model directory inside."""
        return estimator_writer(self)

    @classmethod
    def read(cls) -> EstimatorReader:
        return EstimatorReader(cls)

    def _fit(self, dataset: DataFrame) -> GaussianMixtureModel:
        with open_feature_blocks(dataset, [self]) as blocks:
            return fit_on_blocks([self], blocks)[0]

    def fitMultiple(
        self, dataset: DataFrame, paramMaps: Sequence[dict[Param, Any]]
    ) -> Iterator[tuple[int, GaussianMixtureModel]]:
        """Fit one model per param map. When the maps agree on the input (features, weights, storage), as when
        they vary ``k``, the covariance type, the seed or the EM settings, the features are converted to cached
        blocks once and every fit runs side by side in shared passes (on the first ``next``). Yields
        ``(index, model)``; thread-safe, as pyspark.ml's tuning expects."""
        estimators = [self.copy(param_map) for param_map in paramMaps]
        for estimator in estimators:
            estimator._validated()
        if len({estimator._input_key() for estimator in estimators}) > 1:
            return super().fitMultiple(dataset, paramMaps)
        return _SharedBlockFits(dataset, estimators)

    def _input_key(self) -> tuple:
        """What decides the cached blocks (and the checkpoint of a shared run): maps that agree on it can share one
        conversion."""
        input_cols = self.input_columns()
        return (
            tuple(input_cols) if input_cols else None, None if input_cols else self.getFeaturesCol(),
            self._weight_col(), self.getStorageLevel(), self.getDtype(), self.getBlockStorage(),
            self.getCheckpointDir(), self.getKeepCheckpoint(), self.getEngine(),
        )

    def _features_description(self) -> str:
        input_cols = self.input_columns()
        return ", ".join(input_cols) if input_cols else repr(self.getFeaturesCol())

    def _needs_moments(self) -> bool:
        """Whether the fit needs the data's mean and covariance from the conversion (a Bayesian mixture's priors)."""
        return False

    def _searches_sample(self) -> bool:
        return self.getInitMode() == SAMPLE_INIT_MODE and self.getInitialModel() is None

    def _seed(self) -> int:
        return self.getSeed() & 0xFFFFFFFFFFFFFFFF

    def _spec(self, blocks: StoredBlocks, label: str = "") -> FitSpec:
        """The fit this estimator asks for, after checking it against the converted data."""
        p = self._validated()
        k, covariance_type = p["k"], p["covarianceType"]
        initial_model = self.getInitialModel()
        if initial_model is not None and (
            initial_model.n_components != k or initial_model.covariance_type != covariance_type
        ):
            raise InputError(
                f"initialModel has {initial_model.n_components} {initial_model.covariance_type} components but "
                f"k={k} and covarianceType={covariance_type!r}"
            )
        self._check_blocks(blocks, k, initial_model)
        settings = EMSettings(p["maxIter"], p["tol"], p["regCovar"], p["acceleration"], p["maxReseeds"])
        return FitSpec(k, covariance_type, settings, p["initMode"], self._seed(), p["nInit"], p["initSteps"],
                       initial_model, label, p["sampleRestarts"], p["sampleRows"])

    def _check_blocks(self, blocks: StoredBlocks, k: int, initial_model: Mixture | None) -> None:
        check_blocks(blocks, self._features_description(), self.getHandleInvalid(), self._weight_col(), k)
        if initial_model is not None and initial_model.n_features != blocks.n_features:
            raise InputError(
                f"initialModel has {initial_model.n_features} features but the data has {blocks.n_features}"
            )


def check_blocks(blocks: StoredBlocks | Converted, what: str, handle_invalid: str, weight_col: str | None,
                 min_rows: int) -> None:
    """Refuse converted features (``what`` describes them) that cannot be learnt from: ragged rows, invalid rows
    unless skipped (``handle_invalid``), fewer than ``min_rows`` rows, no feature, or no positive weight."""
    if blocks.ragged_rows:
        raise InputError(f"features {what}: rows have different lengths; every row needs the same number of features")
    if blocks.invalid_rows and handle_invalid == "error":
        weight = f" or in weight column {weight_col!r} (null, negative or not finite)" if weight_col else ""
        raise InputError(
            f"{blocks.invalid_rows} rows have null, NaN or infinite values in features {what}{weight}; "
            "drop or impute them, or skip them (handleInvalid='skip', --invalid-rows skip)"
        )
    if blocks.n_rows < min_rows:
        skipped = f" after skipping {blocks.invalid_rows} invalid rows" if blocks.invalid_rows else ""
        raise InputError(f"k={min_rows} components need at least {min_rows} rows; the data has {blocks.n_rows}"
                         f"{skipped}" if min_rows > 1 else f"the data has no rows{skipped}")
    if blocks.n_features < 1:
        raise InputError(f"features {what} are empty: rows need at least one feature")
    if blocks.weight_sum <= 0.0:
        raise InputError(f"weight column {weight_col!r} sums to {blocks.weight_sum}; it must be positive")


class _SharedBlockFits:
    """``fitMultiple``'s iterator when every estimator reads the same input: the first ``next`` converts the blocks,
    fits every model side by side and releases the blocks (also on failure); later calls hand out the models."""

    def __init__(self, dataset: DataFrame, estimators: list[GaussianMixture]):
        self._dataset = dataset
        self._estimators = estimators
        self._next = 0
        self._models: list[GaussianMixtureModel] | None = None
        self._lock = threading.Lock()

    def __iter__(self) -> _SharedBlockFits:
        return self

    def __next__(self) -> tuple[int, GaussianMixtureModel]:
        with self._lock:
            index = self._next
            if index >= len(self._estimators):
                raise StopIteration
            self._next += 1
            if self._models is None:
                try:
                    with open_feature_blocks(self._dataset, self._estimators) as blocks:
                        self._models = fit_on_blocks(self._estimators, blocks)
                except BaseException:
                    self._next = len(self._estimators)
                    raise
            return index, self._models[index]


def open_feature_blocks(dataset: DataFrame, estimators: Sequence[GaussianMixture]) -> StoredBlocks:
    """Check every estimator's params, then convert and store ``dataset``'s features once for all of them, as the
    first one reads them (its columns, storage and engine: they agree on those, ``_input_key``). The conversion keeps
    a sample of the most ``sampleRows`` any of them asks for when one starts by a sample search, drawn with the
    first one's seed; each takes a prefix of it of its own size (``sampling.RowSample.ordered``). The caller
    releases the blocks (a ``with`` block)."""
    for estimator in estimators:
        estimator._validated()
    first = estimators[0]
    sample_rows = max((e.getSampleRows() for e in estimators if e._searches_sample()), default=0)
    features = features_column(dataset, first.getFeaturesCol(), first.input_columns())
    return open_blocks(dataset, features, first._weight_col(), getattr(StorageLevel, first.getStorageLevel()),
                       engine=first.getEngine(), aggregation_depth=first.getAggregationDepth(), dtype=first.getDtype(),
                       block_storage=first.getBlockStorage(), sample_rows=sample_rows,
                       sample_seed=(first._seed(), SAMPLE_STREAM),
                       moments=any(estimator._needs_moments() for estimator in estimators))


def fit_on_blocks(estimators: Sequence[GaussianMixture], blocks: StoredBlocks) -> list[GaussianMixtureModel]:
    """Fit every estimator's model side by side on blocks that are already cached (the caller owns them): one
    pass per step serves every restart of every estimator that is still running. With ``checkpointDir`` (the
    estimators agree on it: it is part of ``_input_key``) the run resumes from the checkpoint it finds there, if that
    was written by the same fit, and writes one after every pass (``sparkgmm.spark.checkpoints``)."""
    several = len(estimators) > 1
    specs = [
        estimator._spec(blocks, f"k={estimator.getK()} {estimator.getCovarianceType()}: " if several else "")
        for estimator in estimators
    ]
    restarts = sum(spec.restarts for spec in specs)
    if blocks.invalid_rows:
        logger.warning("skipped %d rows with null, NaN or infinite values in features %s%s", blocks.invalid_rows,
                       estimators[0]._features_description(),
                       f" or a bad weight in {estimators[0]._weight_col()!r}" if estimators[0]._weight_col() else "")
    logger.info(
        "fitting %d model(s), %d candidate(s) side by side, to %d rows x %d features in %d partitions (%s engine)",
        len(specs), restarts, blocks.n_rows, blocks.n_features, blocks.n_tasks, blocks.engine,
    )
    runs = restart_runs(specs)
    sample = blocks.sample
    checkpoint_dir = estimators[0].getCheckpointDir()
    if checkpoint_dir is None:
        outcomes = fit_side_by_side(specs, blocks.run_pass, runs, sample=sample)
        resumed = 0
    else:
        store = CheckpointStore(blocks.spark, checkpoint_dir)
        key = fit_key(_input_description(estimators[0], blocks), specs, blocks.dtype)
        resumed = store.resume(key, runs)

        def save(passes: int) -> None:
            if any(run.phase != "init" for run in runs):  # a run still initialising would start again anyway
                store.save(key, runs, passes)

        outcomes = fit_side_by_side(specs, blocks.run_pass, runs, save, resumed, sample=sample)
        if not estimators[0].getKeepCheckpoint():
            store.remove()
    return [
        estimator._copyValues(GaussianMixtureModel(outcome.best.mixture, _summary(outcome, spec, blocks, resumed),
                                                   logDensityQuantiles=outcome.best.log_density_quantiles,
                                                   posterior=outcome.best.posterior, prior=spec.prior))
        for estimator, spec, outcome in zip(estimators, specs, outcomes, strict=True)
    ]


def _input_description(estimator: GaussianMixture, blocks: StoredBlocks) -> dict:
    """The input as a checkpoint records it: the columns read, and the rows' count and order-free fingerprint."""
    return {"features": estimator.input_columns() or estimator.getFeaturesCol(), "weight_col": estimator._weight_col(),
            "rows": blocks.n_rows, "skipped_rows": blocks.invalid_rows, "fingerprint": f"{blocks.fingerprint:016x}"}


def _summary(outcome: FitOutcome, spec: FitSpec, blocks: StoredBlocks, resumed: int) -> GaussianMixtureSummary:
    result = outcome.best
    search = outcome.search
    posterior = result.posterior
    return GaussianMixtureSummary(
        sampleRows=0 if search is None else search.sample_rows,
        sampleRestarts=0 if search is None else search.restarts,
        samplePasses=0 if search is None else search.passes,
        sampleSearchSeconds=0.0 if search is None else search.seconds,
        sampleLogLikelihood=None if search is None else search.log_likelihood,
        logLikelihood=result.log_likelihood,
        logLikelihoodHistory=result.log_likelihood_history,
        iterationSeconds=result.iteration_seconds,
        numIter=result.n_iter,
        converged=result.converged,
        clusterSizes=result.cluster_sizes,
        numRows=result.n_samples,
        weightSum=result.weight_sum,
        numParameters=result.mixture.n_parameters,
        numPasses=1 + outcome.passes,  # the conversion, then the shared run's passes
        numSkippedRows=blocks.invalid_rows,
        resumedFromPass=resumed,
        seconds=blocks.seconds + outcome.seconds,
        conversionSeconds=blocks.seconds,
        blockBytes=blocks.block_bytes,
        blockStorage=blocks.block_storage,
        dtype=blocks.dtype,
        numReseeds=result.n_reseeds,
        numExtrapolations=result.n_extrapolations,
        numRejectedSteps=result.n_rejected,
        logDensityQuantiles=result.log_density_quantiles,
        bestRestart=outcome.best_index,
        restarts=tuple(
            {"logLikelihood": r.result.log_likelihood, "numIter": r.result.n_iter, "converged": r.result.converged,
             "numPasses": r.result.n_passes, "initPasses": r.init_passes,
             **({} if r.result.posterior is None else
                {"lowerBound": r.result.lower_bound_history[-1] if r.result.lower_bound_history else None})}
            for r in outcome.restarts
        ),
        weightConcentrationPriorType=None if spec.prior is None else spec.prior.prior_type,
        lowerBoundHistory=result.lower_bound_history,
        effectiveComponents=None if posterior is None else posterior.effective_components(),
        numMerges=result.n_merges,
    )
