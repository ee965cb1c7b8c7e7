"""What one pass over the data can be asked to compute, block by block, with results that merge associatively.

A *pass* reads every block of rows once and answers a list of requests (one per live candidate of a fit): each
request maps a block to a partial result, and partial results merge associatively and commutatively, so a
tree-reduce over any partitioning equals one pass over all rows (up to float rounding and, for the random draws, the
streams they come from). Every result is bounded by the request (``k``, ``d``, a capacity), never by the rows.

Blocks are columnar: ``xt`` (d, n) float64, sample weights ``w`` (n,) or None, and a ``key`` of integers naming the
block, which seeds its random stream together with the request's seed. Pure NumPy: never imports pyspark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from .mixture import Mixture
from .stats import MIN_CHUNK_ROWS, SCRATCH_DOUBLES, SufficientStats, accumulate, stats_from_resp
from .toprows import TopRows


class Partial(Protocol):
    def merge(self, other): ...


class Request(Protocol):
    """One candidate's question to a pass. ``description`` names it in the pass's Spark job."""

    description: str

    def empty(self, n_features: int) -> Partial: ...

    def on_block(self, xt: np.ndarray, w: np.ndarray | None, key: tuple[int, ...]) -> Partial: ...


def block_rng(seed: tuple[int, ...], key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng([*seed, *key])


def chunks(n: int, rows_per_chunk: int):
    for start in range(0, n, rows_per_chunk):
        yield slice(start, min(n, start + rows_per_chunk))


def squared_distances_t(xt: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every column of ``xt`` (d, n) to every centre (c, d): shape (c, n), from
    centred differences (no ``|x|^2 - 2 x.c + |c|^2`` cancellation on offset data)."""
    d, n = xt.shape
    out = np.empty((centres.shape[0], n))
    step = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // max(d, 1))
    diff = np.empty((d, min(n, step)))
    for rows in chunks(n, step):
        width = rows.stop - rows.start
        for j, centre in enumerate(centres):
            np.subtract(xt[:, rows], centre[:, None], out=diff[:, :width])
            diff[:, :width] **= 2
            diff[:, :width].sum(axis=0, out=out[j, rows])
    return out


# --- requests -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class EStep:
    """One E-step under ``mixture``: its ``SufficientStats`` (with cluster sizes when ``count_hard``), and the
    ``worst`` rows of positive weight that the mixture explains least (lowest log-density), for re-seeding."""

    mixture: Mixture
    count_hard: bool = False
    worst: int = 0
    description: str = "EM iteration"

    def empty(self, n_features: int) -> SufficientStats:
        m = self.mixture
        return SufficientStats.zeros(m.n_components, n_features, m.covariance_type, self.worst)

    def on_block(self, xt, w, key) -> SufficientStats:
        m = self.mixture
        return accumulate(xt, w, m.weights, m.means, m.precisions_cholesky, m.covariance_type, self.count_hard,
                          self.worst)


@dataclass(frozen=True, eq=False)
class WeightedSample:
    """``size`` rows drawn without replacement with probability proportional to their weight (Efraimidis & Spirakis'
    keys ``log(u) / w``): with unit weights, a uniform sample. Rows of zero weight are never drawn."""

    size: int
    seed: tuple[int, ...]
    description: str = "initialisation sample"

    def empty(self, n_features: int) -> TopRows:
        return TopRows.empty(self.size, n_features)

    def on_block(self, xt, w, key) -> TopRows:
        u = 1.0 - block_rng(self.seed, key).random(xt.shape[1])  # in (0, 1]
        with np.errstate(divide="ignore"):
            keys = np.log(u) if w is None else np.where(w > 0.0, np.log(u) / np.where(w > 0.0, w, 1.0), -np.inf)
        return TopRows.of(self.size, keys, xt)


@dataclass(frozen=True, eq=False)
class Oversampled:
    """A k-means|| round's answer: the cost ``sum w d^2`` under the round's centres, and the rows with the largest
    keys ``w d^2 / u``. A row is drawn with probability ``min(1, l w d^2 / cost)`` exactly when its key exceeds
    ``cost / l``, so the draw is settled on the driver once the cost is known, from a set bounded by the capacity."""

    cost: float
    top: TopRows

    def merge(self, other: "Oversampled") -> "Oversampled":
        return Oversampled(self.cost + other.cost, self.top.merge(other.top))

    def drawn(self, oversampling: float) -> np.ndarray:
        if self.cost <= 0.0:
            return self.top.rows[:0]
        return self.top.rows[self.top.keys > self.cost / oversampling]


@dataclass(frozen=True, eq=False)
class OversampleRound:
    """One round of k-means|| (Bahmani et al., 2012) around ``centres`` (c, d)."""

    centres: np.ndarray
    capacity: int
    seed: tuple[int, ...]
    description: str = "k-means|| round"

    def empty(self, n_features: int) -> Oversampled:
        return Oversampled(0.0, TopRows.empty(self.capacity, n_features))

    def on_block(self, xt, w, key) -> Oversampled:
        cost_t = squared_distances_t(xt, self.centres).min(axis=0)
        if w is not None:
            cost_t *= w
        u = 1.0 - block_rng(self.seed, key).random(xt.shape[1])
        keys = np.where(cost_t > 0.0, cost_t / u, -np.inf)
        return Oversampled(float(cost_t.sum()), TopRows.of(self.capacity, keys, xt))


@dataclass(frozen=True, eq=False)
class CentreWeights:
    """Total row weight nearest to each centre, and the cost ``sum w d^2`` to the nearest centre."""

    weights: np.ndarray
    cost: float

    def merge(self, other: "CentreWeights") -> "CentreWeights":
        return CentreWeights(self.weights + other.weights, self.cost + other.cost)


@dataclass(frozen=True, eq=False)
class NearestCentre:
    centres: np.ndarray
    description: str = "k-means|| candidate weights"

    def empty(self, n_features: int) -> CentreWeights:
        return CentreWeights(np.zeros(self.centres.shape[0]), 0.0)

    def on_block(self, xt, w, key) -> CentreWeights:
        distances = squared_distances_t(xt, self.centres)
        nearest = distances.argmin(axis=0)
        cost_t = distances[nearest, np.arange(xt.shape[1])]
        weight = np.ones(xt.shape[1]) if w is None else w
        counts = np.bincount(nearest, weights=weight, minlength=self.centres.shape[0])
        return CentreWeights(counts, float(cost_t @ weight))


@dataclass(frozen=True, eq=False)
class HardAssignment:
    """Statistics of the rows assigned to their nearest centre (responsibility 1), centred on the centres: a Lloyd
    step's new centres, and the weights, means and covariances of the assignment through ``m_step``. The
    statistics' ``log_likelihood`` holds minus the k-means cost."""

    centres: np.ndarray
    covariance_type: str
    description: str = "k-means|| Lloyd pass"

    def empty(self, n_features: int) -> SufficientStats:
        return SufficientStats.zeros(self.centres.shape[0], n_features, self.covariance_type)

    def on_block(self, xt, w, key) -> SufficientStats:
        k, d = self.centres.shape
        n = xt.shape[1]
        stats = self.empty(d)
        nk, first, second, hard_counts = stats.nk, stats.first, stats.second, stats.hard_counts
        cost = 0.0
        step = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // (k * d))
        centred = np.empty((k, d, min(n, step)))
        for rows in chunks(n, step):
            width = rows.stop - rows.start
            c = centred[:, :, :width]
            np.subtract(xt[None, :, rows], self.centres[:, :, None], out=c)
            distances = np.einsum("kdn,kdn->kn", c, c)
            nearest = distances.argmin(axis=0)
            weight = np.ones(width) if w is None else w[rows]
            resp_t = np.zeros((k, width))
            resp_t[nearest, np.arange(width)] = weight
            cost += float(distances[nearest, np.arange(width)] @ weight)
            hard_counts += np.bincount(nearest, minlength=k)
            c_nk, c_first, c_second = stats_from_resp(c, resp_t, self.covariance_type)
            nk += c_nk
            first += c_first
            second += c_second
        weight_sum = float(n if w is None else w.sum())
        return SufficientStats(n, weight_sum, -cost, nk, first, second, hard_counts)


def run_local_pass(xt: np.ndarray, w: np.ndarray | None, requests: Sequence[Request], block_rows: int = 1 << 15,
                   ) -> list[Partial]:
    """A pass over in-memory columnar rows, cut into blocks of ``block_rows`` (for tests and driver-side fits)."""
    results = [request.empty(xt.shape[0]) for request in requests]
    for number, rows in enumerate(chunks(xt.shape[1], block_rows)):
        block_w = None if w is None else w[rows]
        for i, request in enumerate(requests):
            results[i] = results[i].merge(request.on_block(xt[:, rows], block_w, (0, number)))
    return results
