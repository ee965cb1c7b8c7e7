"""The EM loop, written once, as a coroutine that asks for passes over the data; and the scheduler that runs many such
coroutines side by side so that one pass serves them all. Pure Python/NumPy: never imports pyspark.

Where the rows live is the caller's business: it passes a ``PassRunner``, a function that reads every row once and
answers a list of requests (``sparkgmm.passes``). The Spark layer passes a broadcast + map-partitions + tree-reduce;
``local_passes`` passes a loop over an in-memory array. A fit's candidates (restarts, several k or covariance types)
are coroutines: each yields the request it needs next and receives its merged answer, so every pass reads each block
once for all live candidates, and a candidate that has finished costs nothing more.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Generator, Sequence

import numpy as np

from .acceleration import Squarem
from .gaussian import CovarianceError
from .mixture import Mixture
from .passes import EStep, Partial, Request, chunks, pack_block, run_local_pass
from .stats import SufficientStats, m_step

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


@dataclass(frozen=True)
class EMSettings:
    max_iter: int
    tol: float
    reg_covar: float
    acceleration: str = "none"


@dataclass(frozen=True)
class EMResult:
    """A finished fit. ``log_likelihood_history[t]`` is the mean per-sample log-likelihood of the parameters after
    ``t`` iterations (index 0: the initial parameters), so it has ``n_iter + 1`` entries and ends with
    ``log_likelihood``, that of the returned ``mixture``. With acceleration, an iteration is an E-step and M-step
    whose point was kept; ``n_passes`` counts every E-step pass of the loop (rejected extrapolations and the final
    pass included)."""

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


def collapsed_components(stats: SufficientStats, n_features: int) -> np.ndarray:
    """Indices of the components that explain fewer than ``n_features + 1`` rows' worth of weight."""
    if stats.nk.shape[0] < 2 or stats.weight_sum <= 0.0:
        return np.arange(0)
    effective_rows = stats.nk * (stats.n_samples / stats.weight_sum)
    return np.flatnonzero(effective_rows < n_features + 1)


def reseed(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray, covariance_type: str,
           collapsed: np.ndarray, worst_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Move each collapsed component onto one of the rows the model explains worst (``worst_rows``, worst first),
    with weight ``1/k`` and the weighted mean covariance of the other components; the other weights shrink to
    make room. A row that already is a mean is skipped. Returns the new arrays and how many components moved."""
    weights, means, covariances = weights.copy(), means.copy(), covariances.copy()
    k = means.shape[0]
    keep = np.setdiff1d(np.arange(k), collapsed)
    moved = []
    rows = iter(worst_rows)
    for j in collapsed:
        row = next((r for r in rows if not np.any(np.all(means == r, axis=1))), None)
        if row is None:
            break
        means[j] = row
        moved.append(j)
    if not moved or keep.size == 0:
        return weights, means, covariances, 0
    moved = np.asarray(moved)
    if covariance_type != "tied":
        share = weights[keep] / weights[keep].sum()
        covariances[moved] = np.tensordot(share, covariances[keep], axes=1)
    weights[moved] = 0.0
    weights *= (1.0 - moved.size / k) / weights.sum()
    weights[moved] = 1.0 / k
    return weights, means, covariances, int(moved.size)


def em_candidate(initial: Mixture, settings: EMSettings, label: str = "") -> Generator[EStep, SufficientStats, EMResult]:
    """EM from ``initial``, one E-step pass per iteration, as a coroutine (see the module's docstring).

    As in scikit-learn, the pass of iteration ``t`` measures the log-likelihood of the parameters of iteration
    ``t - 1`` and the M-step follows; the loop stops when that changes by less than ``tol``, or after ``max_iter``
    passes. One last pass measures the returned parameters and counts the cluster sizes.

    With ``acceleration="squarem"``, every second point is extrapolated from the last two EM steps
    (``sparkgmm.acceleration``); an extrapolated point whose log-likelihood is below that of the last point kept is
    rejected and replaced by the plain EM step, so the recorded history never goes down (re-seeds aside).

    Convergence is tested on the change that an EM step made, never on the jump to an extrapolated point, so ``tol``
    means the same with and without acceleration.

    A component that collapses (``collapsed_components``) is re-seeded (``reseed``), at most ``k`` times per fit.
    """
    k, d = initial.means.shape
    covariance_type = initial.covariance_type
    squarem = Squarem() if settings.acceleration == "squarem" else None
    history: list[float] = []
    seconds: list[float] = []
    current = initial
    cycle: list[Mixture] = []  # evaluated points of the current SQUAREM cycle
    fallback: Mixture | None = None  # the plain EM step, while ``current`` is an extrapolated point
    best = -math.inf
    compare = True  # False right after a re-seed: that jump is not a step towards convergence
    reseeds = passes = 0
    converged = False
    last = time.perf_counter()
    for number in range(1, settings.max_iter + 1):
        worst = k if k > 1 and reseeds < k else 0  # rows to re-seed at, while re-seeds are still allowed
        stats = yield EStep(current, worst=worst, description=f"EM iteration {number}")
        passes += 1
        log_likelihood = stats.mean_log_likelihood
        extrapolated = fallback is not None
        if extrapolated:
            if log_likelihood < best:
                squarem.rejected()
                current, fallback = fallback, None
                continue
            fallback = None
        weights, means, covariances = m_step(stats, current.means, covariance_type, settings.reg_covar)
        collapsed = collapsed_components(stats, d)
        moved = 0
        if collapsed.size and reseeds < k and stats.worst is not None:
            weights, means, covariances, moved = reseed(weights, means, covariances, covariance_type, collapsed,
                                                        stats.worst.rows)
            reseeds += moved
            if moved:
                logger.info("%sre-seeded %d collapsed component(s) at the rows the model explains worst", label,
                            moved)
        try:
            following = Mixture(weights, means, covariances, covariance_type)
        except CovarianceError as e:
            raise CovarianceError(f"{label}EM iteration {len(history) + 1}: {e} (regCovar is "
                                  f"{settings.reg_covar:g})") from None
        change = log_likelihood - history[-1] if history and compare else math.inf
        history.append(log_likelihood)
        now = time.perf_counter()
        seconds.append(now - last)
        last = now
        logger.info("%siteration %d: log-likelihood %.10g, change %.3g, %.3f s", label, len(history),
                    log_likelihood, change, seconds[-1])
        best, compare = log_likelihood, True
        if abs(change) < settings.tol and not extrapolated:  # the change of an EM step, as plain EM tests it
            converged = True
            current = following
            break
        if moved:
            cycle, best, compare = [], -math.inf, False
        elif squarem is not None:
            cycle.append(current)
            if len(cycle) == 2:
                jump = squarem.extrapolate(cycle[0], cycle[1], following) if number < settings.max_iter else None
                cycle = []
                if jump is not None:
                    fallback, following = following, jump
        current = following
    if not converged and settings.tol > 0.0 and settings.max_iter > 0:
        logger.warning("%sEM did not converge in %d iterations (tol %g): raise maxIter or tol", label,
                       settings.max_iter, settings.tol)
    final = yield EStep(current, count_hard=True, description="final log-likelihood and cluster sizes")
    history.append(final.mean_log_likelihood)
    return EMResult(
        mixture=current,
        log_likelihood=history[-1],
        log_likelihood_history=tuple(history),
        iteration_seconds=tuple(seconds),
        n_iter=len(history) - 1,
        converged=converged,
        cluster_sizes=tuple(int(c) for c in final.hard_counts),
        n_samples=final.n_samples,
        weight_sum=final.weight_sum,
        n_passes=passes + 1,
        n_reseeds=reseeds,
        n_extrapolations=0 if squarem is None else squarem.extrapolations,
        n_rejected=0 if squarem is None else squarem.rejections,
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


def run_side_by_side(candidates: Sequence[Candidate], run_pass: PassRunner) -> list[Finished]:
    """Drive every candidate to its end; each pass answers the pending request of every live candidate.

    A candidate that raises stops the run: the exception propagates (the others are closed).
    """
    results: list[Finished | None] = [None] * len(candidates)
    pending: dict[int, Request] = {}
    passes = 0

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
            for i, answer in zip(live, answers):
                advance(i, answer)
    finally:
        for candidate in candidates:
            candidate.close()
    return results  # type: ignore[return-value]


def run_em(initial: Mixture, run_pass: PassRunner, *, max_iter: int, tol: float, reg_covar: float,
           acceleration: str = "none") -> EMResult:
    """One EM fit from ``initial`` (see ``em_candidate``)."""
    settings = EMSettings(max_iter, tol, reg_covar, acceleration)
    return run_side_by_side([em_candidate(initial, settings)], run_pass)[0].value


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
