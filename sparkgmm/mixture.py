"""``Mixture``: a fitted Gaussian mixture as plain, validated data, scoring NumPy arrays in one process.

Importing this module (or ``sparkgmm``) never imports pyspark: a serving process scores with it and has no JVM.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from .errors import InputError
from .gaussian import (
    check_covariance_type,
    covariances_shape,
    log_gaussian_prob,
    log_gaussian_prob_t,
    n_covariance_parameters,
    precisions_cholesky,
)
from .stats import MIN_CHUNK_ROWS, SCRATCH_DOUBLES, SeenStats

_WEIGHT_SUM_TOLERANCE = 1e-6
# The attributes of a fitted sklearn.mixture.GaussianMixture that hold its parameters.
SKLEARN_FITTED = ("weights_", "means_", "covariances_")


def as_float_matrix(X, n_features: int | None = None, what: str = "X") -> np.ndarray:
    """Validate rows for scoring: a finite 2-D float64 array with the expected number of columns."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1 and n_features is not None and X.shape[0] == n_features:
        X = X[None, :]
    if X.ndim != 2:
        raise InputError(f"{what} must be a 2-D array of shape (n_samples, n_features); got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise InputError(f"{what} has {X.shape[1]} features but the model was fitted with {n_features}")
    if not np.all(np.isfinite(X)):
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise InputError(f"{what} has {bad} rows with NaN or infinite values; drop or impute them first")
    return X


@dataclass(frozen=True, eq=False)
class Mixture:
    """Weights (k,), means (k, d) and covariances in scikit-learn's shapes for ``covariance_type``.

    Validated once on construction: shapes, finiteness, weights on the simplex, and every covariance positive
    definite (its precision Cholesky factor is computed here and kept in ``precisions_cholesky``). ``save`` and
    ``load`` read and write a model directory on this machine, no Spark (``sparkgmm.persistence``).

    ``seen``, when it is there, holds the statistics of the rows the mixture was learnt from (``SeenStats``): a batch
    fit leaves them, and ``partial_fit`` blends new rows into them (``sparkgmm.online``).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str = "full"
    seen: SeenStats | None = field(default=None, repr=False)
    precisions_cholesky: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_covariance_type(self.covariance_type)
        weights = np.array(self.weights, dtype=np.float64)
        means = np.array(self.means, dtype=np.float64)
        covariances = np.array(self.covariances, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise InputError(f"means must have shape (n_components, n_features); got {means.shape}")
        k, d = means.shape
        if weights.shape != (k,):
            raise InputError(f"weights must have shape ({k},) to match means; got {weights.shape}")
        expected = covariances_shape(self.covariance_type, k, d)
        if covariances.shape != expected:
            raise InputError(
                f"{self.covariance_type} covariances must have shape {expected} for {k} components and {d} "
                f"features; got {covariances.shape}"
            )
        for name, value in (("weights", weights), ("means", means), ("covariances", covariances)):
            if not np.all(np.isfinite(value)):
                raise InputError(f"{name} contain NaN or infinite values")
        if np.any(weights < 0.0) or abs(weights.sum() - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise InputError(f"weights must be non-negative and sum to 1; they sum to {weights.sum()!r}")
        for name, value in (("weights", weights), ("means", means), ("covariances", covariances)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        if self.seen is not None:
            self.seen.check(k, d, self.covariance_type)
        prec_chol = precisions_cholesky(covariances, self.covariance_type)
        prec_chol.setflags(write=False)
        object.__setattr__(self, "precisions_cholesky", prec_chol)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the model directory ``path`` on this machine (format version 2, atomically: a reader never sees half
        of it). A URI of another file system (``hdfs://``, ``s3a://``, ...) needs Spark:
        ``GaussianMixtureModel(mixture).write().save(uri)``."""
        from .persistence import save_mixture  # persistence builds Mixtures: it imports this module

        save_mixture(self, path, overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Mixture:
        """Read a model directory on this machine (either format version); checks shapes and dtypes, and fails with
        ``ModelFormatError`` naming the problem when it is damaged or not a model."""
        from .persistence import load_mixture  # persistence builds Mixtures: it imports this module

        return load_mixture(path)

    def partial_fit(self, X, sample_weight=None, *, reg_covar: float = 1e-6, decay_factor: float = 1.0,
                    half_life: float | None = None, time_unit: str = "batches", step_power: float | None = None,
                    average_after: int | None = None, effective_count: float | None = None,
                    max_reseeds: int = 8) -> Mixture:
        """This mixture updated with the rows ``X`` (n, d): one E-step over them, their statistics blended with those
        it remembers (``seen``) by the update rule, one M-step (``sparkgmm.online``). Returns the new mixture (this one
        is immutable). The rule: ``decay_factor`` per batch (``time_unit="batches"``) or per unit of weight
        (``"points"``), or ``half_life`` in those units, or stepwise EM with ``step_power`` in (0.5, 1] (with
        ``average_after`` n, the parameters are the average of its iterates once n batches have been seen). A mixture
        without ``seen`` needs ``effective_count``, the rows' worth its parameters stand for (0: forget them).
        ``sparkgmm.online.partial_fit`` also returns the new rows' log-likelihood before the update."""
        from .online import UpdateRule, partial_fit  # online builds Mixtures: it imports this module

        rule = UpdateRule(decay_factor, half_life, time_unit, step_power, average_after)
        return partial_fit(self, X, sample_weight, reg_covar=reg_covar, rule=rule, effective_count=effective_count,
                           max_reseeds=max_reseeds).mixture

    def __repr__(self) -> str:
        return (
            f"Mixture(n_components={self.n_components}, n_features={self.n_features}, "
            f"covariance_type={self.covariance_type!r}, weights={np.array2string(self.weights, precision=4)})"
        )

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def n_parameters(self) -> int:
        """Free parameters: covariances + means + (k - 1) weights, as scikit-learn counts them."""
        k, d = self.means.shape
        return n_covariance_parameters(self.covariance_type, k, d) + k * d + k - 1

    def _weighted_log_prob(self, X: np.ndarray) -> np.ndarray:
        """``log(weight_j) + log N(x_i | j)``, (n, k), in row chunks so scratch memory stays bounded."""
        k, d = self.means.shape
        out = np.empty((X.shape[0], k))
        chunk = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // (k * d))
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights)
        for start in range(0, X.shape[0], chunk):
            rows = X[start : start + chunk]
            out[start : start + chunk] = log_gaussian_prob(
                rows, self.means, self.precisions_cholesky, self.covariance_type)
        out += log_weights
        return out

    def _check(self, X) -> np.ndarray:
        return as_float_matrix(X, self.n_features)

    def score_samples(self, X) -> np.ndarray:
        """Log-density ``log p(x)`` of each row, shape (n,)."""
        return logsumexp(self._weighted_log_prob(self._check(X)), axis=1)

    def score(self, X) -> float:
        """Mean per-sample log-likelihood."""
        return self._score_checked(self._check(X))

    def _score_checked(self, X: np.ndarray) -> float:
        return float(logsumexp(self._weighted_log_prob(X), axis=1).mean())

    def predict_proba(self, X) -> np.ndarray:
        """Responsibilities, shape (n, k); rows sum to one."""
        return self.log_density_and_proba(X)[1]

    def log_density_and_proba(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(score_samples(X), predict_proba(X))`` from one pass over the rows."""
        log_density, proba_t = self.log_density_and_proba_t(np.ascontiguousarray(self._check(X).T))
        return log_density, np.ascontiguousarray(proba_t.T)

    def log_density_and_proba_t(self, xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log_density_and_proba`` of *columnar* rows ``xt`` (d, n) float64, trusted to be finite: log-densities (n,)
        and responsibilities component-major, (k, n). Every reduction runs over the k components as whole rows of
        (k, n) arrays (numpy is slow along short inner axes: twice as fast as the row-major form at k=8, d=16)."""
        k, d = self.means.shape
        n = xt.shape[1]
        log_density = np.empty(n)
        proba_t = np.empty((k, n))
        chunk = max(MIN_CHUNK_ROWS, SCRATCH_DOUBLES // (k * d))
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights)[:, None]
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            weighted = log_gaussian_prob_t(xt[:, rows], self.means, self.precisions_cholesky, self.covariance_type)
            weighted += log_weights
            top = weighted.max(axis=0)
            weighted -= top
            np.exp(weighted, out=weighted)
            total = weighted.sum(axis=0)
            np.divide(weighted, total, out=proba_t[:, rows])
            np.add(top, np.log(total), out=log_density[rows])
        return log_density, proba_t

    def predict(self, X) -> np.ndarray:
        """Index of the most probable component for each row."""
        return self._weighted_log_prob(self._check(X)).argmax(axis=1)

    def bic(self, X) -> float:
        """Bayesian information criterion on ``X``; lower is better."""
        X = self._check(X)
        return information_criteria(self._score_checked(X), X.shape[0], self.n_parameters)[0]

    def aic(self, X) -> float:
        """Akaike information criterion on ``X``; lower is better."""
        X = self._check(X)
        return information_criteria(self._score_checked(X), X.shape[0], self.n_parameters)[1]

    def sample(self, n_samples: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` rows; returns ``(X, labels)``. Reproducible for a given seed."""
        if int(n_samples) != n_samples or n_samples < 1:
            raise InputError(f"n_samples must be a positive integer; got {n_samples!r}")
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(int(n_samples), self.weights)
        labels = np.repeat(np.arange(self.n_components), counts)
        d = self.n_features
        noise = rng.standard_normal((int(n_samples), d))
        X = np.empty_like(noise)
        start = 0
        for j, count in enumerate(counts):
            block = noise[start : start + count]
            if self.covariance_type in ("full", "tied"):
                cov = self.covariances[j] if self.covariance_type == "full" else self.covariances
                # Rows of z @ L.T with cov = L L^T have covariance cov.
                X[start : start + count] = block @ np.linalg.cholesky(cov).T
            else:  # diag (d,) or spherical scalar standard deviations broadcast over the row
                X[start : start + count] = block * np.sqrt(self.covariances[j])
            X[start : start + count] += self.means[j]
            start += count
        return X, labels

    def to_sklearn(self, **params):
        """This mixture as a fitted ``sklearn.mixture.GaussianMixture``: ``predict``, ``predict_proba``,
        ``score_samples``, ``bic`` and ``sample`` work at once. ``params`` go to its constructor (``reg_covar``,
        ``max_iter``, ``warm_start``, ...); with ``warm_start=True`` its ``fit`` continues EM from here (scikit-learn
        ran no iterations of its own: ``converged_`` is False and ``n_iter_`` 0). Needs the optional extra
        ``sparkgmm[sklearn]``; the arrays keep their shapes (they are scikit-learn's), and its precisions are products
        of this mixture's Cholesky factors (no inverse is formed)."""
        try:
            from sklearn.mixture import GaussianMixture
        except ImportError:
            raise InputError("Mixture.to_sklearn needs scikit-learn: pip install 'sparkgmm[sklearn]'") from None
        for name in ("n_components", "covariance_type"):
            if name in params:
                raise InputError(f"to_sklearn takes {name} from the mixture; leave it out of the params")
        gm = GaussianMixture(n_components=self.n_components, covariance_type=self.covariance_type, **params)
        self.fill_sklearn(gm)
        # scikit-learn ran no EM here: no iterations, no bound, not "converged" by its own measure. converged_ must
        # exist all the same: it is how a warm-started fit knows to start from these parameters.
        gm.converged_, gm.n_iter_, gm.lower_bound_ = False, 0, -np.inf
        return gm

    def fill_sklearn(self, gm) -> None:
        """Set a scikit-learn mixture's fitted parameters from this mixture: ``weights_``, ``means_``,
        ``covariances_``, ``precisions_cholesky_``, ``precisions_`` (products of the Cholesky factors) and
        ``n_features_in_``."""
        prec_chol = self.precisions_cholesky
        if self.covariance_type == "full":
            precisions = prec_chol @ prec_chol.transpose(0, 2, 1)
        elif self.covariance_type == "tied":
            precisions = prec_chol @ prec_chol.T
        else:
            precisions = prec_chol**2
        gm.weights_, gm.means_, gm.covariances_ = (
            np.array(self.weights), np.array(self.means), np.array(self.covariances))
        gm.precisions_cholesky_, gm.precisions_ = np.array(prec_chol), precisions
        gm.n_features_in_ = self.n_features

    @classmethod
    def from_sklearn(cls, gm) -> Mixture:
        """The mixture a fitted ``sklearn.mixture.GaussianMixture`` holds (its weights, means, covariances and type);
        scikit-learn itself is not imported."""
        if not all(hasattr(gm, name) for name in ("covariance_type", "n_components")):
            raise InputError(f"expected a sklearn.mixture.GaussianMixture; got {type(gm).__name__}")
        missing = [name for name in SKLEARN_FITTED if not hasattr(gm, name)]
        if missing:
            raise InputError(f"the scikit-learn GaussianMixture is not fitted (it has no {', '.join(missing)}): fit "
                             "it first")
        return cls(gm.weights_, gm.means_, gm.covariances_, gm.covariance_type)


def information_criteria(mean_log_likelihood: float, n_samples: float, n_parameters: int) -> tuple[float, float]:
    """``(BIC, AIC)`` from the mean per-sample log-likelihood over ``n_samples`` rows."""
    total = mean_log_likelihood * n_samples
    return -2.0 * total + n_parameters * float(np.log(n_samples)), -2.0 * total + 2.0 * n_parameters
