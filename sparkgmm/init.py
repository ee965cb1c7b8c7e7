"""Initial parameters from a bounded sample of rows held on the driver. Pure NumPy: never imports pyspark.

Every mode picks ``k`` centres from the sample: ``random_from_data`` uniformly, ``k-means++`` by D^2 sampling, and
``k-means`` (the default, as scikit-learn's) refines the k-means++ centres with Lloyd iterations on the sample. Every
sample row then goes to its nearest centre and one M-step on those hard assignments gives the initial parameters:
weights are the shares of the sample, means the centroids, covariances the within-group scatter plus ``reg_covar``.
Every draw comes from a seeded ``numpy.random.default_rng``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .mixture import Mixture
from .stats import SufficientStats, m_step, stats_from_resp

INIT_MODES = ("k-means", "k-means++", "random_from_data")
LLOYD_MAX_ITER = 100


def _squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every row to every centre, (n, c), computed on centred differences."""
    out = np.empty((X.shape[0], centres.shape[0]))
    for j, c in enumerate(centres):
        diff = X - c
        np.einsum("ij,ij->i", diff, diff, out=out[:, j])
    return out


def kmeans_plusplus(X: np.ndarray, n_centres: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_centres`` rows chosen by k-means++ (Arthur & Vassilvitskii, 2007) with greedy trials.

    Each step draws ``2 + log(k)`` candidates with probability proportional to the squared distance to the
    nearest chosen centre and keeps the one that lowers the total squared distance most. When every remaining row
    coincides with a chosen centre (duplicate data), candidates are drawn uniformly.
    """
    n = X.shape[0]
    trials = 2 + int(np.log(n_centres))
    chosen = [int(rng.integers(n))]
    closest = _squared_distances(X, X[chosen])[:, 0]
    for _ in range(1, n_centres):
        total = closest.sum()
        if total > 0.0:
            candidates = rng.choice(n, size=trials, p=closest / total)
        else:
            candidates = rng.choice(n, size=trials)
        candidate_closest = np.minimum(closest[:, None], _squared_distances(X, X[candidates]))
        best = int(candidate_closest.sum(axis=0).argmin())
        chosen.append(int(candidates[best]))
        closest = candidate_closest[:, best]
    return np.asarray(chosen)


def lloyd(X: np.ndarray, sample_weight: np.ndarray | None, centres: np.ndarray, max_iter: int = LLOYD_MAX_ITER) -> np.ndarray:
    """Refine ``centres`` by Lloyd's k-means iterations until no row changes its nearest centre; a centre that
    loses all its rows stays where it is."""
    k = centres.shape[0]
    weight = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    labels = None
    for _ in range(max_iter):
        new_labels = _squared_distances(X, centres).argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        totals = np.bincount(labels, weights=weight, minlength=k)
        sums = np.stack([np.bincount(labels, weights=weight * X[:, i], minlength=k) for i in range(X.shape[1])], 1)
        moved = totals > 0
        centres = centres.copy()
        centres[moved] = sums[moved] / totals[moved, None]
    return centres


def initial_mixture(
    sample: np.ndarray,
    sample_weight: np.ndarray | None,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    init_mode: str,
    seed: int,
) -> Mixture:
    """Initial parameters from ``sample`` (n, d) with ``n >= n_components``."""
    if init_mode not in INIT_MODES:
        raise InputError(f"initMode must be one of {', '.join(INIT_MODES)}; got {init_mode!r}")
    rng = np.random.default_rng(seed)
    n, d = sample.shape
    if init_mode in ("k-means", "k-means++"):
        centres = sample[kmeans_plusplus(sample, n_components, rng)]
        if init_mode == "k-means":
            centres = lloyd(sample, sample_weight, centres)
    else:
        centres = sample[rng.choice(n, size=n_components, replace=False)]
    nearest = _squared_distances(sample, centres).argmin(axis=1)
    weight = np.ones(n) if sample_weight is None else sample_weight
    stats = SufficientStats.zeros(n_components, d, covariance_type)
    for j in range(n_components):
        # Hard assignments: only a component's own rows contribute, so scratch stays (d, rows of j), not (k, d, n).
        mine = nearest == j
        centred = (sample[mine] - centres[j]).T[None, :, :]
        nk, first, second = stats_from_resp(centred, weight[mine][None, :], covariance_type)
        stats.nk[j], stats.first[j], stats.second[j] = nk[0], first[0], second[0]
    weights, means, covariances = m_step(stats, centres, covariance_type, reg_covar)
    return Mixture(weights, means, covariances, covariance_type)
