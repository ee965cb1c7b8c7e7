"""The EM loop, written once, as a coroutine that asks for passes over the data; and the scheduler that runs many such
coroutines side by side so that one pass serves them all. Pure Python/NumPy: never imports pyspark.

Where the rows live is the caller's business: it passes a ``PassRunner``, a function that reads every row once and
answers a list of requests (``sparkgmm.passes``). The Spark layer passes a broadcast + map-partitions + tree-reduce;
``local_passes`` passes a loop over an in-memory array. A fit's candidates (restarts, several k or covariance types)
are coroutines: each yields the request it needs next and receives its merged answer, so every pass reads each block
once for all live candidates, and a candidate that has finished costs nothing more.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .acceleration import Squarem
from .bayesian import Posterior, Prior, lower_bound, merge_candidates, merge_move, variational_m_step
from .gaussian import CovarianceError, invalid_components
from .mixture import Mixture
from .passes import EStep, Partial, Request, chunks, log_density_ceiling, pack_block, run_local_pass
from .sketch import QUANTILE_LEVELS
from .stats import SeenStats, SufficientStats, m_step

logger = logging.getLogger("sparkgmm")

ACCELERATIONS = ("none", "squarem")
# SQUAREM is the default: in scripts/quality_benchmark.py it never ended at a lower log-likelihood than plain EM and
# never needed more than 1.1x its passes, and needed 2-5x fewer on slowly converging mixtures.
DEFAULT_ACCELERATION = "squarem"

# run_pass(requests, description) -> one merged answer per request, from one read of every row. ``description``
# names the pass (Spark shows it as the job's name).
PassRunner = Callable[[Sequence[Request], str], list[Partial]]
# A candidate: yields requests, receives their answers, returns its result.
Candidate = Generator[Request, Any, Any]


# Re-seeds a fit may make at most, by default (``maxReseeds``; 0 = never). A component is re-seeded only when it
# carries less than one row's worth of weight, or regCovar cannot keep its covariance positive definite: on the
# quality benchmark's sets and scikit-learn's digits such collapses are rare, and a few re-seeds recover them.
DEFAULT_MAX_RESEEDS = 8
# A component with less than this many rows' worth of weight carries (almost) none: it is re-seeded.
COLLAPSED_ROWS = 1.0


@dataclass(frozen=True)
class EMSettings:
    max_iter: int
    tol: float
    reg_covar: float
    acceleration: str = "none"
    max_reseeds: int = DEFAULT_MAX_RESEEDS
    merge_every: int = 0  # a Bayesian run tries merge moves every this many iterations (0: never)


@dataclass(frozen=True)
class EMResult:
    """A finished fit. ``log_likelihood_history[t]`` is the mean per-sample log-likelihood of the parameters after
    ``t`` iterations (index 0: the initial parameters), so it has ``n_iter + 1`` entries and ends with
    ``log_likelihood``, that of the returned ``mixture``. With acceleration, an iteration is an E-step and M-step
    whose point was kept; ``n_passes`` counts every E-step pass of the loop (rejected extrapolations and the final
    pass included). ``log_density_quantiles`` maps each level of ``sparkgmm.sketch.QUANTILE_LEVELS`` to that
    quantile of the training rows' log-densities under ``mixture`` (weighted), from the final pass's sketch: within
    ``sparkgmm.sketch.ALPHA`` of the exact one, relative to its distance below the mixture's log-density ceiling.

    A Bayesian fit (``sparkgmm.bayesian``) also returns its ``posterior`` (``mixture`` is the posterior's) and its
    ``lower_bound_history``, the lower bound after each iteration (``n_iter`` entries, as scikit-learn's
    ``lower_bounds_``); its passes measure the bound, not the likelihood, so its ``log_likelihood_history`` holds two
    entries: the initial mixture's mean log-likelihood and the returned mixture's."""

    mixture: Mixture
    log_likelihood: float
    log_likelihood_history: tuple[float, ...]
    iteration_seconds: tuple[float, ...]
    n_iter: int
    converged: bool
    cluster_sizes: tuple[int, ...]
    n_samples: int
    weight_sum: float
    n_passes: int = 0
    n_reseeds: int = 0
    n_extrapolations: int = 0
    n_rejected: int = 0
    n_merges: int = 0
    log_density_quantiles: dict[float, float] = field(default_factory=dict)
    posterior: Posterior | None = None
    lower_bound_history: tuple[float, ...] = ()

    @property
    def objective(self) -> float:
        """What restarts are compared by: the log-likelihood, or a Bayesian fit's last lower bound (scikit-learn's
        ``lower_bound_``; -inf when it made no iteration)."""
        if self.posterior is None:
            return self.log_likelihood
        return self.lower_bound_history[-1] if self.lower_bound_history else -math.inf


def collapsed_components(stats: SufficientStats, covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Indices of the components that carry (almost) no weight: less than COLLAPSED_ROWS rows' worth, or so few
    rows that their new covariance (``regCovar`` included) is not positive definite. A component of a few rows
    whose covariance regCovar keeps valid is not collapsed: an optimum may have one (scikit-learn's does on digits)."""
    if stats.nk.shape[0] < 2 or stats.weight_sum <= 0.0:
        return np.arange(0)
    effective_rows = stats.nk * (stats.n_samples / stats.weight_sum)
    empty = effective_rows < COLLAPSED_ROWS
    empty[invalid_components(covariances, covariance_type)] = True
    return np.flatnonzero(empty)


def reseed(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str,
           collapsed: np.ndarray, worst_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Move each collapsed component onto one of the rows the model explains worst (``worst_rows``, worst first),
    with weight ``1/k`` and the weighted mean covariance of the other components; the other weights shrink to
    make room. A row that already is a mean is skipped. Returns the new arrays and how many components moved."""
    weights, means, covariances = weights.copy(), means.copy(), covariances.copy()
    k = means.shape[0]
    keep = np.setdiff1d(np.arange(k), collapsed)
    moved_list: list[int] = []
    rows = iter(worst_rows)
    for j in collapsed:
        row = next((r for r in rows if not np.any(np.all(means == r, axis=1))), None)
        if row is None:
            break
        means[j] = row
        moved_list.append(j)
    if not moved_list or keep.size == 0:
        return weights, means, covariances, 0
    moved = np.asarray(moved_list)
    if covariance_type != "tied":
        share = weights[keep] / weights[keep].sum()
        covariances[moved] = np.tensordot(share, covariances[keep], axes=1)
    weights[moved] = 0.0
    weights *= (1.0 - moved.size / k) / weights.sum()
    weights[moved] = 1.0 / k
    return weights, means, covariances, int(moved.size)


@dataclass
class EMState:
    """Where one EM run stands between two passes: everything its next steps depend on, so that a run rebuilt from
    it (``em_candidate(..., state=)``) goes on exactly as the original would have. ``number`` is the iteration whose
    pass comes next; ``final`` says the next pass is the last one, which measures ``current``. ``cycle`` holds the
    points of the current SQUAREM cycle and ``fallback`` the plain EM step while ``current`` is an extrapolated
    point; ``best`` is the log-likelihood of the last point kept, and ``compare`` is False right after a re-seed.
    A Bayesian run's ``current`` is a ``Posterior`` once its first pass has turned the initial mixture into one,
    whose mean log-likelihood it keeps in ``start_log_likelihood``; its ``history`` holds lower bounds."""

    current: Mixture | Posterior
    number: int = 1
    history: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cycle: list[Mixture] = field(default_factory=list)
    fallback: Mixture | None = None
    best: float = -math.inf
    compare: bool = True
    reseeds: int = 0
    passes: int = 0
    converged: bool = False
    final: bool = False
    squarem: Squarem | None = None
    start_log_likelihood: float | None = None
    merges: int = 0
    merge_due: bool = False

    @classmethod
    def start(cls, initial: Mixture, settings: EMSettings) -> EMState:
        return cls(initial, squarem=Squarem() if settings.acceleration == "squarem" else None)


def _mixture(current: Mixture | Posterior) -> Mixture:
    return current.mixture if isinstance(current, Posterior) else current


def em_candidate(initial: Mixture, settings: EMSettings, label: str = "", state: EMState | None = None,
                 quiet: bool = False, prior: Prior | None = None) -> Generator[EStep, SufficientStats, EMResult]:
    """EM from ``initial``, one E-step pass per iteration, as a coroutine (see the module's docstring).

    As in scikit-learn, the pass of iteration ``t`` measures the log-likelihood of the parameters of iteration
    ``t - 1`` and the M-step follows; the loop stops when that changes by less than ``tol``, or after ``max_iter``
    passes. One last pass measures the returned parameters and counts the cluster sizes.

    With ``acceleration="squarem"``, every second point is extrapolated from the last two EM steps
    (``sparkgmm.acceleration``); an extrapolated point whose log-likelihood is below that of the last point kept is
    rejected and replaced by the plain EM step, so the recorded history never goes down (re-seeds aside).

    Convergence is tested on the change that an EM step made, never on the jump to an extrapolated point, so ``tol``
    means the same with and without acceleration.

    A component that collapses (``collapsed_components``) is re-seeded (``reseed``): at most
    ``settings.max_reseeds`` re-seeds per run, each moving one component.

    ``quiet`` leaves out the per-iteration log lines and the warning of a run that did not converge (the sample
    search runs many short runs on purpose).

    The run keeps all it knows in ``state`` (an ``EMState``, new unless given), updated in place before every pass it
    asks for: a checkpoint of it taken between passes resumes the run exactly (``initial`` is then not used).

    With a ``prior`` the run is a Bayesian mixture's variational inference (``sparkgmm.bayesian``), through the same
    loop: its first pass is a plain E-step under ``initial`` whose responsibilities the variational M-step turns into
    the starting posterior (scikit-learn's ``_initialize``); each iteration's pass is the variational E-step, and the
    M-step's lower bound is what ``tol`` is compared with (the total over the rows, as scikit-learn's). There is no
    re-seeding (a Dirichlet-process prior empties the components the data do not need, on purpose) and no
    acceleration. With ``settings.merge_every``, every that many iterations, and before the run may stop by ``tol``,
    the pass also measures what merging groups of components would do to the bound (``sparkgmm.bayesian.merge_move``),
    and a merge that raises it is kept; with 0 the run is scikit-learn's.
    """
    if prior is not None and (settings.acceleration != "none" or settings.max_reseeds):
        raise ValueError("a Bayesian mixture runs without acceleration and re-seeds")
    if state is None:
        state = EMState.start(initial, settings)
    k = state.current.means.shape[0]
    covariance_type = state.current.covariance_type
    last = time.perf_counter()
    if prior is not None and not isinstance(state.current, Posterior):
        start = yield EStep(state.current, description="variational start")
        state.passes += 1
        state.start_log_likelihood = start.mean_log_likelihood
        state.current = variational_m_step(start, state.current.means, prior, settings.reg_covar)
        last = time.perf_counter()
    while prior is not None and not state.final:
        believed = state.current
        if not isinstance(believed, Posterior):
            raise RuntimeError("a Bayesian run without its posterior")
        if state.number > settings.max_iter:
            state.final = True
            break
        proposals = None
        if settings.merge_every and (state.merge_due or state.number % settings.merge_every == 0):
            proposals = merge_candidates(believed, 2 * k)
        stats = yield EStep(believed.mixture, log_weights=believed.estep_log_weights(), entropy=True,
                            description=f"variational iteration {state.number}",
                            merge_groups=None if proposals is None else proposals.groups)
        state.passes += 1
        state.number += 1
        try:
            updated = variational_m_step(stats, believed.means, prior, settings.reg_covar)
        except CovarianceError as e:
            raise CovarianceError(f"{label}variational iteration {state.number - 1}: {e} (regCovar is "
                                  f"{settings.reg_covar:g})") from None
        bound = lower_bound(updated, stats.entropy)
        merged = None if proposals is None else merge_move(stats, believed.means, prior, settings.reg_covar, proposals,
                                                           bound)
        state.merge_due = False
        if merged is not None:
            updated, bound, count = merged
            state.merges += count
            if not quiet:
                logger.info("%smerged %d component(s) into others: the lower bound rose", label, count)
        change = bound - state.history[-1] if state.history else math.inf
        state.history.append(bound)
        now = time.perf_counter()
        state.seconds.append(now - last)
        last = now
        if not quiet:
            logger.info("%siteration %d: lower bound %.10g, change %.3g, %.3f s", label, len(state.history), bound,
                        change, state.seconds[-1])
        state.current = updated
        if merged is None and abs(change) < settings.tol:
            if settings.merge_every and proposals is None:
                state.merge_due = True  # look for a merge before stopping
            else:
                state.converged = state.final = True
    while not state.final:
        number = state.number
        if number > settings.max_iter:
            state.final = True
            break
        allowed = settings.max_reseeds - state.reseeds if k > 1 else 0
        worst = min(k, max(allowed, 0))  # rows to re-seed at, while re-seeds are still allowed
        current = state.current
        if not isinstance(current, Mixture):
            raise RuntimeError("an EM run without its mixture")
        stats = yield EStep(current, worst=worst, description=f"EM iteration {number}")
        state.passes += 1
        state.number += 1
        log_likelihood = stats.mean_log_likelihood
        fallback = state.fallback
        extrapolated = fallback is not None
        if fallback is not None:
            if log_likelihood < state.best:
                if state.squarem is None:
                    raise RuntimeError("an extrapolated point in a run without SQUAREM")
                state.squarem.rejected()
                state.current, state.fallback = fallback, None
                continue
            state.fallback = None
        weights, means, covariances = m_step(stats, current.means, covariance_type, settings.reg_covar)
        moved = 0
        collapsed = collapsed_components(stats, covariances, covariance_type) if worst else np.arange(0)
        if collapsed.size and stats.worst is not None:
            weights, means, covariances, moved = reseed(weights, means, covariances, covariance_type,
                                                        collapsed[:worst], stats.worst.rows)
            state.reseeds += moved
            if moved:
                logger.log(logging.DEBUG if quiet else logging.INFO,
                           "%sre-seeded %d collapsed component(s) at the rows the model explains worst", label, moved)
        try:
            following = Mixture(weights, means, covariances, covariance_type)
        except CovarianceError as e:
            raise CovarianceError(f"{label}EM iteration {len(state.history) + 1}: {e} (regCovar is "
                                  f"{settings.reg_covar:g})") from None
        history = state.history
        change = log_likelihood - history[-1] if history and state.compare else math.inf
        history.append(log_likelihood)
        now = time.perf_counter()
        state.seconds.append(now - last)
        last = now
        if not quiet:
            logger.info("%siteration %d: log-likelihood %.10g, change %.3g, %.3f s", label, len(history),
                        log_likelihood, change, state.seconds[-1])
        state.best, state.compare = log_likelihood, True
        if abs(change) < settings.tol and not extrapolated:  # the change of an EM step, as plain EM tests it
            state.converged = state.final = True
            state.current = following
            break
        if moved:
            state.cycle, state.best, state.compare = [], -math.inf, False
        elif state.squarem is not None:
            state.cycle.append(current)
            if len(state.cycle) == 2:
                cycle, state.cycle = state.cycle, []
                jump = state.squarem.extrapolate(cycle[0], cycle[1], following) if number < settings.max_iter else None
                if jump is not None:
                    state.fallback, following = following, jump
        state.current = following
    if not state.converged and settings.tol > 0.0 and settings.max_iter > 0 and not quiet:
        logger.warning("%s%s did not converge in %d iterations (tol %g): raise maxIter or tol", label,
                       "EM" if prior is None else "variational inference", settings.max_iter, settings.tol)
    mixture = _mixture(state.current)
    final = yield EStep(mixture, count_hard=True, description="final log-likelihood and cluster sizes",
                        sketch_reference=log_density_ceiling(mixture))
    if final.log_densities is None:
        raise RuntimeError("the final pass gave no log-density sketch, though it asked for one")
    if prior is None:
        history = [*state.history, final.mean_log_likelihood]
        # the final pass's statistics, taken under the returned parameters, are what the model remembers of the rows
        # (sparkgmm.online updates it from them)
        mixture = dataclasses.replace(mixture, seen=SeenStats.of_pass(final))
    else:
        if state.start_log_likelihood is None:
            raise RuntimeError("a Bayesian run without its start's log-likelihood")
        history = [state.start_log_likelihood, final.mean_log_likelihood]
    squarem = state.squarem
    fitted = state.current if isinstance(state.current, Posterior) else None
    return EMResult(
        mixture=mixture,
        log_likelihood=history[-1],
        log_likelihood_history=tuple(history),
        iteration_seconds=tuple(state.seconds),
        n_iter=len(state.history),
        converged=state.converged,
        cluster_sizes=tuple(int(c) for c in final.hard_counts),
        n_samples=final.n_samples,
        weight_sum=final.weight_sum,
        n_passes=state.passes + 1,
        n_reseeds=state.reseeds,
        n_extrapolations=0 if squarem is None else squarem.extrapolations,
        n_rejected=0 if squarem is None else squarem.rejections,
        n_merges=state.merges,
        log_density_quantiles=dict(zip(QUANTILE_LEVELS, map(float, final.log_densities.quantiles(QUANTILE_LEVELS)),
                                       strict=True)),
        posterior=fitted,
        lower_bound_history=() if fitted is None else tuple(state.history),
    )


@dataclass(frozen=True)
class Finished:
    """A candidate's return value, the number of passes the run had made when it returned, and when
    (``time.perf_counter()``)."""

    value: Any
    passes: int
    at: float


def pass_name(requests: Sequence[Request]) -> str:
    names: dict[str, int] = {}
    for request in requests:
        names[request.description] = names.get(request.description, 0) + 1
    return "; ".join(name if count == 1 else f"{name} x{count}" for name, count in names.items())


def run_side_by_side(candidates: Sequence[Candidate], run_pass: PassRunner,
                     after_pass: Callable[[int], None] | None = None, passes: int = 0) -> list[Finished]:
    """Drive every candidate to its end; each pass answers the pending request of every live candidate.

    ``after_pass(passes)`` is called after each pass, once every candidate has taken its answer and stands at its
    next request (or has finished): the moment to checkpoint them. ``passes`` starts the count (a resumed run).
    A candidate that raises stops the run: the exception propagates (the others are closed).
    """
    results: list[Finished | None] = [None] * len(candidates)
    pending: dict[int, Request] = {}

    def advance(i: int, answer: Any, first: bool = False) -> None:
        try:
            pending[i] = next(candidates[i]) if first else candidates[i].send(answer)
        except StopIteration as stop:
            pending.pop(i, None)
            results[i] = Finished(stop.value, passes, time.perf_counter())

    try:
        for i in range(len(candidates)):
            advance(i, None, first=True)
        while pending:
            live = sorted(pending)
            requests = [pending[i] for i in live]
            answers = run_pass(requests, pass_name(requests))
            passes += 1
            for i, answer in zip(live, answers, strict=True):
                advance(i, answer)
            if after_pass is not None:
                after_pass(passes)
    finally:
        for candidate in candidates:
            candidate.close()
    return results  # type: ignore[return-value]


def run_em(initial: Mixture, run_pass: PassRunner, *, max_iter: int, tol: float, reg_covar: float,
           acceleration: str = "none", max_reseeds: int = DEFAULT_MAX_RESEEDS, prior: Prior | None = None,
           merge_every: int = 0) -> EMResult:
    """One EM fit from ``initial`` (see ``em_candidate``); with ``prior``, a Bayesian mixture's variational fit
    (then without acceleration or re-seeds, with merge moves every ``merge_every`` iterations)."""
    if prior is not None:
        acceleration, max_reseeds = "none", 0
    settings = EMSettings(max_iter, tol, reg_covar, acceleration, max_reseeds, merge_every)
    return run_side_by_side([em_candidate(initial, settings, prior=prior)], run_pass)[0].value


def local_passes(X: np.ndarray, sample_weight: np.ndarray | None = None, block_rows: int = 1 << 15,
                 dtype: str = "float64") -> PassRunner:
    """A ``PassRunner`` over an in-memory array (n, d), packed into blocks of ``block_rows`` rows in ``dtype``: for
    tests, and fits that fit in one process."""
    X = np.asarray(X, dtype=np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    blocks = [pack_block(X[rows], None if w is None else w[rows], dtype)
              for rows in chunks(X.shape[0], block_rows)]

    def run_pass(requests: Sequence[Request], _description: str) -> list[Partial]:
        return run_local_pass(blocks, X.shape[1], requests)

    return run_pass
