"""A bounded, mergeable quantile sketch of (weighted) real values, for the training log-densities; and the outlier
threshold read from the quantiles it gives. Pure NumPy: never imports pyspark.

``ValueSketch`` is a log-bucketed histogram in the manner of DDSketch (Masson, Rim & Lee, 2019). Values are taken
relative to a ``reference`` (``x - reference``); a difference ``v`` with ``|v| >= MIN_MAGNITUDE`` falls in bucket
``i = ceil(log_gamma |v|)``, which holds the magnitudes ``(gamma^(i-1), gamma^i]``, with
``gamma = (1 + ALPHA) / (1 - ALPHA)``; a bucket is answered by ``2 gamma^i / (gamma + 1)``, within ``ALPHA`` of every
magnitude it holds. Negative and positive differences have their own buckets, and a zero bucket holds
``|v| < MIN_MAGNITUDE``. Every bucket has a signed integer key, increasing with the values it holds (negative keys
for negative differences, 0 for the zero bucket), and the sketch keeps only the keys it has seen, sorted, with their
summed weights. So:

- **Bounded**: at most ``2 * BUCKETS_PER_SIGN + 1`` buckets (about 21,000), whatever the number of rows; in practice
  a few hundred to a few thousand (the buckets between the smallest and largest magnitude seen).
- **Mergeable**: ``merge`` adds the weights of equal keys. It is commutative, and associative up to float rounding
  of the summed weights (exact for integer weights), so a tree-reduce over any partitioning gives one pass's sketch.
- **Accurate in the tails**: ``quantiles(q)`` gives the inverted-CDF quantile (numpy's ``method="inverted_cdf"``,
  with weights: the smallest value ``x`` whose cumulative weight reaches ``q`` times the total) to within a relative
  error ``ALPHA`` on its distance to the reference, ``|x - reference|``, at every level, however small: the exact
  quantile lies in the bucket the sketch answers with. There is no additive rank error.
- **Clamped**: distances beyond ``MAX_MAGNITUDE`` count in the outermost bucket of their sign and are answered as
  about ``MAX_MAGNITUDE`` (infinite values too); distances below ``MIN_MAGNITUDE`` are answered as 0, within
  ``MIN_MAGNITUDE``. NaN values are ignored.

For log-densities the reference is the mixture's ceiling (``sparkgmm.passes.log_density_ceiling``), an upper bound of
``log p(x)``: the distance ``ceiling - log p(x)`` does not change when the data's units or offset do, and the low tail
(the outliers) is where it is large, so the relative accuracy bounds the threshold's error by a fraction of how far
below the ceiling it lies, whatever the units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError

ALPHA = 0.002
GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_MAGNITUDE = 1e-3
MAX_MAGNITUDE = 1e15
_LOWEST_INDEX = math.ceil(math.log(MIN_MAGNITUDE) / _LOG_GAMMA)
_HIGHEST_INDEX = math.ceil(math.log(MAX_MAGNITUDE) / _LOG_GAMMA)
BUCKETS_PER_SIGN = _HIGHEST_INDEX - _LOWEST_INDEX + 1
MAX_BUCKETS = 2 * BUCKETS_PER_SIGN + 1

# The quantile levels of the training log-densities that a fit keeps: a 1-2-5 series through the tail where
# outliers are drawn, then the quartile and the median for scale. Levels in between are interpolated
# (``threshold_at``).
QUANTILE_LEVELS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)
MAX_OUTLIER_LEVEL = 0.5
OUTLIER_LEVEL_RULE = f"must be a quantile level in (0, {MAX_OUTLIER_LEVEL:g}], such as 0.01 for the lowest 1%"


def bucket_keys(v: np.ndarray) -> np.ndarray:
    """The bucket key (int64) of every difference ``v`` (no NaN): increasing with ``v``, 0 for ``|v| < MIN_MAGNITUDE``,
    +-1 to +-BUCKETS_PER_SIGN for the rest (clamped beyond ``MAX_MAGNITUDE``)."""
    magnitude = np.abs(v)
    small = magnitude < MIN_MAGNITUDE
    with np.errstate(divide="ignore"):
        index = np.ceil(np.log(np.where(small, 1.0, magnitude)) / _LOG_GAMMA)
    offset = np.clip(index, _LOWEST_INDEX, _HIGHEST_INDEX).astype(np.int64) - (_LOWEST_INDEX - 1)
    return np.where(small, 0, np.where(v < 0.0, -offset, offset))


def bucket_values(keys: np.ndarray) -> np.ndarray:
    """The difference each bucket answers with (float64): within ``ALPHA`` of every difference it holds."""
    keys = np.asarray(keys, dtype=np.int64)
    index = np.abs(keys) + (_LOWEST_INDEX - 1)
    magnitude = 2.0 * np.exp(index * _LOG_GAMMA) / (GAMMA + 1.0)
    return np.where(keys == 0, 0.0, np.copysign(magnitude, keys))


@dataclass(frozen=True, eq=False)
class ValueSketch:
    """Weights of values by bucket (see the module's docstring): ``keys`` (m,) int64 sorted and distinct, ``counts``
    (m,) float64 positive, for values taken relative to ``reference``."""

    reference: float
    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def empty(cls, reference: float = 0.0) -> ValueSketch:
        return cls(float(reference), np.zeros(0, np.int64), np.zeros(0))

    @classmethod
    def of(cls, values: np.ndarray, weights: np.ndarray | None = None, reference: float = 0.0) -> ValueSketch:
        """The sketch of ``values`` (n,) with ``weights`` (n,) (None: 1 each; rows of weight 0 are left out)."""
        v = np.asarray(values, dtype=np.float64) - reference
        keep = ~np.isnan(v)
        if weights is not None:
            keep &= np.asarray(weights) > 0.0
        if not keep.all():
            v = v[keep]
            weights = None if weights is None else np.asarray(weights, dtype=np.float64)[keep]
        counts = np.bincount(bucket_keys(v) + BUCKETS_PER_SIGN, weights=weights, minlength=MAX_BUCKETS)
        present = np.flatnonzero(counts)
        return cls(float(reference), present - BUCKETS_PER_SIGN, counts[present].astype(np.float64))

    def merge(self, other: ValueSketch) -> ValueSketch:
        if other.reference != self.reference:
            raise ValueError(f"cannot merge sketches relative to {self.reference!r} and {other.reference!r}")
        if not other.keys.size:
            return self
        if not self.keys.size:
            return other
        if np.array_equal(self.keys, other.keys):
            return ValueSketch(self.reference, self.keys, self.counts + other.counts)
        keys, where = np.unique(np.concatenate([self.keys, other.keys]), return_inverse=True)
        counts = np.bincount(where, weights=np.concatenate([self.counts, other.counts]), minlength=keys.size)
        return ValueSketch(self.reference, keys, counts)

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    @property
    def n_buckets(self) -> int:
        return int(self.keys.size)

    def quantiles(self, levels: Sequence[float]) -> np.ndarray:
        """The inverted-CDF quantile at each level in [0, 1] (see the module's docstring); NaN when empty."""
        at = np.asarray(levels, dtype=np.float64)
        if not self.keys.size:
            return np.full(at.shape, np.nan)
        cumulative = np.cumsum(self.counts)
        position = np.searchsorted(cumulative, at * cumulative[-1], side="left")
        return bucket_values(self.keys[np.minimum(position, self.keys.size - 1)]) + self.reference


def is_outlier_level(level: float) -> bool:
    """Whether ``level`` can draw outliers (``outlierQuantile``, ``--outlier-quantile``); else see
    OUTLIER_LEVEL_RULE."""
    return math.isfinite(level) and 0.0 < level <= MAX_OUTLIER_LEVEL


def threshold_at(quantiles: Mapping[float, float], level: float) -> float:
    """The log-density below which a row counts as an outlier at ``level``: the stored quantile at that level, or
    between the two stored levels around it, linear in ``log(level)``. The quantile function rises with the level,
    so an interpolated threshold lies between its neighbours' quantiles, and the share of training weight below it
    between the neighbours' levels (up to the sketch's accuracy). A level outside the stored ones is refused."""
    stored = sorted((float(q), float(value)) for q, value in quantiles.items())
    if not stored:
        raise InputError("the model holds no log-density quantiles to draw an outlier threshold from")
    levels = [q for q, _ in stored]
    if not levels[0] <= level <= levels[-1]:
        raise InputError(f"outlier level {level:g} is outside the model's stored quantile levels, "
                         f"{levels[0]:g} to {levels[-1]:g}; pick one of {', '.join(f'{q:g}' for q in levels)}")
    above = next(i for i, q in enumerate(levels) if q >= level)
    if levels[above] == level or above == 0:
        return stored[above][1]
    (q0, t0), (q1, t1) = stored[above - 1], stored[above]
    share = (math.log(level) - math.log(q0)) / (math.log(q1) - math.log(q0))
    return t0 + share * (t1 - t0)
