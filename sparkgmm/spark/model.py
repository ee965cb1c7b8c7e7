"""``GaussianMixtureModel``: a fitted mixture as a pyspark.ml Model, and the summary of the fit that made it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.ml import Model
from pyspark.sql import DataFrame

from ..errors import InputError
from ..mixture import Mixture, information_criteria
from ..persistence import load_mixture, read_json, write_model_dir
from .blocks import features_column
from .params import GaussianMixtureParams
from .scoring import score_dataframe

_SPARK_PARAMS_FILE = "spark_params.json"
_SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class GaussianMixtureSummary:
    """What the fit did. ``logLikelihood`` is the mean per-sample log-likelihood of the training data under the
    returned parameters; ``logLikelihoodHistory[t]`` that after ``t`` iterations (index 0: the initial parameters).

    ``numPasses`` counts every pass over the cached blocks that the fit waited for: the conversion, the
    initialisation, every E-step (rejected extrapolations included) and the final measuring pass; passes shared with
    other fits (restarts, ``fitMultiple``, ``select_model``) count once for each. ``restarts`` has one entry per
    restart (``logLikelihood``, ``numIter``, ``converged``, ``numPasses`` of its EM loop); ``bestRestart`` is the
    index of the one returned. ``numReseeds`` counts collapsed components moved, ``numExtrapolations`` and
    ``numRejectedSteps`` the accelerated steps taken and rejected, all in the returned restart. ``numSkippedRows``
    counts the rows left out as invalid (``handleInvalid="skip"``); ``resumedFromPass`` is the pass of the checkpoint
    the fit resumed from (0: it started afresh; the counts and history include the passes before it). ``seconds`` is the
    wall time from the start of the conversion to the end of this fit's last restart, ``conversionSeconds`` the part
    spent converting the input to blocks; ``blockBytes`` is the size of those blocks, held as ``blockStorage`` says
    in ``dtype``."""

    logLikelihood: float
    logLikelihoodHistory: tuple[float, ...]
    iterationSeconds: tuple[float, ...]
    numIter: int
    converged: bool
    clusterSizes: tuple[int, ...]
    numRows: int
    weightSum: float
    numParameters: int
    numPasses: int = 0
    numReseeds: int = 0
    numExtrapolations: int = 0
    numRejectedSteps: int = 0
    bestRestart: int = 0
    restarts: tuple[dict, ...] = ()
    seconds: float = 0.0
    conversionSeconds: float = 0.0
    blockBytes: int = 0
    blockStorage: str = ""
    dtype: str = "float64"
    numSkippedRows: int = 0
    resumedFromPass: int = 0

    @property
    def bic(self) -> float:
        """BIC of the training data (weights count as rows); lower is better."""
        return information_criteria(self.logLikelihood, self.weightSum, self.numParameters)[0]

    @property
    def aic(self) -> float:
        return information_criteria(self.logLikelihood, self.weightSum, self.numParameters)[1]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bic": self.bic, "aic": self.aic}



class GaussianMixtureModel(Model, GaussianMixtureParams):
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

    def check_input_cols(self) -> None:
        """Named input columns must be as many as the model's features (a Vector column is checked row by row)."""
        input_cols = self._input_cols()
        if input_cols and len(input_cols) != self.mixture.n_features:
            raise InputError(f"the model has {self.mixture.n_features} features but {len(input_cols)} columns "
                             f"were named: {', '.join(input_cols)}")

    def _transform(self, dataset: DataFrame) -> DataFrame:
        self.check_input_cols()
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
