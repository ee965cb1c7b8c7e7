"""``select_model``: fit every (k, covariance type) candidate side by side in shared passes and keep the one with the
lowest information criterion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from ..errors import InputError
from ..options import BAYESIAN_PARAMS, SELECT_ARGUMENTS, check_value
from ..summary import CANDIDATE_METRICS
from .bayesian import BayesianGaussianMixture
from .estimator import GaussianMixture, fit_on_blocks, open_feature_blocks
from .model import GaussianMixtureModel

# The fields of one row of ``ModelSelection.candidates``, in order: the mixture's shape, then the summary's metrics
# that the schema marks as candidate columns.
CANDIDATE_FIELDS = ("k", "covariance_type", *CANDIDATE_METRICS)


@dataclass(frozen=True)
class ModelSelection:
    """Every candidate's outcome (``candidates``: one dict per candidate with CANDIDATE_FIELDS; ``seconds`` and
    ``passes`` are those of the shared run when the candidate finished), the criterion, the index of the winner
    and its model; ``models`` holds every candidate's model in the order of ``candidates``."""

    criterion: str
    candidates: tuple[dict[str, Any], ...]
    best: int
    models: tuple[GaussianMixtureModel, ...]

    @property
    def bestModel(self) -> GaussianMixtureModel:
        return self.models[self.best]


def candidate_row(model: GaussianMixtureModel, seconds: float | None = None) -> dict[str, Any]:
    """One candidate's outcome, as ``select_model`` tables it (``seconds``: the fit's, if not the summary's)."""
    metrics = model.summary.to_metrics()
    if seconds is not None:
        metrics["seconds"] = seconds
    return {"k": model.mixture.n_components, "covariance_type": model.mixture.covariance_type,
            **{name: metrics[name] for name in CANDIDATE_METRICS}}


def select_model(dataset: DataFrame, k: Sequence[int], covarianceTypes: Sequence[str] = ("full",),
                 criterion: str = "bic", **params: Any) -> ModelSelection:
    """Fit one mixture per ``(k, covariance type)`` on one conversion of ``dataset``, all side by side (each pass
    reads every block once for every live candidate and restart), and pick the lowest ``criterion`` (``bic`` or
    ``aic``; the first candidate wins a tie). ``params`` are any other ``GaussianMixture`` params (``nInit``,
    ``acceleration``, ``maxIter``, ``seed``, ``inputCols``, ``weightCol``, ...); with any of
    ``BayesianGaussianMixture``'s own (``weightConcentrationPriorType``, ...) every candidate is a Bayesian mixture."""
    ks, types = tuple(int(value) for value in k), tuple(covarianceTypes)
    for name, value in (("k", ks), ("covarianceTypes", types), ("criterion", criterion)):
        check_value(SELECT_ARGUMENTS[name], name, value)
    for name in ("k", "covarianceType", "initialModel"):
        if name in params:
            raise InputError(f"select_model sets {name} itself; leave it out of the params")
    bayesian = any(name in BAYESIAN_PARAMS for name in params)
    estimator = (BayesianGaussianMixture if bayesian else GaussianMixture)(**params)
    grid = [(covariance_type, n) for covariance_type in types for n in ks]
    estimators = [estimator.copy({estimator.k: n, estimator.covarianceType: t}) for t, n in grid]
    with open_feature_blocks(dataset, estimators) as blocks:
        models = fit_on_blocks(estimators, blocks)
    rows = tuple(candidate_row(model) for model in models)
    best = min(range(len(rows)), key=lambda i: (rows[i][criterion], i))
    return ModelSelection(criterion, rows, best, tuple(models))
