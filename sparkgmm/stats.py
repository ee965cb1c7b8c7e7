"""E-step sufficient statistics, their associative merge, and the M-step. Pure NumPy: never imports pyspark.

One pass over a block of rows under the current parameters (weights ``pi``, means ``mu``) produces, with ``r_ij`` the
responsibility of component j for row i and ``w_i`` the row's sample weight:

- ``nk[j]      = sum_i w_i r_ij``
- ``first[j]   = sum_i w_i r_ij (x_i - mu_j)``                   (centred on the current means)
- ``second[j]  = sum_i w_i r_ij (x_i - mu_j)(x_i - mu_j)^T``     (full/tied: (k, d, d); diag/spherical: its diagonal)
- ``log_likelihood = sum_i w_i log p(x_i)``
- optionally ``worst``: the few rows of positive weight with the lowest ``log p(x_i)`` (for re-seeding components)
- optionally ``log_densities``: a bounded quantile sketch of the ``log p(x_i)``, weighted by ``w_i``
  (``sparkgmm.sketch``)
- optionally ``entropy = sum_i w_i sum_j r_ij log r_ij`` (minus the responsibilities' entropy), which the variational
  lower bound of a Bayesian mixture needs (``sparkgmm.bayesian``); and for its merge moves, the same per component
  (``component_entropy[j] = sum_i w_i r_ij log r_ij``) and for given groups of components as if each were one
  (``group_entropy[g] = sum_i w_i s_ig log s_ig`` with ``s_ig`` the sum of the group's ``r_ij``)

A Bayesian mixture's variational E-step is the same pass with other per-component constants in place of
``log pi_j`` (``log_weights``): the Gaussian kernel, the normalisation and the statistics do not change.

All accumulators are float64 and centred on the *same* means for every block, so adding them is exact algebra:
a tree-reduce over any partitioning equals one pass over all the data (up to float rounding). The per-row arithmetic
runs in the block's dtype: float64, or float32 (blocks stored relative to an ``origin``, so offset data keeps its
digits); every chunk's sums are added into the float64 accumulators.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas
from scipy.special import xlogy

from .errors import InputError
from .gaussian import log_gaussian_prob_t
from .sketch import ValueSketch
from .toprows import TopRows

# scikit-learn adds 10 * eps to every nk so that an empty component gives finite parameters; we do the same so that
# fits from the same initial parameters agree to rounding.
NK_EPS = 10.0 * np.finfo(np.float64).eps

# Rows handled at once inside a block: the (k, d, rows) scratch array stays around 2 MiB, cache-friendly, but never
# fewer than MIN_CHUNK_ROWS rows so that the matrix products stay efficient (measured from 8 to 128 features).
SCRATCH_DOUBLES = 1 << 18
MIN_CHUNK_ROWS = 256
# From this many features on, a symmetric rank-k update (BLAS syrk, half the flops) beats a general product for the
# scatter matrices; below it, syrk's fixed costs lose to plain matmul (measured at d = 8, 32 and 128).
SYRK_MIN_FEATURES = 64


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
    worst: TopRows | None = None
    log_densities: ValueSketch | None = None
    entropy: float = 0.0
    component_entropy: np.ndarray | None = None
    group_entropy: np.ndarray | None = None

    @classmethod
    def zeros(cls, n_components: int, n_features: int, covariance_type: str, worst: int = 0,
              sketch_reference: float | None = None) -> SufficientStats:
        k, d = n_components, n_features
        second_shape = (k, d, d) if covariance_type in ("full", "tied") else (k, d)
        return cls(0, 0.0, 0.0, np.zeros(k), np.zeros((k, d)), np.zeros(second_shape), np.zeros(k, dtype=np.int64),
                   TopRows.empty(worst, d) if worst else None,
                   None if sketch_reference is None else ValueSketch.empty(sketch_reference))

    def merge(self, other: SufficientStats) -> SufficientStats:
        return SufficientStats(
            self.n_samples + other.n_samples,
            self.weight_sum + other.weight_sum,
            self.log_likelihood + other.log_likelihood,
            self.nk + other.nk,
            self.first + other.first,
            self.second + other.second,
            self.hard_counts + other.hard_counts,
            None if self.worst is None or other.worst is None else self.worst.merge(other.worst),
            None if self.log_densities is None or other.log_densities is None
            else self.log_densities.merge(other.log_densities),
            self.entropy + other.entropy,
            _add(self.component_entropy, other.component_entropy),
            _add(self.group_entropy, other.group_entropy),
        )

    @property
    def mean_log_likelihood(self) -> float:
        """Weighted mean per-sample log-likelihood (the quantity whose change is compared with ``tol``)."""
        if self.weight_sum <= 0.0:
            raise InputError("no rows with positive weight were seen: cannot compute a log-likelihood")
        return self.log_likelihood / self.weight_sum


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else a + b


def log_normalise_t(weighted_t: np.ndarray, entropy_out: np.ndarray | None = None) -> np.ndarray:
    """In place, turn component-major weighted log-probabilities (k, n) into responsibilities (k, n).

    Returns each row's ``log p(x)``: the logsumexp over components, shifted by the row maximum so that nothing
    overflows, and no row whose densities all underflow in linear space loses its responsibilities.

    ``entropy_out`` (n,), when given, receives each row's ``sum_j r_ij log r_ij``. With ``b_ij`` the shifted
    log-probabilities and ``T_i = sum_j exp(b_ij)``, ``log r_ij = b_ij - log T_i``, so the sum is
    ``sum_j r_ij b_ij - log T_i``: one product per entry instead of a logarithm, and no ``0 * log 0``.
    """
    row_max = weighted_t.max(axis=0)
    weighted_t -= row_max
    shifted = weighted_t.copy() if entropy_out is not None else None
    np.exp(weighted_t, out=weighted_t)
    total = weighted_t.sum(axis=0)
    weighted_t /= total
    log_total = np.log(total)
    if entropy_out is not None and shifted is not None:
        shifted *= weighted_t
        np.subtract(shifted.sum(axis=0), log_total, out=entropy_out)
    return row_max + log_total


def stats_from_resp(
    centred: np.ndarray, resp_t: np.ndarray, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, first, second)`` from columns centred on each mean (``centred``: (k, d, n)) and (sample-weighted)
    responsibilities, component-major (``resp_t``: (k, n)).

    The full scatter is ``W^T W`` with ``W`` the centred rows scaled by ``sqrt(resp)``; from SYRK_MIN_FEATURES
    features on, a symmetric rank-k update (BLAS syrk) computes it with half the work and its upper triangle is
    mirrored.
    """
    k, d, n = centred.shape
    dtype = centred.dtype
    nk = resp_t.sum(axis=1)
    first = np.empty((k, d), dtype)
    second = np.empty((k, d, d) if covariance_type in ("full", "tied") else (k, d), dtype)
    scratch = np.empty((d, n), dtype)
    sqrt_resp = np.empty(n, dtype)
    syrk = blas.get_blas_funcs("syrk", (scratch,))
    for j in range(k):
        np.matmul(centred[j], resp_t[j], out=first[j])
        if covariance_type in ("full", "tied") and d >= SYRK_MIN_FEATURES:
            np.sqrt(resp_t[j], out=sqrt_resp)
            np.multiply(centred[j], sqrt_resp, out=scratch)
            upper = syrk(1.0, scratch.T, trans=1)
            second[j] = upper + np.triu(upper, 1).T
        elif covariance_type in ("full", "tied"):
            np.multiply(centred[j], resp_t[j], out=scratch)
            np.matmul(scratch, centred[j].T, out=second[j])
        else:
            np.multiply(centred[j], centred[j], out=scratch)
            np.matmul(scratch, resp_t[j], out=second[j])
    return nk, first, second


def accumulate(
    XT: np.ndarray,
    sample_weight: np.ndarray | None,
    weights: np.ndarray,
    means: np.ndarray,
    prec_chol: np.ndarray,
    covariance_type: str,
    count_hard: bool = True,
    worst: int = 0,
    origin: np.ndarray | None = None,
    sketch_reference: float | None = None,
    log_weights: np.ndarray | None = None,
    entropy: bool = False,
    merge_groups: np.ndarray | None = None,
) -> SufficientStats:
    """One E-step over *columnar* rows ``XT`` (d, n), float64 or float32, returning their sufficient statistics
    (float64 accumulators).

    ``origin`` (d,), when given, is what the columns are stored relative to (the row is ``XT[:, i] + origin``): the
    means are shifted instead of the rows, and the statistics, centred on the means, do not change.
    ``count_hard`` adds how many rows each component wins (for cluster sizes); the EM loop needs it only once.
    ``worst`` > 0 keeps that many rows of positive weight with the lowest log-density.
    ``sketch_reference``, when given, adds a quantile sketch of the rows' log-densities taken relative to it
    (``sparkgmm.sketch``).
    ``log_weights`` (k,), when given, replace ``log(weights)`` as the per-component constants (a Bayesian mixture's
    variational E-step, ``sparkgmm.bayesian``); ``entropy`` adds ``sum_i w_i sum_j r_ij log r_ij``, and
    ``merge_groups`` (G, k) boolean, the members of each group, its terms per component and for each group of
    components merged into one (a merge move's pass).
    """
    k, d = means.shape
    n = XT.shape[1]
    stats = SufficientStats.zeros(k, d, covariance_type, worst, sketch_reference)
    worst_rows, sketch = stats.worst, stats.log_densities
    if n == 0:
        return stats
    if origin is not None:
        means = means - origin
    if log_weights is None:
        with np.errstate(divide="ignore"):
            log_weights = np.log(weights)
    column_log_weights = np.asarray(log_weights).astype(XT.dtype)[:, None]
    chunk = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // (k * d))
    scratch = np.empty((k, d, min(chunk, n)), XT.dtype)
    nk, first, second, hard_counts = stats.nk, stats.first, stats.second, stats.hard_counts
    log_likelihood = entropy_sum = 0.0
    row_entropy = np.empty(min(chunk, n), XT.dtype) if entropy else None
    component_entropy = group_entropy = None
    if merge_groups is not None:
        component_entropy, group_entropy = np.zeros(k), np.zeros(merge_groups.shape[0])
        membership = merge_groups.astype(XT.dtype)
    for start in range(0, n, chunk):
        columns = XT[:, start : start + chunk]
        sw = None if sample_weight is None else sample_weight[start : start + chunk]
        centred = scratch[:, :, : columns.shape[1]]
        resp_t = log_gaussian_prob_t(columns, means, prec_chol, covariance_type, centred)
        resp_t += column_log_weights
        if count_hard:
            hard_counts += np.bincount(resp_t.argmax(axis=0), minlength=k)
        entropy_out = None if row_entropy is None else row_entropy[: columns.shape[1]]
        log_norm = log_normalise_t(resp_t, entropy_out)
        if entropy_out is not None:
            entropy_sum += float(entropy_out.sum(dtype=np.float64) if sw is None else entropy_out @ sw)
        if component_entropy is not None and group_entropy is not None:
            merged = membership @ resp_t
            component_entropy += _row_sums(xlogy(resp_t, resp_t), sw)
            group_entropy += _row_sums(xlogy(merged, merged), sw)
        if worst_rows is not None:
            badness = -log_norm if sw is None else np.where(sw > 0.0, -log_norm, -np.inf)
            entering = columns
            if worst_rows.keys.size == worst:  # full: only rows worse than the best kept one can enter
                keep = np.flatnonzero(badness > worst_rows.keys[-1])
                badness, entering = badness[keep], columns[:, keep]
            if badness.size:
                worst_rows = worst_rows.merge(TopRows.of(worst, badness, entering, origin))
        if sketch is not None:
            sketch = sketch.merge(ValueSketch.of(log_norm, sw, sketch.reference))
        if sw is None:
            log_likelihood += float(log_norm.sum(dtype=np.float64))
        else:
            log_likelihood += float(log_norm @ sw)
            resp_t *= sw
        c_nk, c_first, c_second = stats_from_resp(centred, resp_t, covariance_type)
        nk += c_nk
        first += c_first
        second += c_second
    weight_sum = float(n if sample_weight is None else sample_weight.sum())
    return SufficientStats(n, weight_sum, log_likelihood, nk, first, second, hard_counts, worst_rows, sketch,
                           entropy_sum, component_entropy, group_entropy)


def _row_sums(values_t: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Each row of ``values_t`` (m, n) summed over its columns, weighted, in float64."""
    return values_t.sum(axis=1, dtype=np.float64) if sample_weight is None else values_t @ sample_weight


def m_step(
    stats: SufficientStats | SeenStats, means: np.ndarray, covariance_type: str, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New ``(weights, means, covariances)`` from statistics centred on ``means`` (a pass's, or those a model
    remembers: only ``nk``, ``first`` and ``second`` are read), as scikit-learn's M-step.

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
            stats.second - cross - cross.transpose(0, 2, 1)
            + nk_true[:, None, None] * delta[:, :, None] * delta[:, None, :]
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


@dataclass(frozen=True, eq=False)
class SeenStats:
    """What a model remembers of the rows it has learnt from, for online updates (``sparkgmm.online``): the summed
    statistics ``nk`` (k,), ``first`` (k, d) and ``second`` (k, d, d) or (k, d), centred on the model's means, as
    ``SufficientStats`` holds them but discounted by the update rule as batches go by (``nk.sum()`` is the
    *effective* weight the model stands for); and, never discounted, the ``rows`` seen, their total ``weight`` and
    the ``batches`` blended in (a batch fit counts as one). ``averaged`` > 0: the model's parameters are the average
    of that many iterates of stepwise EM (Polyak-Ruppert averaging, ``sparkgmm.online``), and the iterate the steps go
    on from is the M-step of these statistics."""

    nk: np.ndarray
    first: np.ndarray
    second: np.ndarray
    rows: int
    weight: float
    batches: int
    averaged: int = 0

    def __post_init__(self) -> None:
        for name in ("nk", "first", "second"):
            value = np.array(getattr(self, name), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise InputError(f"the seen statistics' {name} contain NaN or infinite values")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        if np.any(self.nk < 0.0) or self.rows < 0 or self.batches < 0 or not self.weight >= 0.0:
            raise InputError(f"the seen statistics must be non-negative: nk from {self.nk.min()!r}, rows {self.rows}, "
                             f"weight {self.weight!r}, batches {self.batches}")
        if not 0 <= self.averaged <= self.batches:
            raise InputError(f"the seen statistics' averaged iterates ({self.averaged}) must be between 0 and the "
                             f"batches seen ({self.batches})")

    def check(self, n_components: int, n_features: int, covariance_type: str) -> None:
        """``InputError`` unless the shapes are those of ``n_components`` components of ``covariance_type`` over
        ``n_features`` features."""
        k, d = n_components, n_features
        second = (k, d, d) if covariance_type in ("full", "tied") else (k, d)
        for name, shape in (("nk", (k,)), ("first", (k, d)), ("second", second)):
            if getattr(self, name).shape != shape:
                raise InputError(f"the seen statistics' {name} have shape {getattr(self, name).shape}; a "
                                 f"{covariance_type} model of {k} components and {d} features needs {shape}")

    @property
    def effective_weight(self) -> float:
        return float(self.nk.sum())

    @classmethod
    def of_pass(cls, stats: SufficientStats) -> SeenStats:
        """What a batch fit remembers: the statistics of its final pass, taken under (and centred on) the fitted
        parameters, as one batch."""
        return cls(stats.nk, stats.first, stats.second, stats.n_samples, stats.weight_sum, 1)

    @classmethod
    def of_parameters(cls, weights: np.ndarray, covariances: np.ndarray, covariance_type: str, n_features: int,
                      effective_weight: float, reg_covar: float) -> SeenStats:
        """The statistics that parameters stand for when they summarise ``effective_weight`` rows' worth: component j
        holds ``weight_j * effective_weight`` of it, centred on its mean (``first`` = 0), with the scatter whose M-step
        (``regCovar`` added back) gives its covariance again. For a model saved without statistics; it counts as
        one batch (none at a weight of 0), and as ``effective_weight`` rows."""
        nk = np.asarray(weights, dtype=np.float64) * effective_weight
        d = n_features
        covariances = np.asarray(covariances, dtype=np.float64)
        if covariance_type == "full":
            per_component = covariances - reg_covar * np.eye(d)
        elif covariance_type == "tied":
            per_component = np.broadcast_to(covariances - reg_covar * np.eye(d), (nk.shape[0], d, d))
        elif covariance_type == "diag":
            per_component = covariances - reg_covar
        else:
            per_component = np.repeat((covariances - reg_covar)[:, None], d, axis=1)
        second = nk.reshape((-1,) + (1,) * (per_component.ndim - 1)) * per_component
        return cls(nk, np.zeros((nk.shape[0], d)), second, round(effective_weight), float(effective_weight),
                   1 if effective_weight > 0.0 else 0)

    def recentred(self, old_means: np.ndarray, new_means: np.ndarray) -> SeenStats:
        """The same statistics centred on ``new_means`` instead of ``old_means``: with ``delta = old - new``,
        ``x - new = (x - old) + delta``, so ``first`` gains ``nk delta`` and ``second`` the cross terms
        ``first delta^T + delta first^T + nk delta delta^T`` (their diagonal for diag and spherical)."""
        delta = np.asarray(old_means, dtype=np.float64) - np.asarray(new_means, dtype=np.float64)
        first = self.first + self.nk[:, None] * delta
        if self.second.ndim == 3:
            cross = self.first[:, :, None] * delta[:, None, :]
            second = (self.second + cross + cross.transpose(0, 2, 1)
                      + self.nk[:, None, None] * delta[:, :, None] * delta[:, None, :])
        else:
            second = self.second + 2.0 * self.first * delta + self.nk[:, None] * delta**2
        return SeenStats(first=first, second=second, nk=self.nk, rows=self.rows, weight=self.weight,
                         batches=self.batches, averaged=self.averaged)
