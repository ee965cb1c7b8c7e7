"""The weighted mean and covariance of the data's columns, gathered block by block and merged associatively, so that
the conversion pass that packs the blocks can also give the data's moments (the Bayesian mixture's default priors)
without a pass of its own. Pure NumPy: never imports pyspark.

Each block is centred on its own weighted mean before its scatter is formed, and parts merge with the pairwise
update of Chan, Golub & LeVeque (1979): with ``delta = mean_b - mean_a`` and ``W = W_a + W_b``,

- ``mean = mean_a + delta * W_b / W``
- ``scatter = scatter_a + scatter_b + outer(delta, delta) * W_a * W_b / W``

Nothing is an uncentred sum of squares, so data far from zero keeps its spread's digits (the textbook
``sum w x x^T - W mean mean^T`` loses them all once the offset dwarfs the spread).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .passes import Block


@dataclass(frozen=True, eq=False)
class ColumnMoments:
    """The weighted moments of some rows of ``d`` features: ``weight_sum`` W (the rows' count without weights),
    ``mean`` (d,) float64 the weighted mean, ``scatter`` (d, d) float64 ``sum_i w_i (x_i - mean)(x_i - mean)^T``.
    ``merge`` is associative and commutative; rows of zero total weight leave the other side as it is."""

    weight_sum: float
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> ColumnMoments:
        return cls(0.0, np.zeros(n_features), np.zeros((n_features, n_features)))

    @classmethod
    def of_block(cls, block: Block) -> ColumnMoments:
        """The moments of the rows a block holds, in float64 whatever the block's dtype: a float32 block's rows are
        its values plus its ``origin``, which only shifts the mean (the scatter is taken in the block's frame)."""
        x = block.xt.astype(np.float64, copy=False)
        d, n = x.shape
        w = block.w
        weight_sum = float(n if w is None else w.sum())
        if weight_sum <= 0.0:
            return cls.empty(d)
        local_mean = (x.sum(axis=1) if w is None else x @ w) / weight_sum
        centred = x - local_mean[:, None]
        if w is not None:
            centred *= np.sqrt(w)
        scatter = centred @ centred.T
        mean = local_mean if block.origin is None else local_mean + block.origin
        return cls(weight_sum, mean, scatter)

    @property
    def n_features(self) -> int:
        return self.mean.shape[0]

    def merge(self, other: ColumnMoments) -> ColumnMoments:
        if other.n_features != self.n_features:
            raise ValueError(f"cannot merge the moments of {self.n_features} and {other.n_features} features")
        if other.weight_sum <= 0.0:
            return self
        if self.weight_sum <= 0.0:
            return other
        weight_sum = self.weight_sum + other.weight_sum
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.weight_sum / weight_sum)
        between = self.weight_sum * other.weight_sum / weight_sum
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * between
        return ColumnMoments(weight_sum, mean, scatter)

    def covariance(self, ddof: float = 0.0) -> np.ndarray:
        """The weighted covariance (d, d): ``scatter / (W - ddof)``. With ``ddof=1`` the weights count rows (frequency
        weights): a row of weight 3 counts as three equal rows, as ``np.cov`` of the replicated rows. That needs a
        total weight above ``ddof``; weights scaled to sum to 1 have none, and want ``ddof=0``."""
        if self.weight_sum <= ddof:
            raise ValueError(f"the covariance with ddof={ddof} needs a total weight above {ddof}; the rows weigh "
                             f"{self.weight_sum}")
        return self.scatter / (self.weight_sum - ddof)
