"""The bounded sample a conversion keeps of the rows it reads: at most ``capacity`` rows, drawn without replacement
with probability proportional to the row weights (Efraimidis & Spirakis' keys ``log(u) / w``, ``u`` from the row's
hash and the seed: ``passes.row_uniforms``), merged associatively. Pure NumPy: never imports pyspark.

The kept rows are those of the largest keys, and a key is a function of the row's values, its weight and the seed
alone, so the sample is the same whatever the partitioning, the number of cores or the block size. Two rows can tie
only if they hash alike, that is (but by a 2^-64 chance) when they are equal with equal weights: which of them is
kept changes nothing. Rows of zero weight are never kept.

A task streams its blocks through a ``SampleBuilder``, which keeps a running threshold (the ``capacity``-th largest
key so far) and copies only the rows above it: about ``capacity * (1 + ln(n / capacity))`` rows in all for ``n``
rows, instead of a sort per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .passes import Block, row_uniforms

# The sample's default size: 2^17 rows (16 MiB at d=16) lets every component of a few percent of the weight show
# thousands of rows, while the driver's search on it takes seconds.
DEFAULT_SAMPLE_ROWS = 1 << 17
# Keeps the sample's draws apart from every other stream seeded by the fit's seed.
SAMPLE_STREAM = 5


def sample_keys(seed: tuple[int, ...], block: Block) -> np.ndarray:
    """Each row's key ``log(u) / w`` (-inf for rows of zero weight, never kept)."""
    u = row_uniforms(seed, block.hashes)
    with np.errstate(divide="ignore"):
        if block.w is None:
            return np.log(u)
        positive = block.w > 0.0
        return np.where(positive, np.log(u) / np.where(positive, block.w, 1.0), -np.inf)


@dataclass(frozen=True, eq=False)
class RowSample:
    """At most ``capacity`` rows (m, d) float64 with their ``keys`` and ``hashes`` (m,), in no particular order until
    ``ordered``. ``merge`` keeps the largest keys of both."""

    capacity: int
    keys: np.ndarray
    hashes: np.ndarray
    rows: np.ndarray

    @classmethod
    def empty(cls, capacity: int, n_features: int) -> RowSample:
        return cls(capacity, np.empty(0), np.empty(0, np.uint64), np.empty((0, max(n_features, 0))))

    @property
    def n_rows(self) -> int:
        return self.keys.shape[0]

    def merge(self, other: RowSample) -> RowSample:
        if not other.n_rows:
            return self
        if not self.n_rows:
            return other
        if self.rows.shape[1] != other.rows.shape[1]:  # rows of another length: the input is refused anyway
            return RowSample.empty(self.capacity, 0)
        return _top(self.capacity, np.concatenate([self.keys, other.keys]),
                    np.concatenate([self.hashes, other.hashes]), np.concatenate([self.rows, other.rows]))

    def ordered(self) -> np.ndarray:
        """The rows (m, d), largest key first (equal keys by hash): any prefix of them is itself a sample of the
        same law, of that size."""
        order = np.lexsort((self.hashes, -self.keys))
        return np.ascontiguousarray(self.rows[order])


def _top(capacity: int, keys: np.ndarray, hashes: np.ndarray, rows: np.ndarray) -> RowSample:
    if keys.shape[0] > capacity:
        kept = np.argpartition(keys, keys.shape[0] - capacity)[keys.shape[0] - capacity:]
        keys, hashes, rows = keys[kept], hashes[kept], rows[kept]
    return RowSample(capacity, keys, hashes, rows)


class SampleBuilder:
    """One task's sample, built block by block (mutable; ``result`` gives the ``RowSample``)."""

    def __init__(self, capacity: int, seed: tuple[int, ...]):
        self.capacity = capacity
        self.seed = seed
        self._threshold = -np.inf
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._n_features = -1

    def add(self, block: Block) -> None:
        if self.capacity <= 0 or not block.n_rows:
            return
        self._n_features = block.xt.shape[0]
        keys = sample_keys(self.seed, block)
        above = np.flatnonzero(keys > self._threshold)
        if not above.size:
            return
        if above.size > self.capacity:
            above = above[np.argpartition(keys[above], above.size - self.capacity)[above.size - self.capacity:]]
        rows = block.xt[:, above].T.astype(np.float64)
        if block.origin is not None:
            rows += block.origin
        self._pending.append((keys[above], block.hashes[above], rows))
        self._pending_rows += above.size
        if self._pending_rows >= 2 * self.capacity:
            self._compact()

    def _compact(self) -> RowSample:
        keys, hashes, rows = (np.concatenate(parts) for parts in zip(*self._pending, strict=True))
        sample = _top(self.capacity, keys, hashes, rows)
        self._pending = [(sample.keys, sample.hashes, sample.rows)]
        self._pending_rows = sample.n_rows
        if sample.n_rows >= self.capacity:
            self._threshold = float(sample.keys.min())
        return sample

    def result(self, n_features: int | None = None) -> RowSample:
        if not self._pending:
            return RowSample.empty(self.capacity, self._n_features if n_features is None else n_features)
        return self._compact()


def draw_sample(blocks, capacity: int, seed: tuple[int, ...], n_features: int) -> RowSample:
    """The sample of in-memory blocks (what a conversion of the same rows keeps)."""
    builder = SampleBuilder(capacity, seed)
    for block in blocks:
        builder.add(block)
    return builder.result(n_features)
