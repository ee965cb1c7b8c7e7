"""Online EM: a mixture that remembers the statistics of the rows it has seen and blends new rows into them. Pure
NumPy: never imports pyspark.

An update is one E-step pass over the new rows under the current parameters (the same ``EStep`` request a batch fit
makes, so it runs on any ``PassRunner``: in memory, or over Spark blocks), then the new statistics ``S_new`` are
blended with the remembered ones ``S_seen`` (``SeenStats``, centred on the current means, as the new ones are) as
``S = a * S_seen + S_new``, then one M-step (``sparkgmm.stats.m_step``) gives the new parameters, and ``S`` is
re-centred on the new means and remembered. The discount ``a`` is the update rule's (``UpdateRule``):

- a forgetting rule, as Spark MLlib's StreamingKMeans: ``a = decayFactor`` per batch, or ``decayFactor ** w`` for a
  batch of total weight ``w`` rows (``timeUnit="points"``); ``halfLife`` h sets ``decayFactor = 0.5 ** (1/h)``, so
  that what was seen h batches (or rows) ago counts half. ``decayFactor=1`` forgets nothing: the statistics add up,
  and an update of a mixture that remembers nothing (an effective count of 0) over all the rows is one batch EM step.
- stepwise EM (Liang & Klein 2009, the stochastic approximation of Cappe & Moulines 2009): the normalised statistics
  move a step ``eta_t = (t + 1) ** -stepPower`` towards the new batch's, with ``t`` the batches seen so far (a fit
  counts as one; ``stepPower`` in (0.5, 1], 1 being the running mean over batches). As a discount that is
  ``a = (1 - eta) / eta * w / N_seen``, so the model then stands for ``w / eta`` rows' worth. With ``averageAfter``
  n (Polyak-Ruppert averaging, as Cappe & Moulines 2009 discuss), once the model has seen more than n batches its
  parameters are the running average of the iterates since (weights, means and covariances); the steps go on from
  the latest iterate, which the remembered statistics give back through an M-step (they stay centred on the model's,
  now averaged, means), and the E-step scores the new rows under it. It helps a step that shrinks slower than 1/t
  (stepPower < 1); a re-seed restarts it.

A component left with (almost) no weight is re-seeded at the new rows the model explains worst, as a batch fit does
(``sparkgmm.em.reseed``), and its remembered statistics become those of its new parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .em import DEFAULT_MAX_RESEEDS, collapsed_components, reseed, run_side_by_side, local_passes
from .errors import InputError
from .gaussian import CovarianceError
from .mixture import Mixture
from .passes import EStep, log_density_ceiling
from .sketch import QUANTILE_LEVELS
from .stats import SeenStats, SufficientStats, m_step

TIME_UNITS = ("batches", "points")
DEFAULT_TIME_UNIT = "batches"
DEFAULT_DECAY_FACTOR = 1.0


@dataclass(frozen=True)
class UpdateRule:
    """How new statistics are blended with remembered ones (see the module's docstring). ``half_life`` wins over
    ``decay_factor``; ``step_power`` (stepwise EM) cannot be combined with either."""

    decay_factor: float = DEFAULT_DECAY_FACTOR
    half_life: float | None = None
    time_unit: str = DEFAULT_TIME_UNIT
    step_power: float | None = None
    average_after: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay_factor <= 1.0:
            raise InputError(f"decayFactor={self.decay_factor!r} must be in [0, 1]")
        if self.half_life is not None and not (math.isfinite(self.half_life) and self.half_life > 0.0):
            raise InputError(f"halfLife={self.half_life!r} must be > 0")
        if self.time_unit not in TIME_UNITS:
            raise InputError(f"timeUnit={self.time_unit!r} must be one of {', '.join(TIME_UNITS)}")
        if self.step_power is not None:
            if not 0.5 < self.step_power <= 1.0:
                raise InputError(f"stepPower={self.step_power!r} must be in (0.5, 1]")
            if self.half_life is not None or self.decay_factor != DEFAULT_DECAY_FACTOR:
                raise InputError("stepPower (stepwise EM) and decayFactor or halfLife (forgetting) are two update "
                                 "rules: give one of them")
        if self.average_after is not None:
            if self.step_power is None:
                raise InputError("averageAfter averages the iterates of stepwise EM: give stepPower with it")
            if self.average_after < 0:
                raise InputError(f"averageAfter={self.average_after!r} must be >= 0")

    @property
    def decay(self) -> float:
        """The discount per time unit."""
        return 0.5 ** (1.0 / self.half_life) if self.half_life is not None else self.decay_factor

    def discount(self, seen: SeenStats, batch_weight: float) -> float:
        """``a`` of ``S = a * S_seen + S_new`` for a batch of total weight ``batch_weight``."""
        if self.step_power is None:
            return self.decay ** batch_weight if self.time_unit == "points" else self.decay
        effective = seen.effective_weight
        if effective <= 0.0:
            return 0.0
        eta = (seen.batches + 1) ** -self.step_power
        return (1.0 - eta) / eta * batch_weight / effective

    def describe(self) -> str:
        if self.step_power is not None:
            averaged = "" if self.average_after is None else f", averaged after {self.average_after} batches"
            return f"stepwise EM, stepPower {self.step_power:g}{averaged}"
        if self.half_life is not None:
            return f"half-life {self.half_life:g} {self.time_unit}"
        return f"decay factor {self.decay_factor:g} per {'row' if self.time_unit == 'points' else 'batch'}"


@dataclass(frozen=True)
class UpdateResult:
    """An update: the new ``mixture`` (with the statistics it now remembers, ``mixture.seen``); the new rows' count,
    weight and mean log-likelihood under the mixture before the update (its latest stepwise EM iterate when its
    parameters are an average) and after it (when measured, else None);
    the discount the rule gave the remembered statistics; the components re-seeded; and the quantiles of the new rows'
    log-densities (``QUANTILE_LEVELS``): under the new mixture when the update measured the after, else under the
    mixture that scored them (the one before the update). An updated model flags outliers by them."""

    mixture: Mixture
    n_samples: int
    weight_sum: float
    log_likelihood_before: float
    log_likelihood_after: float | None
    discount: float
    n_reseeds: int
    log_density_quantiles: dict[float, float] | None = None


def remembered(mixture: Mixture, effective_count: float | None, reg_covar: float) -> SeenStats:
    """The statistics an update starts from: the mixture's own, or, for one that has none (saved by an older
    sparkgmm, or built from parameters), those its parameters stand for at ``effective_count`` rows' worth."""
    if mixture.seen is not None:
        return mixture.seen
    if effective_count is None:
        raise InputError("the model holds no statistics of the rows it was fitted on (an older sparkgmm saved it, or "
                         "it was built from parameters): give effectiveCount (--effective-count), the rows' worth of "
                         "data its parameters stand for")
    if not (math.isfinite(effective_count) and effective_count >= 0.0):
        raise InputError(f"effectiveCount={effective_count!r} must be >= 0")
    return SeenStats.of_parameters(mixture.weights, mixture.covariances, mixture.covariance_type,
                                   mixture.n_features, effective_count, reg_covar)


def update_candidate(mixture: Mixture, rule: UpdateRule, reg_covar: float, *, effective_count: float | None = None,
                     max_reseeds: int = DEFAULT_MAX_RESEEDS, measure_after: bool = False, label: str = "online update"
                     ) -> Generator[EStep, SufficientStats, UpdateResult]:
    """One online update of ``mixture`` as a coroutine on the pass protocol (``sparkgmm.em``): it asks for the E-step
    pass over the new rows, then (``measure_after``) for a pass measuring the new mixture on them."""
    seen = remembered(mixture, effective_count, reg_covar)
    k, covariance_type = mixture.n_components, mixture.covariance_type
    worst = min(k, max_reseeds) if k > 1 else 0
    scoring = iterate_of(mixture, seen, reg_covar)  # what the E-step broadcasts: the parameters alone
    if seen.averaged:
        seen = seen.recentred(mixture.means, scoring.means)
    stats = yield EStep(scoring, worst=worst, count_hard=False, description=f"{label}: E-step",
                        sketch_reference=log_density_ceiling(scoring))
    if stats.weight_sum <= 0.0:
        raise InputError("the new rows have no positive weight: there is nothing to learn from")
    discount = rule.discount(seen, stats.weight_sum)
    blended = blend(seen, stats, discount)
    weights, means, covariances = m_step(blended, scoring.means, covariance_type, reg_covar)
    collapsed = collapsed_components(blended, covariances, covariance_type) if worst else np.arange(0)
    moved = 0
    if collapsed.size and stats.worst is not None:
        weights, means, covariances, moved = reseed(weights, means, covariances, covariance_type, collapsed[:worst],
                                                    stats.worst.rows)
    memory = SeenStats(blended.nk, blended.first, blended.second, seen.rows + stats.n_samples,
                       seen.weight + stats.weight_sum, seen.batches + 1).recentred(scoring.means, means)
    if moved:
        memory = _reseeded_memory(memory, weights, covariances, covariance_type, reg_covar)
    if rule.average_after is not None and memory.batches > rule.average_after:
        n = 0 if moved else seen.averaged  # iterates in the model's average so far; a re-seed starts a new one
        averages = [(n * before + now) / (n + 1) for before, now in
                    zip((mixture.weights, mixture.means, mixture.covariances), (weights, means, covariances),
                        strict=True)] if n else [weights, means, covariances]
        memory = dataclasses.replace(memory.recentred(means, averages[1]), averaged=n + 1)
        weights, means, covariances = averages
    try:
        updated = Mixture(weights, means, covariances, covariance_type, seen=memory)
    except CovarianceError as e:
        raise CovarianceError(f"{label}: {e} (regCovar is {reg_covar:g})") from None
    after, quantiles = None, _quantiles(stats)
    if measure_after:
        measuring = dataclasses.replace(updated, seen=None)
        measured = yield EStep(measuring, count_hard=False, description=f"{label}: log-likelihood after",
                               sketch_reference=log_density_ceiling(measuring))
        after, quantiles = measured.mean_log_likelihood, _quantiles(measured)
    return UpdateResult(updated, stats.n_samples, stats.weight_sum, stats.mean_log_likelihood, after, discount, moved,
                        quantiles)


def iterate_of(mixture: Mixture, seen: SeenStats, reg_covar: float) -> Mixture:
    """The parameters the next step starts from: the mixture's own, or, when they are an average of stepwise EM's
    iterates (``seen.averaged``), the latest iterate: the M-step of the remembered statistics (centred on the
    mixture's means)."""
    if not seen.averaged:
        return dataclasses.replace(mixture, seen=None)
    weights, means, covariances = m_step(seen, mixture.means, mixture.covariance_type, reg_covar)
    return Mixture(weights, means, covariances, mixture.covariance_type)


def _quantiles(stats: SufficientStats) -> dict[float, float] | None:
    if stats.log_densities is None:
        return None
    return dict(zip(QUANTILE_LEVELS, map(float, stats.log_densities.quantiles(QUANTILE_LEVELS)), strict=True))


def blend(seen: SeenStats, stats: SufficientStats, discount: float) -> SufficientStats:
    """``stats`` with the remembered statistics added at ``discount``: ``discount * seen + stats``, both centred on the
    same means (those the new rows were scored under)."""
    return dataclasses.replace(stats, nk=discount * seen.nk + stats.nk, first=discount * seen.first + stats.first,
                               second=discount * seen.second + stats.second)


def _reseeded_memory(memory: SeenStats, weights: np.ndarray, covariances: np.ndarray, covariance_type: str,
                     reg_covar: float) -> SeenStats:
    """After a re-seed, every component remembers what its new parameters stand for at the weight the memory had:
    the moved ones start again, and the others' shares shrank to make room."""
    d = memory.first.shape[1]
    fresh = SeenStats.of_parameters(weights, covariances, covariance_type, d, memory.effective_weight, reg_covar)
    return dataclasses.replace(fresh, rows=memory.rows, weight=memory.weight, batches=memory.batches)


def partial_fit(mixture: Mixture, X, sample_weight=None, *, reg_covar: float = 1e-6,
                rule: UpdateRule | None = None, effective_count: float | None = None,
                max_reseeds: int = DEFAULT_MAX_RESEEDS, measure_after: bool = False) -> UpdateResult:
    """One online update of ``mixture`` with the in-memory rows ``X`` (n, d) (and their ``sample_weight``)."""
    from .mixture import as_float_matrix

    X = as_float_matrix(X, mixture.n_features)
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (X.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0.0):
            raise InputError(f"sample_weight must be {X.shape[0]} finite non-negative numbers, one per row")
    if X.shape[0] == 0:
        raise InputError("partial_fit needs at least one row")
    candidate = update_candidate(mixture, rule or UpdateRule(), reg_covar, effective_count=effective_count,
                                 max_reseeds=max_reseeds, measure_after=measure_after)
    return run_side_by_side([candidate], local_passes(X, w))[0].value
