"""The EM loop, written once. Where the data lives is the caller's business: it passes an ``expectation`` function
that runs one E-step over all rows under the given mixture and returns the merged ``SufficientStats``. The Spark
layer passes a broadcast + map-partitions + tree-reduce; ``fit_local`` passes a pass over an in-memory array.
Pure Python/NumPy: never imports pyspark.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .gaussian import CovarianceError
from .mixture import Mixture
from .stats import SufficientStats, accumulate, m_step

logger = logging.getLogger("sparkgmm")

# expectation(mixture, description, count_hard) -> the statistics of one E-step over all rows under ``mixture``;
# ``description`` names the pass (Spark shows it as the job's name), ``count_hard`` asks for the cluster sizes.
Expectation = Callable[[Mixture, str, bool], SufficientStats]


@dataclass(frozen=True)
class EMResult:
    """A finished fit. ``log_likelihood_history[t]`` is the mean per-sample log-likelihood of the parameters after
    ``t`` iterations (index 0: the initial parameters), so it has ``n_iter + 1`` entries and ends with
    ``log_likelihood``, that of the returned ``mixture``."""

    mixture: Mixture
    log_likelihood: float
    log_likelihood_history: tuple[float, ...]
    iteration_seconds: tuple[float, ...]
    n_iter: int
    converged: bool
    cluster_sizes: tuple[int, ...]
    n_samples: int
    weight_sum: float


def run_em(initial: Mixture, expectation: Expectation, *, max_iter: int, tol: float, reg_covar: float) -> EMResult:
    """Iterate E-step + M-step until the change of the mean per-sample log-likelihood is below ``tol``.

    As in scikit-learn, iteration ``t`` runs the E-step under the parameters of iteration ``t - 1`` (so it measures
    their log-likelihood), then the M-step; it stops after iteration ``t`` when
    ``|ll(theta_{t-1}) - ll(theta_{t-2})| < tol``. One last E-step then measures the returned parameters.
    """
    mixture = initial
    history: list[float] = []
    seconds: list[float] = []
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        started = time.perf_counter()
        stats = expectation(mixture, f"EM iteration {n_iter}", False)
        log_likelihood = stats.mean_log_likelihood
        weights, means, covariances = m_step(stats, mixture.means, mixture.covariance_type, reg_covar)
        try:
            mixture = Mixture(weights, means, covariances, mixture.covariance_type)
        except CovarianceError as e:
            raise CovarianceError(f"EM iteration {n_iter}: {e} (regCovar is {reg_covar:g})") from None
        change = log_likelihood - history[-1] if history else float("inf")
        history.append(log_likelihood)
        seconds.append(time.perf_counter() - started)
        logger.info(
            "iteration %d: log-likelihood %.10g, change %.3g, %.3f s", n_iter, log_likelihood, change, seconds[-1]
        )
        if abs(change) < tol:
            converged = True
            break
    final = expectation(mixture, "final log-likelihood and cluster sizes", True)
    history.append(final.mean_log_likelihood)
    return EMResult(
        mixture=mixture,
        log_likelihood=history[-1],
        log_likelihood_history=tuple(history),
        iteration_seconds=tuple(seconds),
        n_iter=n_iter,
        converged=converged,
        cluster_sizes=tuple(int(c) for c in final.hard_counts),
        n_samples=final.n_samples,
        weight_sum=final.weight_sum,
    )


def local_expectation(X: np.ndarray, sample_weight: np.ndarray | None = None) -> Expectation:
    """An ``expectation`` over an in-memory array (for tests, and for the initial fit on a driver-side sample)."""

    XT = np.ascontiguousarray(np.asarray(X, dtype=np.float64).T)

    def expectation(mixture: Mixture, _description: str, count_hard: bool) -> SufficientStats:
        return accumulate(
            XT, sample_weight, mixture.weights, mixture.means, mixture.precisions_cholesky, mixture.covariance_type,
            count_hard,
        )

    return expectation
