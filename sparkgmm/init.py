"""Initial parameters: k-means|| over all rows in a few passes, or the modes that work on a bounded sample of rows
drawn to the driver. Pure NumPy: never imports pyspark. The default, ``sample``, is not started here: its starts
come from a search on the sample the conversion keeps (``sparkgmm.search``), and this module's k-means++ starts it.

``k-means||`` (Bahmani et al., VLDB 2012) draws a first centre with probability proportional to the row
weight, then in each of ``init_steps`` passes draws every row with probability ``min(1, l w d^2 / cost)``
(oversampling ``l = 2k``; the draw is settled on the driver from a bounded set, see ``passes.Oversampled``). One more
pass weighs each drawn candidate by the row weight nearest to it; weighted k-means++ and Lloyd on the driver reduce
the candidates to ``k`` centres; at most LLOYD_PASSES distributed Lloyd passes refine them, and the last pass's
hard assignment gives the initial weights, means and covariances (plus ``reg_covar``). A zero-weight row is never
drawn.

The sample modes pick ``k`` centres from the sample: ``random_from_data`` uniformly, ``k-means++`` by D^2 sampling, and
``k-means`` (as scikit-learn's default) refines the k-means++ centres with Lloyd iterations on the sample. Every
sample row then goes to its nearest centre and one M-step on those hard assignments gives the initial parameters:
weights are the shares of the sample, means the centroids, covariances the within-group scatter plus ``reg_covar``.
Their sample is drawn in one pass, with probability proportional to the row weight and bounded in total
(``passes.WeightedSample``). A row's draws in a pass come from a hash of its values and the seed
(``passes.row_uniforms``), the driver's from a seeded ``numpy.random.default_rng``. Fewer distinct rows of positive
weight than ``k`` is an ``InputError``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from .errors import InputError
from .mixture import Mixture
from .passes import HardAssignment, NearestCentre, OversampleRound, Request, WeightedSample, pack_block
from .stats import m_step

# "sample": the search on the sample the conversion keeps (``sparkgmm.search``); the others are started here.
SAMPLE_INIT_MODE = "sample"
INIT_MODES = (SAMPLE_INIT_MODE, "k-means||", "k-means", "k-means++", "random_from_data")
DEFAULT_INIT_MODE = SAMPLE_INIT_MODE
_SAMPLE_MODES = ("k-means", "k-means++", "random_from_data")  # started from a sample drawn in one pass
LLOYD_MAX_ITER = 100
# Distributed Lloyd passes after k-means||, at most; they stop early once no centre moves by more than
# LLOYD_SHIFT_TOL times the root mean squared distance of the rows to their centres. Measured on seven data sets
# (scripts/quality_benchmark.py's, eight seeds each): 3, 5, 8 or 20 passes end in the same optima on the
# synthetic sets and in equally spread ones on wine and breast cancer, so more passes only cost time.
LLOYD_PASSES = 3
LLOYD_SHIFT_TOL = 1e-3
# Rows drawn to the driver for the sample modes: enough for k-means++ to see every sizeable cluster.
INIT_SAMPLE_ROWS = 10_000


def _squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every row to every centre, (n, c), computed on centred differences."""
    out = np.empty((X.shape[0], centres.shape[0]))
    for j, c in enumerate(centres):
        diff = X - c
        np.einsum("ij,ij->i", diff, diff, out=out[:, j])
    return out


def kmeans_plusplus(X: np.ndarray, n_centres: int, rng: np.random.Generator,
                    sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n_centres`` rows chosen by k-means++ (Arthur & Vassilvitskii, 2007) with greedy trials.

    Each step draws ``2 + log(k)`` candidates with probability proportional to the (weighted) squared distance to
    the nearest chosen centre and keeps the one that lowers the total most. When every remaining row coincides with
    a chosen centre (duplicate data), candidates are drawn in proportion to the weights alone.
    """
    n = X.shape[0]
    weight = np.ones(n) if sample_weight is None else sample_weight
    trials = 2 + int(np.log(n_centres))
    chosen = [int(rng.choice(n, p=weight / weight.sum()))]
    closest = _squared_distances(X, X[chosen])[:, 0] * weight
    for _ in range(1, n_centres):
        total = closest.sum()
        if total > 0.0:
            candidates = rng.choice(n, size=trials, p=closest / total)
        else:
            candidates = rng.choice(n, size=trials, p=weight / weight.sum())
        candidate_closest = np.minimum(closest[:, None], _squared_distances(X, X[candidates]) * weight[:, None])
        best = int(candidate_closest.sum(axis=0).argmin())
        chosen.append(int(candidates[best]))
        closest = candidate_closest[:, best]
    return np.asarray(chosen)


def lloyd(
    X: np.ndarray, sample_weight: np.ndarray | None, centres: np.ndarray, max_iter: int = LLOYD_MAX_ITER
) -> np.ndarray:
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
    seed: int | tuple[int, ...],
) -> Mixture:
    """Initial parameters from ``sample`` (n, d) with ``n >= n_components`` by a sample mode."""
    if init_mode not in _SAMPLE_MODES:
        raise InputError(f"initMode for a sample must be one of {', '.join(_SAMPLE_MODES)}; got {init_mode!r}")
    rng = np.random.default_rng(seed)
    n = sample.shape[0]
    if init_mode in ("k-means", "k-means++"):
        centres = sample[kmeans_plusplus(sample, n_components, rng, sample_weight)]
        if init_mode == "k-means":
            centres = lloyd(sample, sample_weight, centres)
    else:
        centres = sample[rng.choice(n, size=n_components, replace=False)]
    return hard_assignment_mixture(sample, sample_weight, centres, covariance_type, reg_covar)


def hard_assignment_mixture(X: np.ndarray, sample_weight: np.ndarray | None, centres: np.ndarray,
                            covariance_type: str, reg_covar: float) -> Mixture:
    """Weights, means and covariances of the rows of ``X`` assigned to their nearest centre: the distributed Lloyd
    pass's own statistics, computed on the in-memory rows."""
    stats = HardAssignment(centres, covariance_type).on_block(pack_block(X, sample_weight))
    weights, means, covariances = m_step(stats, centres, covariance_type, reg_covar)
    return Mixture(weights, means, covariances, covariance_type)


def sample_size(n_components: int) -> int:
    return max(INIT_SAMPLE_ROWS, 20 * n_components)


def initialise(n_components: int, covariance_type: str, reg_covar: float, init_mode: str, seed: tuple[int, ...],
               init_steps: int = 2) -> Generator[Request, Any, Mixture]:
    """A coroutine (see ``sparkgmm.em``) that asks for passes and returns the initial ``Mixture``."""
    if init_mode == "k-means||":
        return (yield from kmeans_parallel(n_components, covariance_type, reg_covar, seed, init_steps))
    size = sample_size(n_components)
    sample = yield WeightedSample(size, (*seed, 0))
    if sample.rows.shape[0] < n_components:
        raise InputError(f"k={n_components} components need at least {n_components} rows of positive weight; the "
                         f"data has {sample.rows.shape[0]}")
    distinct = np.unique(sample.rows, axis=0)
    if distinct.shape[0] < n_components:
        # The sample holds every row when it came back short; else one more pass tells whether other rows exist.
        if sample.rows.shape[0] < size or (yield NearestCentre(distinct)).cost == 0.0:
            raise _too_few_distinct(n_components, distinct.shape[0])
    return initial_mixture(sample.rows, None, n_components, covariance_type, reg_covar, init_mode, seed)


def _too_few_distinct(n_components: int, distinct: int) -> InputError:
    return InputError(f"k={n_components} components need at least {n_components} distinct rows of positive weight; "
                      f"the data has {distinct}")


def kmeans_parallel(n_components: int, covariance_type: str, reg_covar: float, seed: tuple[int, ...],
                    init_steps: int) -> Generator[Request, Any, Mixture]:
    """k-means|| as a coroutine (see the module's docstring); returns the initial ``Mixture``."""
    k = n_components
    oversampling = 2.0 * k
    capacity = int(3 * oversampling) + 64  # P(more than this many drawn in a round) is negligible (Poisson tail)
    first = yield WeightedSample(1, (*seed, 1), description="k-means|| first centre")
    centres = first.rows
    for step in range(init_steps):
        answer = yield OversampleRound(centres, capacity, (*seed, 2, step), description=f"k-means|| round {step + 1}")
        drawn = answer.drawn(oversampling)
        if not drawn.shape[0]:
            break
        centres = np.unique(np.concatenate([centres, drawn]), axis=0)
    nearest = yield NearestCentre(centres)
    for top_up in range(k):
        # Fewer candidates than components while rows lie away from them all: identical rows share their draws, so
        # heavily repeated data can leave the rounds short. Add the rows of the largest keys (all away from the
        # candidates) until there are k candidates or none is left away from them.
        if np.count_nonzero(nearest.weights) >= k or nearest.cost == 0.0:
            break
        answer = yield OversampleRound(centres, capacity, (*seed, 4, top_up), description="k-means|| top-up round")
        centres = np.unique(np.concatenate([centres, answer.top.rows]), axis=0)
        nearest = yield NearestCentre(centres)
    rng = np.random.default_rng([*seed, 3])
    present = nearest.weights > 0.0
    candidates, candidate_weights = centres[present], nearest.weights[present]
    if candidates.shape[0] < k and nearest.cost == 0.0:  # every row of positive weight is one of the candidates
        raise _too_few_distinct(k, candidates.shape[0])
    if candidates.shape[0] <= k:
        # Exactly k candidates (fewer only if k top-up rounds could not find k): each is a centre, any missing
        # ones repeat the heaviest.
        extra = np.full(k - candidates.shape[0], int(candidate_weights.argmax()))
        centres = np.concatenate([candidates, candidates[extra]])
    else:
        centres = candidates[kmeans_plusplus(candidates, k, rng, candidate_weights)]
        centres = lloyd(candidates, candidate_weights, centres)
    for step in range(LLOYD_PASSES):
        stats = yield HardAssignment(centres, covariance_type, description=f"k-means|| Lloyd pass {step + 1}")
        weights, means, covariances = m_step(stats, centres, covariance_type, reg_covar)
        empty = stats.nk <= 0.0
        means[empty] = centres[empty]  # a centre that lost its rows stays where it was, not at the origin
        shift = float(np.max(np.sum((means - centres) ** 2, axis=1)))
        spread = -stats.log_likelihood / stats.weight_sum  # the mean squared distance to the nearest centre
        centres = means
        if shift <= LLOYD_SHIFT_TOL**2 * spread:
            break
    return Mixture(weights, means, covariances, covariance_type)
