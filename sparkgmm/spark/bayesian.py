"""``BayesianGaussianMixture``: a variational Bayesian Gaussian mixture as a pyspark.ml Estimator, scikit-learn's model
and meaning (``sklearn.mixture.BayesianGaussianMixture``) at Spark scale.

It is ``GaussianMixture`` with priors: the same conversion (which also measures the data's mean and covariance, the
default priors), the same initialisations, restarts in shared passes, checkpoints and float32 blocks; each restart is
a Bayesian run of EM's loop (``sparkgmm.bayesian``, ``sparkgmm.em``). Its model is a ``GaussianMixtureModel`` whose
mixture is the posterior's expected parameters, holding the posterior and the priors beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml.param import Param

from ..bayesian import Prior
from ..candidates import FitSpec
from ..errors import InputError
from ..options import BAYESIAN_DEFAULTS, BAYESIAN_PARAMS, param_defaults, validate_params
from .engine.base import StoredBlocks
from .estimator import GaussianMixture
from .params import declared

__all__ = ["BayesianGaussianMixture"]


class BayesianGaussianMixture(GaussianMixture):
    """Variational Bayesian Gaussian mixture: ``k`` is an upper bound on the components, and the weight prior
    (``weightConcentrationPriorType``: a Dirichlet process by default, or a Dirichlet distribution) switches off those
    the data do not support; ``summary.effectiveComponents`` counts the rest. Priors and defaults as scikit-learn's
    ``BayesianGaussianMixture``: ``weightConcentrationPrior`` 1/k, ``meanPrecisionPrior`` 1, ``meanPrior`` the data's
    mean, ``degreesOfFreedomPrior`` the number of features, ``covariancePrior`` the data's covariance (weights count
    as rows) in the covariance type's shape. ``tol`` applies to the change of the lower bound, the total over the rows
    (scikit-learn's meaning: scale it with the rows). It runs without acceleration and re-seeds. Every other Param is
    ``GaussianMixture``'s.

    Variational inference alone empties unneeded components only slowly on many rows (components sharing a cluster
    drift apart by terms of order 1/rows): every ``mergeEvery`` iterations the fit tries merge moves, keeping a merge
    of components when it raises the lower bound (``sparkgmm.bayesian``); ``mergeEvery=0`` gives scikit-learn's plain
    updates. With ``initMode="sample"`` the start is searched on the conversion's sample: EM restarts screened on a
    prefix, then the best ones polished by variational inference with merges on the whole sample."""

    weightConcentrationPriorType: Param[str] = declared("weightConcentrationPriorType", BAYESIAN_PARAMS)
    weightConcentrationPrior: Param[float] = declared("weightConcentrationPrior", BAYESIAN_PARAMS)
    meanPrecisionPrior: Param[float] = declared("meanPrecisionPrior", BAYESIAN_PARAMS)
    meanPrior: Param[list[float]] = declared("meanPrior", BAYESIAN_PARAMS)
    degreesOfFreedomPrior: Param[float] = declared("degreesOfFreedomPrior", BAYESIAN_PARAMS)
    covariancePrior: Param[Any] = declared("covariancePrior", BAYESIAN_PARAMS)
    mergeEvery: Param[int] = declared("mergeEvery", BAYESIAN_PARAMS)

    @keyword_only
    def __init__(
        self, *, featuresCol: str = "features", inputCols: list[str] | None = None, predictionCol: str = "prediction",
        probabilityCol: str = "probability", logDensityCol: str = "logDensity", k: int = 2,
        covarianceType: str = "full", maxIter: int = 100, tol: float = 1e-3, regCovar: float = 1e-6,
        seed: int | None = None, initMode: str = "sample", initialModel: Any = None, initSteps: int = 2,
        nInit: int = 1, acceleration: str = "none", weightCol: str | None = None,
        aggregationDepth: int = 2, storageLevel: str = "MEMORY_AND_DISK_DESER", dtype: str = "float64",
        blockStorage: str = "local-files", handleInvalid: str = "error", checkpointDir: str | None = None,
        keepCheckpoint: bool = False, outlierQuantile: float | None = None, outlierCol: str = "isOutlier",
        engine: str = "auto", sampleRows: int = 131072, sampleRestarts: int = 16,
        maxReseeds: int = 0, weightConcentrationPriorType: str = "dirichlet_process",
        weightConcentrationPrior: float | None = None, meanPrecisionPrior: float | None = None,
        meanPrior: list[float] | None = None, degreesOfFreedomPrior: float | None = None, covariancePrior: Any = None,
        mergeEvery: int = 10,
    ):
        given = self._input_kwargs
        super().__init__()  # GaussianMixture's own defaults; @keyword_only has just set _input_kwargs to none
        self._setDefault(**param_defaults(BAYESIAN_PARAMS), **BAYESIAN_DEFAULTS)
        self._input_kwargs = given
        self.setParams(**given)

    @keyword_only
    def setParams(
        self, *, featuresCol: str = "features", inputCols: list[str] | None = None, predictionCol: str = "prediction",
        probabilityCol: str = "probability", logDensityCol: str = "logDensity", k: int = 2,
        covarianceType: str = "full", maxIter: int = 100, tol: float = 1e-3, regCovar: float = 1e-6,
        seed: int | None = None, initMode: str = "sample", initialModel: Any = None, initSteps: int = 2,
        nInit: int = 1, acceleration: str = "none", weightCol: str | None = None,
        aggregationDepth: int = 2, storageLevel: str = "MEMORY_AND_DISK_DESER", dtype: str = "float64",
        blockStorage: str = "local-files", handleInvalid: str = "error", checkpointDir: str | None = None,
        keepCheckpoint: bool = False, outlierQuantile: float | None = None, outlierCol: str = "isOutlier",
        engine: str = "auto", sampleRows: int = 131072, sampleRestarts: int = 16,
        maxReseeds: int = 0, weightConcentrationPriorType: str = "dirichlet_process",
        weightConcentrationPrior: float | None = None, meanPrecisionPrior: float | None = None,
        meanPrior: list[float] | None = None, degreesOfFreedomPrior: float | None = None, covariancePrior: Any = None,
        mergeEvery: int = 10,
    ) -> BayesianGaussianMixture:
        kwargs = {key: value for key, value in self._input_kwargs.items() if value is not None}
        return self._set(**kwargs)

    def setWeightConcentrationPriorType(self, value: str) -> BayesianGaussianMixture:
        return self._set(weightConcentrationPriorType=value)

    def setWeightConcentrationPrior(self, value: float) -> BayesianGaussianMixture:
        return self._set(weightConcentrationPrior=value)

    def setMeanPrecisionPrior(self, value: float) -> BayesianGaussianMixture:
        return self._set(meanPrecisionPrior=value)

    def setMeanPrior(self, value: list[float]) -> BayesianGaussianMixture:
        return self._set(meanPrior=value)

    def setDegreesOfFreedomPrior(self, value: float) -> BayesianGaussianMixture:
        return self._set(degreesOfFreedomPrior=value)

    def setCovariancePrior(self, value: Any) -> BayesianGaussianMixture:
        return self._set(covariancePrior=value)

    def setMergeEvery(self, value: int) -> BayesianGaussianMixture:
        return self._set(mergeEvery=value)

    def _prior_values(self) -> dict[str, Any]:
        return {name: self.getOrDefault(name) if self.isDefined(name) else None for name in BAYESIAN_PARAMS}

    def _validated(self) -> dict[str, Any]:
        values = {**super()._validated(), **validate_params(self._prior_values(), BAYESIAN_PARAMS)}
        if values["acceleration"] != "none":
            raise InputError(f"acceleration={values['acceleration']!r}: a BayesianGaussianMixture runs without "
                             "acceleration; leave it at 'none'")
        if values["maxReseeds"]:
            raise InputError(f"maxReseeds={values['maxReseeds']!r}: a BayesianGaussianMixture never re-seeds (its "
                             "prior empties the components the data do not need); leave it at 0")
        return values

    def _needs_moments(self) -> bool:
        values = self._prior_values()
        return values["meanPrior"] is None or values["covariancePrior"] is None

    def _spec(self, blocks: StoredBlocks, label: str = "") -> FitSpec:
        spec = super()._spec(blocks, label)
        p = self._validated()
        settings = dataclasses.replace(spec.settings, merge_every=p["mergeEvery"])
        return dataclasses.replace(spec, settings=settings,
                                   prior=self._prior(p, blocks, spec.n_components, spec.covariance_type))

    @staticmethod
    def _prior(p: dict[str, Any], blocks: StoredBlocks, k: int, covariance_type: str) -> Prior:
        """The priors of the validated params ``p``, the data's mean and covariance (from the conversion) standing in
        for those not given."""
        d = blocks.n_features
        mean, covariance = p["meanPrior"], p["covariancePrior"]
        if mean is not None and len(mean) != d:
            raise InputError(f"meanPrior has {len(mean)} values but the data has {d} features")
        data_mean = data_covariance = None
        if mean is None or covariance is None:
            if blocks.moments is None:
                raise RuntimeError("the blocks were converted without the data's moments")
            data_mean = blocks.data_mean
            if covariance is None:
                if blocks.moments.weight_sum <= 1.0:
                    raise InputError(
                        "the default covariancePrior is the data's covariance, which needs rows weighing more than 1 "
                        f"in all (weights count as rows); they weigh {blocks.moments.weight_sum:g}: set "
                        "covariancePrior")
                data_covariance = blocks.data_covariance
        centre = data_mean if mean is None else np.asarray(mean, dtype=np.float64)
        if centre is None:
            raise RuntimeError("the blocks were converted without the data's mean")
        return Prior.default(
            k, covariance_type, centre, data_covariance,
            p["weightConcentrationPriorType"], p["weightConcentrationPrior"], p["meanPrecisionPrior"],
            None if mean is None else np.asarray(mean, dtype=np.float64), p["degreesOfFreedomPrior"],
            None if covariance is None else np.asarray(covariance, dtype=np.float64))
