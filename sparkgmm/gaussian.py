"""Gaussian densities through the Cholesky factor of the precision, for the four covariance types.

Pure NumPy/SciPy: this module never imports pyspark. Shapes follow scikit-learn:

=============  ====================  ======================
type           covariances           precisions_cholesky
=============  ====================  ======================
``full``       (k, d, d)             (k, d, d)
``tied``       (d, d)                (d, d)
``diag``       (k, d)                (k, d)
``spherical``  (k,)                  (k,)
=============  ====================  ======================

A precision Cholesky factor ``P`` satisfies ``inv(cov) = P @ P.T``; whitening a centred row is ``y = (x - mu) @ P``,
so the squared Mahalanobis distance is ``sum(y**2)`` and ``log det(inv(cov)) = 2 * sum(log(diag(P)))``.
No matrix inverse or determinant is ever formed.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from .errors import InputError

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
LOG_2PI = float(np.log(2.0 * np.pi))


class CovarianceError(InputError):
    """A covariance is not symmetric positive definite, so it has no Cholesky factor."""


def check_covariance_type(covariance_type: str) -> str:
    if covariance_type not in COVARIANCE_TYPES:
        raise InputError(
            f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}; got {covariance_type!r}"
        )
    return covariance_type


def covariances_shape(covariance_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """The shape scikit-learn gives ``covariances_`` for this type."""
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[check_covariance_type(covariance_type)]


def n_covariance_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters in the covariances (for BIC/AIC)."""
    d = n_features
    return {
        "full": n_components * d * (d + 1) // 2,
        "tied": d * (d + 1) // 2,
        "diag": n_components * d,
        "spherical": n_components,
    }[check_covariance_type(covariance_type)]


_NOT_PD_ADVICE = (
    "; the data may have duplicate rows, constant features or too few rows for this many components: "
    "increase regCovar (reg_covar), use fewer components, or a simpler covariance type"
)


def _full_precision_cholesky(cov: np.ndarray, what: str) -> np.ndarray:
    """``L^-T`` for the lower Cholesky factor ``L`` of ``cov``: an upper-triangular ``U`` with ``U U^T`` the
    precision. The triangular inverse is LAPACK's ``trtri`` (the same substitution as solving ``L X = I``, without
    the ~0.5 ms per call that ``scipy.linalg.solve_triangular`` costs at d=10: the sample search builds thousands)."""
    try:
        cov_chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise CovarianceError(f"{what} is not positive definite{_NOT_PD_ADVICE}") from None
    if not np.all(np.isfinite(cov_chol)):
        raise CovarianceError(f"{what} has non-finite entries{_NOT_PD_ADVICE}")
    inverse, info = lapack.dtrtri(cov_chol, lower=1)
    if info != 0:
        raise CovarianceError(f"{what} is singular{_NOT_PD_ADVICE}")
    return inverse.T


def precisions_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of the precision matrices; raises CovarianceError naming the bad component."""
    check_covariance_type(covariance_type)
    if covariance_type == "full":
        return np.stack(
            [_full_precision_cholesky(c, f"covariance of component {i}") for i, c in enumerate(covariances)]
        )
    if covariance_type == "tied":
        return _full_precision_cholesky(covariances, "tied covariance")
    bad = ~(covariances > 0.0) | ~np.isfinite(covariances)
    if np.any(bad):
        component = int(np.argwhere(bad)[0][0])
        raise CovarianceError(
            f"{covariance_type} covariance of component {component} has a non-positive or non-finite "
            f"variance{_NOT_PD_ADVICE}"
        )
    return 1.0 / np.sqrt(covariances)


def invalid_components(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Indices of the components whose covariance is not positive definite (none for ``tied``: its one matrix is no
    component's alone)."""
    if covariance_type == "tied":
        return np.arange(0)
    if covariance_type == "full":
        try:
            if np.all(np.isfinite(np.linalg.cholesky(covariances))):
                return np.arange(0)
        except np.linalg.LinAlgError:
            pass
        bad = []
        for i, c in enumerate(covariances):
            try:
                _full_precision_cholesky(c, "")
            except CovarianceError:
                bad.append(i)
        return np.asarray(bad, dtype=np.intp)
    bad = ~(covariances > 0.0) | ~np.isfinite(covariances)
    return np.flatnonzero(bad if bad.ndim == 1 else bad.any(axis=1))


def log_det_precision(prec_chol: np.ndarray, covariance_type: str, n_features: int, n_components: int) -> np.ndarray:
    """``log det(precision)`` per component, shape (k,)."""
    if covariance_type == "full":
        return 2.0 * np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.full(n_components, 2.0 * np.log(np.diag(prec_chol)).sum())
    if covariance_type == "diag":
        return 2.0 * np.log(prec_chol).sum(axis=1)
    return 2.0 * n_features * np.log(prec_chol)


def squared_mahalanobis_t(
    XT: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str,
    centred_out: np.ndarray | None = None,
) -> np.ndarray:
    """Squared Mahalanobis distance of every row to every mean, from *columnar* rows ``XT`` (d, n); shape (k, n).

    Rows are centred on each mean before whitening, so offset data loses no precision. When ``centred_out`` (shape
    (k, d, n)) is given, the centred columns ``XT - means[j][:, None]`` are left in it for the caller's second
    moments. The arithmetic runs in ``XT``'s dtype (float64 or float32). Feature-major rows and component-major
    outputs keep every elementwise operation and reduction on long contiguous runs (numpy handles short inner axes
    slowly); whitening is one matrix product per component.
    """
    d, n = XT.shape
    k = means.shape[0]
    dtype = XT.dtype
    means = means.astype(dtype, copy=False)
    prec_chol = prec_chol.astype(dtype, copy=False)
    centred = centred_out if centred_out is not None else np.empty((k, d, n), dtype)
    np.subtract(XT[None, :, :], means[:, :, None], out=centred)
    out = np.empty((k, n), dtype)
    scratch = np.empty((d, n), dtype)
    if covariance_type in ("full", "tied"):
        ones = np.ones(d, dtype)
        factors_t = np.swapaxes(prec_chol, -1, -2)
        for j in range(k):
            np.matmul(factors_t[j] if covariance_type == "full" else factors_t, centred[j], out=scratch)
            scratch *= scratch
            np.matmul(ones, scratch, out=out[j])
        return out
    precisions = prec_chol**2 if covariance_type == "diag" else np.repeat((prec_chol**2)[:, None], d, axis=1)
    for j in range(k):
        np.multiply(centred[j], centred[j], out=scratch)
        np.matmul(precisions[j], scratch, out=out[j])
    return out


def log_gaussian_prob_t(
    XT: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str,
    centred_out: np.ndarray | None = None,
) -> np.ndarray:
    """``log N(x_i | mu_j, cov_j)`` from columnar rows ``XT`` (d, n), component-major: shape (k, n)."""
    d = XT.shape[0]
    k = means.shape[0]
    out = squared_mahalanobis_t(XT, means, prec_chol, covariance_type, centred_out)
    half_log_det = 0.5 * log_det_precision(prec_chol, covariance_type, d, k)
    out *= -0.5
    out += (half_log_det - 0.5 * d * LOG_2PI).astype(out.dtype)[:, None]
    return out


def log_gaussian_prob(X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray, covariance_type: str) -> np.ndarray:
    """``log N(x_i | mu_j, cov_j)`` for every row of ``X`` (n, d) and component: shape (n, k)."""
    return log_gaussian_prob_t(np.ascontiguousarray(X.T), means, prec_chol, covariance_type).T
