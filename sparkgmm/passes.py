"""What one pass over the data can be asked to compute, block by block, with results that merge associatively.

A *pass* reads every block of rows once and answers a list of requests (one per live candidate of a fit): each
request maps a block to a partial result, and partial results merge associatively and commutatively, so a
tree-reduce over any partitioning equals one pass over all rows (up to float rounding; the random draws do not
depend on the partitioning, below). Every result is bounded by the request (``k``, ``d``, a capacity), never by the
rows.

Blocks are columnar (``Block``): ``xt`` (d, n) float64, or float32 relative to a float64 ``origin``, sample weights
``w`` (n,) or None, and a 64-bit hash of each row's values. Every random draw a request makes for a row comes from
that hash and the request's seed (``row_uniforms``), never from a stream tied to the block or the partition, so the
draws, and the rows a pass picks, are the same whatever the partitioning, the number of cores or the block size.
Pure NumPy: never imports pyspark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from scipy.special import logsumexp

from .gaussian import LOG_2PI, log_det_precision
from .mixture import Mixture
from .stats import MIN_CHUNK_ROWS, SCRATCH_DOUBLES, SufficientStats, accumulate, stats_from_resp
from .toprows import TopRows


class Partial(Protocol):
    def merge(self, other): ...


BLOCK_DTYPES = ("float64", "float32")


@dataclass(frozen=True, eq=False)
class Block:
    """Some rows, columnar. Row ``i`` is ``xt[:, i]`` (float64), or ``xt[:, i] + origin`` when the block is stored
    in float32 relative to ``origin`` (d,) float64, the block's mean: float32 then keeps ~7 significant digits of
    each row's offset from the block, not of its absolute value, so data far from zero loses nothing to the
    narrower type. Requests move their points into the block's frame (``local``), never the rows. ``hashes`` (n,)
    uint64 holds ``row_hashes`` of the rows' float64 values, taken before any change of type or frame."""

    xt: np.ndarray
    w: np.ndarray | None
    hashes: np.ndarray
    origin: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.xt.shape[1]

    def local(self, points: np.ndarray) -> np.ndarray:
        """Points (c, d) given in float64 data coordinates, moved into this block's frame and dtype."""
        if self.origin is not None:
            points = points - self.origin
        return points.astype(self.xt.dtype, copy=False)

    def top_rows(self, capacity: int, keys: np.ndarray) -> TopRows:
        return TopRows.of(capacity, keys, self.xt, self.origin)


def pack_block(rows: np.ndarray, w: np.ndarray | None, dtype: str = "float64") -> Block:
    """A ``Block`` in ``dtype`` from float64 rows (n, d)."""
    hashes = row_hashes(rows)
    if dtype == "float64":
        return Block(np.ascontiguousarray(rows.T, dtype=np.float64), w, hashes)
    if dtype != "float32":
        raise ValueError(f"dtype must be one of {', '.join(BLOCK_DTYPES)}; got {dtype!r}")
    origin = rows.mean(axis=0) if rows.shape[0] else np.zeros(rows.shape[1])
    return Block(np.ascontiguousarray((rows - origin).T, dtype=np.float32), w, hashes, origin)


class Request(Protocol):
    """One candidate's question to a pass. ``description`` names it in the pass's Spark job."""

    @property
    def description(self) -> str: ...

    def empty(self, n_features: int) -> Partial: ...

    def on_block(self, block: Block) -> Partial: ...


# SplitMix64's output function (Steele, Lea & Flood, 2014): a bijection on 64-bit words whose every output bit
# depends on every input bit, so that hashes of nearby values, and uniforms of nearby hashes, look independent.
_MIX1, _MIX2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


_Words = TypeVar("_Words", np.ndarray, np.uint64)  # an array of 64-bit words, or one


def _mix64(z: _Words) -> _Words:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def row_hashes(rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash (n,) uint64 of each float64 row (n, d): equal rows hash alike wherever they are (``-0.0`` counts
    as ``0.0``), and rows that differ in any bit of any value hash apart but by chance."""
    n, d = rows.shape
    bits = np.ascontiguousarray(rows + 0.0, dtype=np.float64).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    with np.errstate(over="ignore"):
        h = np.full(n, np.uint64(d) * _GOLDEN, dtype=np.uint64)
        for j in range(d):
            h = _mix64(h ^ bits[:, j]) + _GOLDEN
    return h


def content_fingerprint(block: Block) -> int:
    """A 64-bit fingerprint of a block's rows and weights that does not depend on their order: rows split over any
    blocks give the same ``merge_fingerprints`` of their fingerprints. It tells one input from another (a checkpoint
    from other data), not a cryptographic hash."""
    hashes = block.hashes
    if block.w is not None:
        with np.errstate(over="ignore"):
            hashes = _mix64(hashes ^ np.ascontiguousarray(block.w, dtype=np.float64).view(np.uint64))
    return int(hashes.sum(dtype=np.uint64))


def merge_fingerprints(a: int, b: int) -> int:
    return (a + b) & 0xFFFFFFFFFFFFFFFF


def row_uniforms(seed: tuple[int, ...], hashes: np.ndarray) -> np.ndarray:
    """One uniform draw in (0, 1] per row, a function of the row's hash and ``seed`` alone: the same row gets the same
    draw in every block, partition or pass that uses the same seed."""
    salt = np.uint64(len(seed))
    with np.errstate(over="ignore"):
        for part in seed:
            salt = _mix64(salt ^ np.uint64(part & 0xFFFFFFFFFFFFFFFF)) + _GOLDEN
        bits = _mix64(hashes ^ salt)
    return 1.0 - (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def chunks(n: int, rows_per_chunk: int):
    for start in range(0, n, rows_per_chunk):
        yield slice(start, min(n, start + rows_per_chunk))


def squared_distances_t(xt: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every column of ``xt`` (d, n) to every centre (c, d): shape (c, n), from
    centred differences (no ``|x|^2 - 2 x.c + |c|^2`` cancellation on offset data)."""
    d, n = xt.shape
    out = np.empty((centres.shape[0], n), xt.dtype)
    step = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // max(d, 1))
    diff = np.empty((d, min(n, step)), xt.dtype)
    for rows in chunks(n, step):
        width = rows.stop - rows.start
        for j, centre in enumerate(centres):
            np.subtract(xt[:, rows], centre[:, None], out=diff[:, :width])
            diff[:, :width] **= 2
            diff[:, :width].sum(axis=0, out=out[j, rows])
    return out


# --- requests -----------------------------------------------------------------------------------------------------

def log_density_ceiling(mixture: Mixture) -> float:
    """An upper bound of the mixture's log-density: ``log sum_j weight_j N(mu_j | mu_j, cov_j)``, as every component's
    density peaks at its mean. The log-density sketch measures rows from it (``sparkgmm.sketch``)."""
    k, d = mixture.means.shape
    peaks = 0.5 * log_det_precision(mixture.precisions_cholesky, mixture.covariance_type, d, k) - 0.5 * d * LOG_2PI
    with np.errstate(divide="ignore"):
        return float(logsumexp(np.log(mixture.weights) + peaks))


@dataclass(frozen=True, eq=False)
class EStep:
    """One E-step under ``mixture``: its ``SufficientStats`` (with cluster sizes when ``count_hard``), the ``worst``
    rows of positive weight that the mixture explains least (lowest log-density), for re-seeding, and, when
    ``sketch_reference`` is given, a bounded quantile sketch of the rows' log-densities measured from it (the driver
    passes ``log_density_ceiling(mixture)``, computed once, so that every block's sketch has the same reference).
    A Bayesian mixture's variational E-step gives its per-component constants as ``log_weights`` (they replace
    ``log(mixture.weights)``) and asks for the responsibilities' ``entropy`` term (``sparkgmm.bayesian``), and on a
    merge move's pass, that term per component and per proposed group of components (``merge_groups``)."""

    mixture: Mixture
    count_hard: bool = False
    worst: int = 0
    description: str = "EM iteration"
    sketch_reference: float | None = None
    log_weights: np.ndarray | None = None
    entropy: bool = False
    merge_groups: np.ndarray | None = None

    def empty(self, n_features: int) -> SufficientStats:
        m = self.mixture
        empty = SufficientStats.zeros(m.n_components, n_features, m.covariance_type, self.worst, self.sketch_reference)
        if self.merge_groups is None:
            return empty
        return dataclasses.replace(empty, component_entropy=np.zeros(m.n_components),
                                   group_entropy=np.zeros(self.merge_groups.shape[0]))

    def on_block(self, block: Block) -> SufficientStats:
        m = self.mixture
        return accumulate(block.xt, block.w, m.weights, m.means, m.precisions_cholesky, m.covariance_type,
                          self.count_hard, self.worst, block.origin, self.sketch_reference, self.log_weights,
                          self.entropy, self.merge_groups)


@dataclass(frozen=True, eq=False)
class WeightedSample:
    """``size`` rows drawn without replacement with probability proportional to their weight (Efraimidis & Spirakis'
    keys ``log(u) / w``): with unit weights, a uniform sample. Rows of zero weight are never drawn."""

    size: int
    seed: tuple[int, ...]
    description: str = "initialisation sample"

    def empty(self, n_features: int) -> TopRows:
        return TopRows.empty(self.size, n_features)

    def on_block(self, block: Block) -> TopRows:
        w = block.w
        u = row_uniforms(self.seed, block.hashes)
        with np.errstate(divide="ignore"):
            keys = np.log(u) if w is None else np.where(w > 0.0, np.log(u) / np.where(w > 0.0, w, 1.0), -np.inf)
        return block.top_rows(self.size, keys)


@dataclass(frozen=True, eq=False)
class Oversampled:
    """A k-means|| round's answer: the cost ``sum w d^2`` under the round's centres, and the rows with the largest
    keys ``w d^2 / u``. A row is drawn with probability ``min(1, l w d^2 / cost)`` exactly when its key exceeds
    ``cost / l``, so the draw is settled on the driver once the cost is known, from a set bounded by the capacity."""

    cost: float
    top: TopRows

    def merge(self, other: Oversampled) -> Oversampled:
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

    def on_block(self, block: Block) -> Oversampled:
        cost_t = squared_distances_t(block.xt, block.local(self.centres)).min(axis=0).astype(np.float64)
        if block.w is not None:
            cost_t *= block.w
        u = row_uniforms(self.seed, block.hashes)
        keys = np.where(cost_t > 0.0, cost_t / u, -np.inf)
        return Oversampled(float(cost_t.sum()), block.top_rows(self.capacity, keys))


@dataclass(frozen=True, eq=False)
class CentreWeights:
    """Total row weight nearest to each centre, and the cost ``sum w d^2`` to the nearest centre."""

    weights: np.ndarray
    cost: float

    def merge(self, other: CentreWeights) -> CentreWeights:
        return CentreWeights(self.weights + other.weights, self.cost + other.cost)


@dataclass(frozen=True, eq=False)
class NearestCentre:
    centres: np.ndarray
    description: str = "k-means|| candidate weights"

    def empty(self, n_features: int) -> CentreWeights:
        return CentreWeights(np.zeros(self.centres.shape[0]), 0.0)

    def on_block(self, block: Block) -> CentreWeights:
        distances = squared_distances_t(block.xt, block.local(self.centres))
        nearest = distances.argmin(axis=0)
        cost_t = distances[nearest, np.arange(block.n_rows)].astype(np.float64)
        weight = np.ones(block.n_rows) if block.w is None else block.w
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

    def on_block(self, block: Block) -> SufficientStats:
        xt, w = block.xt, block.w
        k, d = self.centres.shape
        n = xt.shape[1]
        stats = self.empty(d)
        nk, first, second, hard_counts = stats.nk, stats.first, stats.second, stats.hard_counts
        cost = 0.0
        centres = block.local(self.centres)
        step = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // (k * d))
        centred = np.empty((k, d, min(n, step)), xt.dtype)
        for rows in chunks(n, step):
            width = rows.stop - rows.start
            c = centred[:, :, :width]
            np.subtract(xt[None, :, rows], centres[:, :, None], out=c)
            distances = np.einsum("kdn,kdn->kn", c, c)
            nearest = distances.argmin(axis=0)
            weight = np.ones(width) if w is None else w[rows]
            resp_t = np.zeros((k, width), xt.dtype)
            resp_t[nearest, np.arange(width)] = weight
            cost += float(distances[nearest, np.arange(width)] @ weight)
            hard_counts += np.bincount(nearest, minlength=k)
            c_nk, c_first, c_second = stats_from_resp(c, resp_t, self.covariance_type)
            nk += c_nk
            first += c_first
            second += c_second
        weight_sum = float(n if w is None else w.sum())
        return SufficientStats(n, weight_sum, -cost, nk, first, second, hard_counts)


def run_local_pass(blocks: Sequence[Block], n_features: int, requests: Sequence[Request]) -> list[Partial]:
    """A pass over in-memory blocks (for tests and driver-side fits)."""
    results = [request.empty(n_features) for request in requests]
    for block in blocks:
        for i, request in enumerate(requests):
            results[i] = results[i].merge(request.on_block(block))
    return results
