"""``GaussianMixtureSummary``: what a fit did, and the one schema of how a fit is reported.

``REPORTED`` names, once, each of the summary's attributes in ``metrics.json`` (and so in the report, which reads
those names) and marks the ones ``select_model`` tables for every candidate. ``to_metrics`` writes by it,
``from_metrics`` reads by it, ``to_dict`` / ``from_dict`` are the model directory's summary block (the attribute
names themselves). Pure Python: the Spark model (``sparkgmm.spark.model``) holds a summary, the report reads one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

from .mixture import information_criteria
from .persistence import ModelFormatError


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
    in ``dtype``. ``logDensityQuantiles`` maps quantile levels to those quantiles of the training rows' log-densities
    (weighted), from the final pass's sketch (``sparkgmm.sketch``); keys are floats again after a JSON round trip.

    With ``initMode="sample"``, ``sampleRows`` rows of the conversion's sample were searched in memory on the driver
    with ``sampleRestarts`` restarts in ``sampleSearchSeconds`` (passes over the sample: ``samplePasses``; the time and
    passes are shared by the fits searched side by side), and the best start reached ``sampleLogLikelihood`` (mean
    per sample row) there; all are 0 (the log-likelihood None) for other starts. ``fullDataPasses`` counts the passes
    over all the rows after the conversion: ``numPasses - 1``.

    A Bayesian mixture's fit (``sparkgmm.bayesian``) says its ``weightConcentrationPriorType`` (None for EM), its
    ``lowerBoundHistory`` (the variational lower bound after each of the ``numIter`` iterations, the total over the
    rows as scikit-learn's ``lower_bounds_``; the last is what its restarts were compared by) and
    ``effectiveComponents``, the components whose expected weight is above ``sparkgmm.bayesian.EFFECTIVE_WEIGHT``, and
    ``numMerges``, the components its merge moves merged into others.
    Its passes measure the bound, not the likelihood, so its ``logLikelihoodHistory`` has two entries: the initial
    mixture's mean log-likelihood and the returned mixture's; in ``metrics.json`` its history entries hold the lower
    bound and its change."""

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
    logDensityQuantiles: dict[float, float] = field(default_factory=dict)
    sampleRows: int = 0
    sampleRestarts: int = 0
    samplePasses: int = 0
    sampleSearchSeconds: float = 0.0
    sampleLogLikelihood: float | None = None
    weightConcentrationPriorType: str | None = None
    lowerBoundHistory: tuple[float, ...] = ()
    effectiveComponents: int | None = None
    numMerges: int = 0

    @property
    def lowerBound(self) -> float | None:
        """A Bayesian fit's last lower bound (None for EM, or when it made no iteration)."""
        return self.lowerBoundHistory[-1] if self.lowerBoundHistory else None

    @property
    def fullDataPasses(self) -> int:
        return max(self.numPasses - 1, 0)

    def __post_init__(self) -> None:
        quantiles = {float(level): float(value) for level, value in (self.logDensityQuantiles or {}).items()}
        object.__setattr__(self, "logDensityQuantiles", dict(sorted(quantiles.items())))

    @property
    def bic(self) -> float:
        """BIC of the training data (weights count as rows); lower is better."""
        return information_criteria(self.logLikelihood, self.weightSum, self.numParameters)[0]

    @property
    def aic(self) -> float:
        return information_criteria(self.logLikelihood, self.weightSum, self.numParameters)[1]

    def to_dict(self) -> dict[str, Any]:
        """The model directory's summary block: every field by its own name, plus ``bic`` and ``aic``."""
        return {**asdict(self), "bic": self.bic, "aic": self.aic}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any], where: str) -> GaussianMixtureSummary:
        """A summary block read back from JSON (lists are tuples again; ``bic``, ``aic`` and names this version does
        not know are left out); ``ModelFormatError`` naming ``where`` if it lacks a field."""
        try:
            return cls(**{name: _python_value(value) for name, value in saved.items() if name in _FIELDS})
        except TypeError as e:
            raise ModelFormatError(f"model summary in {where!r} is damaged: {e}") from None

    def to_metrics(self) -> dict[str, Any]:
        """The fit as ``metrics.json`` reports it (``REPORTED``'s names and order), JSON-ready."""
        history: list[dict[str, Any]]
        if self.weightConcentrationPriorType is None:
            history = [{"iteration": t, "log_likelihood": self.logLikelihoodHistory[t],
                        "change": self.logLikelihoodHistory[t] - self.logLikelihoodHistory[t - 1],
                        "seconds": self.iterationSeconds[t - 1]} for t in range(1, self.numIter + 1)]
        else:
            bounds = self.lowerBoundHistory
            history = [{"iteration": t, "lower_bound": bounds[t - 1],
                        "change": None if t == 1 else bounds[t - 1] - bounds[t - 2],
                        "seconds": self.iterationSeconds[t - 1]} for t in range(1, self.numIter + 1)]
        per_iteration = {"initial_log_likelihood": self.logLikelihoodHistory[0], "history": history}
        return {entry.key: per_iteration[entry.key] if entry.key in per_iteration else
                _json_value(getattr(self, entry.attribute)) for entry in REPORTED}

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> GaussianMixtureSummary:
        """The summary that ``to_metrics`` wrote ``metrics`` from (keys it does not know are ignored)."""
        values = {entry.attribute: _python_value(metrics[entry.key]) for entry in REPORTED
                  if entry.attribute in _FIELDS and entry.key not in _PER_ITERATION}
        history = metrics["history"]
        if values.get("weightConcentrationPriorType") is None:
            values["logLikelihoodHistory"] = (metrics["initial_log_likelihood"],
                                              *(h["log_likelihood"] for h in history))
        else:
            values["logLikelihoodHistory"] = (metrics["initial_log_likelihood"], metrics["log_likelihood"])
        values["iterationSeconds"] = tuple(h["seconds"] for h in history)
        return cls(**values)


_FIELDS = frozenset(f.name for f in fields(GaussianMixtureSummary))


class Reported(NamedTuple):
    """One summary attribute in ``metrics.json``: its name there, the attribute (a field, or a property that is
    written and not read back), and whether ``select_model``'s candidates table it too."""

    key: str
    attribute: str
    candidate: bool = False


# Every field of the summary, in metrics.json's order (a test checks that none is missing). Tuples are written as
# lists, the quantiles with their levels as "%g" text; the log-likelihood history and iteration seconds as
# initial_log_likelihood plus one "history" entry per iteration (_PER_ITERATION).
REPORTED: tuple[Reported, ...] = (
    Reported("log_likelihood", "logLikelihood", candidate=True),
    Reported("bic", "bic", candidate=True),
    Reported("aic", "aic", candidate=True),
    Reported("n_parameters", "numParameters", candidate=True),
    Reported("n_iter", "numIter", candidate=True),
    Reported("converged", "converged", candidate=True),
    Reported("passes", "numPasses", candidate=True),
    Reported("seconds", "seconds", candidate=True),
    Reported("dtype", "dtype"),
    Reported("block_storage", "blockStorage"),
    Reported("block_bytes", "blockBytes"),
    Reported("conversion_seconds", "conversionSeconds"),
    Reported("full_data_passes", "fullDataPasses"),
    Reported("sample_rows", "sampleRows"),
    Reported("sample_restarts", "sampleRestarts"),
    Reported("sample_passes", "samplePasses"),
    Reported("sample_search_seconds", "sampleSearchSeconds"),
    Reported("sample_log_likelihood", "sampleLogLikelihood"),
    Reported("n_skipped_rows", "numSkippedRows"),
    Reported("resumed_from_pass", "resumedFromPass"),
    Reported("n_reseeds", "numReseeds"),
    Reported("n_extrapolations", "numExtrapolations"),
    Reported("n_rejected_steps", "numRejectedSteps"),
    Reported("best_restart", "bestRestart"),
    Reported("restarts", "restarts"),
    Reported("initial_log_likelihood", "logLikelihoodHistory"),
    Reported("history", "iterationSeconds"),
    Reported("prior", "weightConcentrationPriorType"),
    Reported("lower_bounds", "lowerBoundHistory"),
    Reported("effective_components", "effectiveComponents"),
    Reported("n_merges", "numMerges"),
    Reported("cluster_sizes", "clusterSizes"),
    Reported("log_density_quantiles", "logDensityQuantiles"),
    Reported("n_rows", "numRows"),
    Reported("weight_sum", "weightSum"),
)
_PER_ITERATION = ("initial_log_likelihood", "history")

# The summary's columns of select_model's candidates table (after k and covariance_type), in order.
CANDIDATE_METRICS: tuple[str, ...] = tuple(entry.key for entry in REPORTED if entry.candidate)


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):  # the log-density quantiles: JSON keys are text
        return {f"{level:g}": quantile for level, quantile in value.items()}
    return value


def _python_value(value: Any) -> Any:
    """A JSON value as the summary holds it: lists are tuples (quantile levels become floats in ``__post_init__``)."""
    return tuple(value) if isinstance(value, list) else value
