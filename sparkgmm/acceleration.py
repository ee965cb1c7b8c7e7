"""SQUAREM (Varadhan & Roland, 2008) for EM on Gaussian mixtures: extrapolate from two EM steps. Pure NumPy.

From a point ``theta0`` and its EM images ``theta1 = F(theta0)`` and ``theta2 = F(theta1)``, with ``r = theta1 -
theta0`` and ``v = theta2 - 2 theta1 + theta0``, the squared step is ``theta0 + 2 s r + s^2 v`` with the step length
``s = |r| / |v|`` (their scheme SqS3), clamped to ``[1, step_max]``; ``s = 1`` gives ``theta2`` exactly, the plain
EM step. ``step_max`` starts at 1, grows fourfold each time the step reaches it and shrinks fourfold when an
extrapolated point is rejected, as in the authors' reference implementation.

The arithmetic runs in a parameterisation in which every point is a valid mixture, so an extrapolation can only fail
numerically: log-weights (softmax back onto the simplex), means as they are, and each covariance as its lower
Cholesky factor with the logarithm of its diagonal (so ``L L^T`` is positive definite); diagonal and spherical
variances as logarithms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from .gaussian import CovarianceError
from .mixture import Mixture

STEP_GROWTH = 4.0
# Beyond this the step is no longer an acceleration but a jump: the reference implementation has no cap, but a bound
# keeps a wild step from costing more than one wasted pass.
STEP_CAP = 4.0**6


def _cholesky_parameters(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of ``cov`` (..., d, d) with its diagonal replaced by its logarithm."""
    factor = np.linalg.cholesky(cov)
    d = cov.shape[-1]
    diagonal = np.arange(d)
    factor[..., diagonal, diagonal] = np.log(factor[..., diagonal, diagonal])
    return factor


def _covariance_from_parameters(params: np.ndarray) -> np.ndarray:
    factor = np.tril(params)
    d = params.shape[-1]
    diagonal = np.arange(d)
    factor[..., diagonal, diagonal] = np.exp(factor[..., diagonal, diagonal])
    return factor @ np.swapaxes(factor, -1, -2)


def to_vector(mixture: Mixture) -> np.ndarray:
    """The mixture as one unconstrained vector (see the module's docstring)."""
    if mixture.covariance_type in ("full", "tied"):
        cov = _cholesky_parameters(mixture.covariances)
        d = mixture.n_features
        lower = np.tril_indices(d)
        cov = cov[..., lower[0], lower[1]]
    else:
        cov = np.log(mixture.covariances)
    with np.errstate(divide="ignore"):
        log_weights = np.log(mixture.weights)
    return np.concatenate([log_weights, mixture.means.ravel(), cov.ravel()])


def from_vector(vector: np.ndarray, like: Mixture) -> Mixture:
    """The mixture a vector of ``to_vector`` stands for; raises CovarianceError (an InputError) if it is not a
    valid mixture in floating point."""
    k, d = like.means.shape
    log_weights, means, cov = np.split(vector, [k, k + k * d])
    if not np.all(np.isfinite(vector[k:])):
        raise CovarianceError("extrapolated parameters are not finite")
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    if like.covariance_type in ("full", "tied"):
        lower = np.tril_indices(d)
        shape = (k, d, d) if like.covariance_type == "full" else (d, d)
        params = np.zeros(shape)
        params[..., lower[0], lower[1]] = cov.reshape(shape[:-2] + (-1,))
        covariances = _covariance_from_parameters(params)
    else:
        covariances = np.exp(cov).reshape(like.covariances.shape)
    return Mixture(weights, means.reshape(k, d), covariances, like.covariance_type)


@dataclass
class Squarem:
    """The step-length state of one candidate's SQUAREM run."""

    step_max: float = 1.0
    extrapolations: int = 0
    rejections: int = 0

    def extrapolate(self, theta0: Mixture, theta1: Mixture, theta2: Mixture) -> Mixture | None:
        """The squared step from three successive EM points, or None when it would be the plain EM step or is not
        a valid mixture (the caller then takes ``theta2``)."""
        try:
            x0, x1, x2 = to_vector(theta0), to_vector(theta1), to_vector(theta2)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            return None
        r = x1 - x0
        v = x2 - 2.0 * x1 + x0
        finite = np.isfinite(r) & np.isfinite(v)  # a weight of exactly 0 has log-weight -inf: leave it alone
        r_norm, v_norm = float(np.linalg.norm(r[finite])), float(np.linalg.norm(v[finite]))
        if not (v_norm > 0.0 and r_norm > 0.0):
            return None
        step = min(max(r_norm / v_norm, 1.0), self.step_max)
        if step >= self.step_max:
            self.step_max = min(self.step_max * STEP_GROWTH, STEP_CAP)
        if step == 1.0:
            return None
        point = np.where(finite, x0 + 2.0 * step * r + step * step * v, x2)
        try:
            extrapolated = from_vector(point, theta2)
        except (CovarianceError, ValueError, np.linalg.LinAlgError):
            self.rejected()
            return None
        self.extrapolations += 1
        return extrapolated

    def rejected(self) -> None:
        self.rejections += 1
        self.step_max = max(1.0, self.step_max / STEP_GROWTH)
