"""E-step sufficient statistics, their associative merge, and the M-step. Pure NumPy: never imports pyspark.

One pass over a block of rows under the current parameters (weights ``pi``, means ``mu``) produces, with ``r_ij`` the
responsibility of component j for row i and ``w_i`` the row's sample weight:

- ``nk[j]      = sum_i w_i r_ij``
- ``first[j]   = sum_i w_i r_ij (x_i - mu_j)``                   (centred on the current means)
- ``second[j]  = sum_i w_i r_ij (x_i - mu_j)(x_i - mu_j)^T``     (full/tied: (k, d, d); diag/spherical: its diagonal)
- ``log_likelihood = sum_i w_i log p(x_i)``

All accumulators are float64 and centred on the *same* means for every block, so adding them is exact algebra:
a tree-reduce over any partitioning equals one pass over all the data (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from .gaussian import log_gaussian_prob

# scikit-learn adds 10 * eps to every nk so that an empty component gives finite parameters; we do the same so that
# fits from the same initial parameters agree to rounding.
NK_EPS = 10.0 * np.finfo(np.float64).eps

# Rows handled at once inside a block: the (k, rows, d) scratch array stays around 8 MiB, cache-friendly.
SCRATCH_DOUBLES = 1 << 20


@dataclass(frozen=True, eq=False)
class SufficientStats:
    """What one pass over some rows contributes to the M-step; ``merge`` is associative and commutative."""

    n_samples: int
    weight_sum: float
    log_likelihood: float
    nk: np.ndarray
    first: np.ndarray
    second: np.ndarray
    hard_counts: np.ndarray

    @classmethod
    def zeros(cls, n_components: int, n_features: int, covariance_type: str) -> "SufficientStats":
        k, d = n_components, n_features
        second_shape = (k, d, d) if covariance_type in ("full", "tied") else (k, d)
        return cls(0, 0.0, 0.0, np.zeros(k), np.zeros((k, d)), np.zeros(second_shape), np.zeros(k, dtype=np.int64))

    def merge(self, other: "SufficientStats") -> "SufficientStats":
        return SufficientStats(
            self.n_samples + other.n_samples,
            self.weight_sum + other.weight_sum,
            self.log_likelihood + other.log_likelihood,
            self.nk + other.nk,
            self.first + other.first,
            self.second + other.second,
            self.hard_counts + other.hard_counts,
        )

    @property
    def mean_log_likelihood(self) -> float:
        """Weighted mean per-sample log-likelihood (the quantity whose change is compared with ``tol``)."""
        if self.weight_sum <= 0.0:
            raise ValueError("no rows with positive weight were seen: cannot compute a log-likelihood")
        return self.log_likelihood / self.weight_sum


def merge_stats(a: SufficientStats, b: SufficientStats) -> SufficientStats:
    """Module-level merge, convenient as a reduce function."""
    return a.merge(b)


def estimate_log_resp(
    X: np.ndarray, log_weights: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str,
    centred_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``log p(x)`` (n,) and log-responsibilities (n, k), in log space throughout."""
    weighted = log_gaussian_prob(X, means, prec_chol, covariance_type, centred_out)
    weighted += log_weights
    log_norm = logsumexp(weighted, axis=1)
    weighted -= log_norm[:, None]
    return log_norm, weighted


def stats_from_resp(
    centred: np.ndarray, resp: np.ndarray, sample_weight: np.ndarray | None, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, first, second)`` from rows centred on each mean (``centred``: (k, n, d)) and responsibilities (n, k)."""
    wresp = resp if sample_weight is None else resp * sample_weight[:, None]
    k = resp.shape[1]
    nk = wresp.sum(axis=0)
    # first[j] = sum_i wresp[i, j] * centred[j, i, :]
    first = (wresp.T[:, None, :] @ centred)[:, 0, :]
    if covariance_type in ("full", "tied"):
        second = np.empty((k, centred.shape[2], centred.shape[2]))
        for j in range(k):
            weighted_rows = centred[j] * wresp[:, j : j + 1]
            np.matmul(weighted_rows.T, centred[j], out=second[j])
    else:
        second = (wresp.T[:, None, :] @ (centred * centred))[:, 0, :]
    return nk, first, second


def accumulate(
    X: np.ndarray,
    sample_weight: np.ndarray | None,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
) -> SufficientStats:
    """One E-step over the rows of ``X`` (n, d), returning their sufficient statistics (float64 throughout)."""
    k, d = means.shape
    n = X.shape[0]
    stats = SufficientStats.zeros(k, d, covariance_type)
    if n == 0:
        return stats
    log_weights = np.log(weights)
    chunk = max(1, SCRATCH_DOUBLES // (k * d))
    scratch = np.empty((k, min(chunk, n), d))
    nk, first, second = stats.nk, stats.first, stats.second
    log_likelihood = 0.0
    hard_counts = stats.hard_counts
    for start in range(0, n, chunk):
        rows = X[start : start + chunk]
        sw = None if sample_weight is None else sample_weight[start : start + chunk]
        centred = scratch[:, : rows.shape[0], :]
        log_norm, log_resp = estimate_log_resp(rows, log_weights, means, prec_chol, covariance_type, centred)
        np.exp(log_resp, out=log_resp)
        c_nk, c_first, c_second = stats_from_resp(centred, log_resp, sw, covariance_type)
        nk += c_nk
        first += c_first
        second += c_second
        log_likelihood += float(log_norm.sum() if sw is None else log_norm @ sw)
        hard_counts += np.bincount(log_resp.argmax(axis=1), minlength=k)
    weight_sum = float(n if sample_weight is None else sample_weight.sum())
    return SufficientStats(n, weight_sum, log_likelihood, nk, first, second, hard_counts)


def m_step(
    stats: SufficientStats, means: np.ndarray, covariance_type: str, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New ``(weights, means, covariances)`` from statistics centred on ``means``, as scikit-learn's M-step.

    With ``delta = new_mean - old_mean`` the scatter about the new mean is
    ``second - first delta^T - delta first^T + nk delta delta^T``, so no uncentred moment is ever formed.
    ``reg_covar`` is added to the diagonal.
    """
    nk_true = stats.nk
    nk = nk_true + NK_EPS
    new_means = (stats.first + nk_true[:, None] * means) / nk[:, None]
    delta = new_means - means
    weights = nk / nk.sum()
    first = stats.first
    if covariance_type in ("full", "tied"):
        cross = first[:, :, None] * delta[:, None, :]
        scatter = (
            stats.second - cross - cross.transpose(0, 2, 1) + nk_true[:, None, None] * delta[:, :, None] * delta[:, None, :]
        )
        if covariance_type == "full":
            covariances = scatter / nk[:, None, None]
            d = means.shape[1]
            covariances[:, np.arange(d), np.arange(d)] += reg_covar
        else:
            covariances = scatter.sum(axis=0) / nk.sum()
            covariances = 0.5 * (covariances + covariances.T)
            covariances[np.diag_indices_from(covariances)] += reg_covar
    else:
        scatter = stats.second - 2.0 * first * delta + nk_true[:, None] * delta**2
        covariances = scatter / nk[:, None] + reg_covar
        if covariance_type == "spherical":
            covariances = covariances.mean(axis=1)
    return weights, new_means, covariances
