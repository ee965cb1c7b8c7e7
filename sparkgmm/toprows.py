"""``TopRows``: a bounded set of rows with the largest keys, merged associatively. Pure NumPy.

It carries every random or ranked choice of rows through a tree-reduce without ever growing with the rows: weighted
samples (keys ``log(u) / w``), k-means|| draws (keys ``w d^2 / u``) and the rows a mixture explains worst (keys
``-log p(x)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TopRows:
    """At most ``capacity`` rows (m, d) with the largest ``keys`` (m,) seen; merging keeps the largest of both.

    Ties are broken by the rows' values, so the kept set does not depend on the order of the merges.
    """

    capacity: int
    keys: np.ndarray
    rows: np.ndarray

    @classmethod
    def empty(cls, capacity: int, n_features: int) -> TopRows:
        return cls(capacity, np.empty(0), np.empty((0, n_features)))

    @classmethod
    def of(cls, capacity: int, keys: np.ndarray, rows_t: np.ndarray, origin: np.ndarray | None = None) -> TopRows:
        """The top ``capacity`` of ``keys`` over the columns of ``rows_t`` (d, n); keys of -inf never count. Kept rows
        are float64, with ``origin`` (d,) added back when the columns are stored relative to it."""
        candidates = np.flatnonzero(keys > -np.inf)
        if candidates.size > capacity:
            candidates = candidates[np.argpartition(keys[candidates], -capacity)[-capacity:]]
        rows = rows_t[:, candidates].T.astype(np.float64)
        if origin is not None:
            rows += origin
        return cls._sorted(capacity, keys[candidates], rows)

    @classmethod
    def _sorted(cls, capacity: int, keys: np.ndarray, rows: np.ndarray) -> TopRows:
        order = np.lexsort((*rows.T[::-1], -keys))[:capacity] if keys.size else np.arange(0)
        return cls(capacity, keys[order], np.ascontiguousarray(rows[order]))

    def merge(self, other: TopRows) -> TopRows:
        return TopRows._sorted(
            self.capacity, np.concatenate([self.keys, other.keys]), np.concatenate([self.rows, other.rows])
        )
