"""``GaussianMixtureModel``: a fitted mixture as a pyspark.ml Model (MLWritable, MLReadable), holding the summary of
the fit that made it (``sparkgmm.summary``, which says how a fit is reported)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pyspark.ml import Model
from pyspark.ml.util import MLReadable, MLWritable
from pyspark.sql import DataFrame

from ..bayesian import Posterior, Prior, to_sklearn
from ..errors import InputError
from ..mixture import Mixture
from ..sketch import threshold_at
from ..summary import GaussianMixtureSummary
from .params import GaussianMixtureParams, OnlineParams
from .readwrite import DirectoryWriter, ModelReader, model_writer
from .scoring import score_dataframe


def _checked_quantiles(quantiles: Any) -> dict[float, float] | None:
    if quantiles is None:
        return None
    try:
        checked = {float(level): float(value) for level, value in dict(quantiles).items()}
    except (TypeError, ValueError):
        raise InputError(f"logDensityQuantiles must map levels to log-densities; got {quantiles!r}") from None
    if not all(0.0 <= level <= 1.0 and not math.isnan(value) for level, value in checked.items()):
        raise InputError(f"logDensityQuantiles must have levels in [0, 1] and numbers as values; got {checked!r}")
    return checked


class GaussianMixtureModel(Model, GaussianMixtureParams, OnlineParams, MLWritable, MLReadable["GaussianMixtureModel"]):
    """A fitted mixture: ``transform`` adds the prediction, probability (Vector) and log-density columns.
    ``logDensityQuantiles`` ({level: log-density}) are quantiles of the training rows' log-densities, when the fit
    measured them. ``write().save(uri)`` / ``load(uri)`` (any Hadoop URI) keep all of it, summary included.

    A ``BayesianGaussianMixture``'s model also holds its variational ``posterior`` and its ``prior``
    (``sparkgmm.bayesian``); its ``mixture`` is the posterior's expected weights, means and covariances, which score
    the rows as any model's do.

    ``update(df)`` learns from new rows online (``sparkgmm.online``): a fitted model remembers the statistics of the
    rows it has seen (``mixture.seen``), and the update blends those of the new rows in by the rule its Params set
    (``decayFactor``, ``halfLife`` and ``timeUnit`` as MLlib's StreamingKMeans, or ``stepPower`` for stepwise EM,
    with ``averageAfter`` to average its iterates).
    ``sparkgmm.spark.streaming.train_on`` does it for every micro-batch of a stream."""

    def __init__(self, mixture: Mixture, summary: GaussianMixtureSummary | None = None,
                 logDensityQuantiles: dict[float, float] | None = None, posterior: Posterior | None = None,
                 prior: Prior | None = None):
        super().__init__()
        if (posterior is None) != (prior is None):
            raise InputError("a Bayesian mixture's model needs both its posterior and its prior")
        if posterior is not None and posterior.mixture is not mixture and not (
                np.allclose(posterior.mixture.weights, mixture.weights, rtol=1e-12, atol=1e-15)
                and np.array_equal(posterior.means, mixture.means)
                and np.array_equal(posterior.covariances, mixture.covariances)):
            raise InputError("the posterior's expected parameters are not the model's mixture")
        self.mixture = mixture
        self._summary = summary
        self._log_density_quantiles = _checked_quantiles(logDensityQuantiles)
        self.posterior = posterior
        self.prior = prior

    def to_sklearn(self, **params):
        """This model as a fitted scikit-learn mixture: a ``BayesianGaussianMixture`` for a Bayesian mixture's model
        (``sparkgmm.bayesian.to_sklearn``), else a ``GaussianMixture`` (``Mixture.to_sklearn``)."""
        if self.posterior is not None and self.prior is not None:
            return to_sklearn(self.posterior, self.prior, **params)
        return self.mixture.to_sklearn(**params)

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
    def logDensityQuantiles(self) -> dict[float, float] | None:
        return None if self._log_density_quantiles is None else dict(self._log_density_quantiles)

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    @property
    def summary(self) -> GaussianMixtureSummary:
        if self._summary is None:
            raise RuntimeError("this model has no training summary")
        return self._summary

    def check_input_cols(self) -> None:
        """Named input columns must be as many as the model's features (a Vector column is checked row by row)."""
        input_cols = self.input_columns()
        if input_cols and len(input_cols) != self.mixture.n_features:
            raise InputError(f"the model has {self.mixture.n_features} features but {len(input_cols)} columns "
                             f"were named: {', '.join(input_cols)}")

    def check_output_cols(self, dataset: DataFrame) -> None:
        """``transform`` adds its columns and never replaces one, as MLlib's models do."""
        outlier = (self.outlierCol,) if self.getOutlierQuantile() is not None else ()
        for param in (self.predictionCol, self.probabilityCol, self.logDensityCol, *outlier):
            name = self.getOrDefault(param)
            if name in dataset.columns:
                raise InputError(f"output column {name!r} already exists in the DataFrame: drop or rename it, or set "
                                 f"{param.name} to another name")

    def outlier_threshold(self, level: float) -> float:
        """The log-density below which a row is an outlier at quantile ``level`` of the training rows' log-densities
        (``sparkgmm.sketch.threshold_at``)."""
        if not self._log_density_quantiles:
            raise InputError(
                "this model holds no training log-density quantiles (it was built from a Mixture or saved by an older "
                "sparkgmm), so it cannot flag outliers: refit it, or leave outlierQuantile / --outlier-quantile unset")
        return threshold_at(self._log_density_quantiles, level)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        self.check_input_cols()
        self.check_output_cols(dataset)
        level = self._validated()["outlierQuantile"]
        return score_dataframe(
            dataset, self.getFeaturesCol(), self.input_columns(), self.mixture, self.getPredictionCol(),
            self.getProbabilityCol(), self.getLogDensityCol(),
            outlier_col=None if level is None else self.getOutlierCol(),
            outlier_threshold=None if level is None else self.outlier_threshold(level),
        )

    def update(self, dataset: DataFrame) -> GaussianMixtureModel:
        """A new model: this one updated with the rows of ``dataset`` (one E-step pass over them, their statistics
        blended with those this model remembers, one M-step; ``sparkgmm.spark.online.update_model`` also returns what
        it measured). The new model keeps these Params and has no training summary; its logDensityQuantiles are those of
        the new rows' log-densities under this model (the rows it learnt from last)."""
        from .online import update_model  # the online module builds models of this class

        return update_model(self, dataset).model

    def write(self) -> DirectoryWriter:
        """A pyspark.ml ``MLWriter``: ``write().overwrite().save(uri)`` for any Hadoop URI, under Spark Connect too."""
        return model_writer(self)

    @classmethod
    def read(cls) -> ModelReader:
        return ModelReader(cls)

    def save(self, path: str, overwrite: bool = False) -> None:
        """``write().save(path)``, or ``write().overwrite().save(path)`` with ``overwrite``."""
        writer = self.write()
        (writer.overwrite() if overwrite else writer).save(path)

    def __repr__(self) -> str:
        return f"GaussianMixtureModel({self.mixture!r})"
