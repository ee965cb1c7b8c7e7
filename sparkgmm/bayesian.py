"""Variational Bayesian Gaussian mixtures: the priors, the variational posterior, its M-step and its lower bound, with
scikit-learn's model and meaning (``sklearn.mixture.BayesianGaussianMixture``; Bishop, *Pattern Recognition and
Machine Learning*, 10.2, and Blei & Jordan, 2006, for the Dirichlet process). Pure NumPy/SciPy: never imports pyspark.

The weights have a Dirichlet-process prior (stick-breaking, truncated at ``k`` components) or a Dirichlet
distribution prior of concentration ``weightConcentrationPrior``; each component's mean and precision a
Gaussian-Wishart prior: mean ``meanPrior`` with precision scale ``meanPrecisionPrior``, ``degreesOfFreedomPrior``
degrees of freedom and scale ``covariancePrior`` (in the covariance type's shape).

The variational E-step is EM's pass with other per-component constants: ``log N(x | m_j, C_j)``, with ``m_j`` the
posterior means and ``C_j`` the posterior's expected covariances (as scikit-learn normalises them), plus
``E[log pi_j] - d/2 log nu_j + 1/2 (E[log |Lambda_j|]' - d / beta_j)``, so it asks the same pass for the same
statistics (``passes.EStep`` with ``log_weights``) and for one more scalar, ``sum_i w_i sum_j r_ij log r_ij``, which
the lower bound needs. The M-step starts from EM's (``stats.m_step``: counts, weighted means and covariances with
``regCovar``, all centred on the current means) and adds the priors on the driver. The lower bound is scikit-learn's
(its constant terms left out), computed after each M-step from the E-step's responsibilities, and ``tol`` applies to
its change, the total over the rows, as there.

The fitted model's mixture (``Posterior.mixture``) holds the posterior's expected weights, the posterior means and
the expected covariances: what scikit-learn reports as ``weights_``, ``means_`` and ``covariances_``. Scoring uses
that mixture, as any ``GaussianMixtureModel``'s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betaln, digamma, gammaln

from .errors import InputError
from .gaussian import CovarianceError, check_covariance_type, log_det_precision
from .mixture import Mixture
from .stats import NK_EPS, SufficientStats, m_step

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
DEFAULT_PRIOR_TYPE = "dirichlet_process"
# A component counts as used when its expected weight is above this (the summary's effectiveComponents).
EFFECTIVE_WEIGHT = 1e-2


def _covariance_prior_shape(covariance_type: str, n_features: int) -> tuple[int, ...]:
    return {"full": (n_features, n_features), "tied": (n_features, n_features), "diag": (n_features,),
            "spherical": ()}[check_covariance_type(covariance_type)]


def shaped_covariance(data_covariance: np.ndarray, covariance_type: str) -> np.ndarray:
    """The data's covariance (d, d) in the covariance type's shape, as scikit-learn's default covariance prior: the
    matrix (full, tied), its diagonal (diag), the mean of its diagonal (spherical)."""
    data_covariance = np.atleast_2d(np.asarray(data_covariance, dtype=np.float64))
    if covariance_type in ("full", "tied"):
        return data_covariance.copy()
    variances = np.diag(data_covariance).copy()
    return variances if covariance_type == "diag" else np.asarray(variances.mean())


@dataclass(frozen=True, eq=False)
class Prior:
    """The priors of a Bayesian mixture of ``n_components`` (the upper bound on k) in ``n_features`` dimensions; see
    the module's docstring. ``covariance`` has the covariance type's shape: (d, d) full and tied, (d,) diag, ()
    spherical."""

    prior_type: str
    covariance_type: str
    n_components: int
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray

    def __post_init__(self) -> None:
        if self.prior_type not in PRIOR_TYPES:
            raise InputError(f"weightConcentrationPriorType must be one of {', '.join(PRIOR_TYPES)}; got "
                             f"{self.prior_type!r}")
        check_covariance_type(self.covariance_type)
        mean = np.array(self.mean, dtype=np.float64)
        covariance = np.array(self.covariance, dtype=np.float64)
        d = mean.shape[0] if mean.ndim == 1 else -1
        if d < 1:
            raise InputError(f"meanPrior must be a vector of the features; got shape {mean.shape}")
        for name, value in (("weightConcentrationPrior", self.weight_concentration),
                            ("meanPrecisionPrior", self.mean_precision)):
            if not (math.isfinite(value) and value > 0.0):
                raise InputError(f"{name}={value!r} must be > 0")
        if not (math.isfinite(self.degrees_of_freedom) and self.degrees_of_freedom > d - 1.0):
            raise InputError(f"degreesOfFreedomPrior={self.degrees_of_freedom!r} must be > n_features - 1 = {d - 1}")
        expected = _covariance_prior_shape(self.covariance_type, d)
        if covariance.shape != expected:
            raise InputError(f"covariancePrior for {self.covariance_type} covariances of {d} features must have "
                             f"shape {expected}; got {covariance.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(covariance))):
            raise InputError("meanPrior and covariancePrior must be finite")
        if self.covariance_type in ("full", "tied"):
            if not np.allclose(covariance, covariance.T, rtol=1e-10, atol=0.0):
                raise InputError("covariancePrior must be symmetric")
            try:
                np.linalg.cholesky(covariance)
            except np.linalg.LinAlgError:
                raise InputError("covariancePrior must be positive definite") from None
        elif np.any(covariance <= 0.0):
            raise InputError("covariancePrior must be positive")
        for name, array in (("mean", mean), ("covariance", covariance)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @classmethod
    def default(cls, n_components: int, covariance_type: str, data_mean: np.ndarray,
                data_covariance: np.ndarray | None,
                prior_type: str = DEFAULT_PRIOR_TYPE, weight_concentration: float | None = None,
                mean_precision: float | None = None, mean: np.ndarray | None = None,
                degrees_of_freedom: float | None = None, covariance: np.ndarray | None = None) -> Prior:
        """The priors with scikit-learn's defaults for what is not given: concentration ``1/k``, mean precision 1,
        the data's mean, ``d`` degrees of freedom and the data's covariance (``shaped_covariance``; it may be None
        when ``covariance`` is given)."""
        data_mean = np.asarray(data_mean, dtype=np.float64)
        d = data_mean.shape[0]
        if covariance is None and data_covariance is None:
            raise ValueError("the default covariance prior needs the data's covariance")
        return cls(
            prior_type, covariance_type, n_components,
            1.0 / n_components if weight_concentration is None else float(weight_concentration),
            1.0 if mean_precision is None else float(mean_precision),
            data_mean if mean is None else np.asarray(mean, dtype=np.float64),
            float(d) if degrees_of_freedom is None else float(degrees_of_freedom),
            np.asarray(covariance, dtype=np.float64) if covariance is not None
            else shaped_covariance(np.asarray(data_covariance), covariance_type),
        )


@dataclass(frozen=True, eq=False)
class Posterior:
    """The variational posterior, in scikit-learn's parametrisation: ``weight_concentration`` (2, k) for a
    Dirichlet process (the Beta parameters of the sticks), (k,) for a Dirichlet distribution; ``mean_precision``
    (k,); ``means`` (k, d); ``degrees_of_freedom`` (k,) (tied: one value, repeated); ``covariances`` the expected
    covariances in the type's shape (the Wishart scale's inverse over the degrees of freedom). ``mixture`` is the
    fitted model's mixture: expected weights, ``means`` and ``covariances``."""

    prior_type: str
    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    covariance_type: str
    mixture: Mixture = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.prior_type not in PRIOR_TYPES:
            raise InputError(f"unknown weight prior type {self.prior_type!r}")
        k, d = np.shape(self.means)
        concentration = np.array(self.weight_concentration, dtype=np.float64)
        expected = (2, k) if self.prior_type == "dirichlet_process" else (k,)
        if concentration.shape != expected:
            raise InputError(f"weight concentration must have shape {expected}; got {concentration.shape}")
        values = {"weight_concentration": concentration,
                  "mean_precision": np.array(self.mean_precision, dtype=np.float64).reshape(k),
                  "degrees_of_freedom": np.broadcast_to(np.asarray(self.degrees_of_freedom, np.float64), (k,)).copy()}
        for name, value in values.items():
            if not (np.all(np.isfinite(value)) and np.all(value > 0.0)):
                raise InputError(f"posterior {name.replace('_', ' ')} must be positive and finite")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        if np.any(values["degrees_of_freedom"] <= d - 1.0):
            raise InputError(f"posterior degrees of freedom must be > n_features - 1 = {d - 1}")
        mixture = Mixture(expected_weights(self.prior_type, concentration), self.means, self.covariances,
                          self.covariance_type)
        object.__setattr__(self, "means", mixture.means)
        object.__setattr__(self, "covariances", mixture.covariances)
        object.__setattr__(self, "mixture", mixture)

    @property
    def n_components(self) -> int:
        return self.mixture.n_components

    @property
    def n_features(self) -> int:
        return self.mixture.n_features

    def expected_log_weights(self) -> np.ndarray:
        """``E[log pi_j]`` under the posterior of the weights, (k,)."""
        c = self.weight_concentration
        if self.prior_type == "dirichlet_process":
            digamma_sum = digamma(c[0] + c[1])
            sticks_left = np.cumsum(digamma(c[1]) - digamma_sum)
            return digamma(c[0]) - digamma_sum + np.concatenate(([0.0], sticks_left[:-1]))
        return digamma(c) - digamma(c.sum())

    def estep_log_weights(self) -> np.ndarray:
        """The per-component constants of the variational E-step, (k,): added to ``log N(x | means, covariances)``
        they give scikit-learn's ``_estimate_weighted_log_prob`` (the expected log of weight times density)."""
        d = self.n_features
        dof = self.degrees_of_freedom
        log_lambda = d * math.log(2.0) + digamma(0.5 * (dof[None, :] - np.arange(d)[:, None])).sum(axis=0)
        return (self.expected_log_weights() - 0.5 * d * np.log(dof)
                + 0.5 * (log_lambda - d / self.mean_precision))

    def effective_components(self, threshold: float = EFFECTIVE_WEIGHT) -> int:
        """How many components have an expected weight above ``threshold``."""
        return int(np.count_nonzero(self.mixture.weights > threshold))


# A posterior's arrays in the order of its fields (after ``prior_type``): what checkpoints and model directories save.
POSTERIOR_ARRAYS = ("weight_concentration", "mean_precision", "means", "degrees_of_freedom", "covariances")


def expected_weights(prior_type: str, concentration: np.ndarray) -> np.ndarray:
    """The weights scikit-learn reports (``weights_``) from the posterior's concentration."""
    if prior_type == "dirichlet_process":
        total = concentration[0] + concentration[1]
        left = np.concatenate(([1.0], np.cumprod(concentration[1] / total)[:-1]))
        weights = concentration[0] / total * left
    else:
        weights = np.asarray(concentration, dtype=np.float64)
    return weights / weights.sum()


def variational_m_step(stats: SufficientStats, means: np.ndarray, prior: Prior, reg_covar: float) -> Posterior:
    """The posterior from statistics centred on ``means`` (those of the mixture the E-step ran under): scikit-learn's
    ``_m_step`` (``_estimate_weights``, ``_estimate_means``, ``_estimate_precisions``), fed by EM's M-step."""
    covariance_type = prior.covariance_type
    _, xk, sk = m_step(stats, means, covariance_type, reg_covar)
    nk = stats.nk + NK_EPS
    k = nk.shape[0]
    if prior.prior_type == "dirichlet_process":
        after = np.concatenate((np.cumsum(nk[::-1])[-2::-1], [0.0]))
        concentration = np.stack((1.0 + nk, prior.weight_concentration + after))
    else:
        concentration = prior.weight_concentration + nk
    mean_precision = prior.mean_precision + nk
    new_means = (prior.mean_precision * prior.mean + nk[:, None] * xk) / mean_precision[:, None]
    diff = xk - prior.mean
    shrink = prior.mean_precision / mean_precision  # (k,)
    if covariance_type == "full":
        dof = prior.degrees_of_freedom + nk
        scale = (prior.covariance + nk[:, None, None] * sk
                 + (nk * shrink)[:, None, None] * diff[:, :, None] * diff[:, None, :])
        covariances = scale / dof[:, None, None]
    elif covariance_type == "tied":
        dof = np.full(k, prior.degrees_of_freedom + nk.sum() / k)
        scale = (prior.covariance + sk * (nk.sum() / k)
                 + prior.mean_precision / k * ((nk / mean_precision) * diff.T) @ diff)
        covariances = scale / dof[0]
    elif covariance_type == "diag":
        dof = prior.degrees_of_freedom + nk
        covariances = (prior.covariance + nk[:, None] * (sk + shrink[:, None] * diff**2)) / dof[:, None]
    else:
        dof = prior.degrees_of_freedom + nk
        covariances = (prior.covariance + nk * (sk + shrink * np.mean(diff**2, axis=1))) / dof
    return Posterior(prior.prior_type, concentration, mean_precision, new_means, dof, covariances, covariance_type)


def _log_wishart_norm(dof: np.ndarray, log_det_precisions_chol: np.ndarray, n_features: int) -> np.ndarray:
    """The log of the Wishart distributions' normalisations, without the ``log pi`` term (scikit-learn's)."""
    return -(dof * log_det_precisions_chol + dof * n_features * 0.5 * math.log(2.0)
             + gammaln(0.5 * (dof[None, :] - np.arange(n_features)[:, None])).sum(axis=0))


def lower_bound(posterior: Posterior, entropy: float) -> float:
    """The variational lower bound, without its constant terms, as scikit-learn computes it: ``entropy`` is
    ``sum_i w_i sum_j r_ij log r_ij`` of the E-step that preceded the M-step giving ``posterior``."""
    k, d = posterior.n_components, posterior.n_features
    dof = posterior.degrees_of_freedom
    m = posterior.mixture
    half_log_det = 0.5 * log_det_precision(m.precisions_cholesky, m.covariance_type, d, k) - 0.5 * d * np.log(dof)
    if m.covariance_type == "tied":
        log_wishart = k * float(_log_wishart_norm(dof[:1], half_log_det[:1], d)[0])
    else:
        log_wishart = float(_log_wishart_norm(dof, half_log_det, d).sum())
    c = posterior.weight_concentration
    if posterior.prior_type == "dirichlet_process":
        log_norm_weight = -float(betaln(c[0], c[1]).sum())
    else:
        log_norm_weight = float(gammaln(c.sum()) - gammaln(c).sum())
    return -entropy - log_wishart - log_norm_weight - 0.5 * d * float(np.log(posterior.mean_precision).sum())


def to_sklearn(posterior: Posterior, prior: Prior, **params):
    """A fitted ``sklearn.mixture.BayesianGaussianMixture`` holding ``posterior`` and ``prior``: its ``predict``,
    ``predict_proba`` and ``score_samples`` use the variational expectations, as scikit-learn's own fit would, and
    with ``warm_start=True`` its ``fit`` goes on from here under the same priors. ``params`` go to its constructor
    (``max_iter``, ``tol``, ``reg_covar``, ``warm_start``, ...). scikit-learn ran no iterations of its own:
    ``converged_`` is False, ``n_iter_`` 0, ``lower_bound_`` -inf. Needs the optional extra ``sparkgmm[sklearn]``."""
    try:
        from sklearn.mixture import BayesianGaussianMixture
    except ImportError:
        raise InputError("to_sklearn needs scikit-learn: pip install 'sparkgmm[sklearn]'") from None
    for name in ("n_components", "covariance_type", *_SKLEARN_PRIORS):
        if name in params:
            raise InputError(f"to_sklearn takes {name} from the posterior and the priors; leave it out of the params")
    spherical = prior.covariance_type == "spherical"
    priors = {"weight_concentration_prior_type": prior.prior_type,
              "weight_concentration_prior": prior.weight_concentration,
              "mean_precision_prior": prior.mean_precision, "mean_prior": np.array(prior.mean),
              "degrees_of_freedom_prior": prior.degrees_of_freedom,
              "covariance_prior": float(prior.covariance) if spherical else np.array(prior.covariance)}
    model = BayesianGaussianMixture(n_components=posterior.n_components, covariance_type=posterior.covariance_type,
                                    **priors, **params)
    posterior.mixture.fill_sklearn(model)
    concentration = np.array(posterior.weight_concentration)
    model.weight_concentration_ = (
        (concentration[0], concentration[1]) if posterior.prior_type == "dirichlet_process" else concentration)
    model.mean_precision_ = np.array(posterior.mean_precision)
    dof = np.array(posterior.degrees_of_freedom)
    model.degrees_of_freedom_ = float(dof[0]) if posterior.covariance_type == "tied" else dof
    for name, value in priors.items():  # what scikit-learn's fit sets from the constructor's priors
        if name != "weight_concentration_prior_type":
            setattr(model, name + "_", value)
    model.converged_, model.n_iter_, model.lower_bound_ = False, 0, -np.inf
    return model


_SKLEARN_PRIORS = ("weight_concentration_prior_type", "weight_concentration_prior", "mean_precision_prior",
                   "mean_prior", "degrees_of_freedom_prior", "covariance_prior")


def from_sklearn(model) -> tuple[Posterior, Prior]:
    """The posterior and the priors of a fitted ``sklearn.mixture.BayesianGaussianMixture`` (scikit-learn itself
    is not imported)."""
    fitted = ("weight_concentration_", "mean_precision_", "means_", "degrees_of_freedom_", "covariances_",
              *(name + "_" for name in _SKLEARN_PRIORS[1:]))
    if not hasattr(model, "weight_concentration_prior_type"):
        raise InputError(f"expected a sklearn.mixture.BayesianGaussianMixture; got {type(model).__name__}")
    missing = [name for name in fitted if not hasattr(model, name)]
    if missing:
        raise InputError(f"the scikit-learn BayesianGaussianMixture is not fitted (it has no {', '.join(missing)}): "
                         "fit it first")
    k, covariance_type = model.n_components, model.covariance_type
    prior_type = model.weight_concentration_prior_type
    concentration = np.asarray(model.weight_concentration_, dtype=np.float64)
    posterior = Posterior(prior_type, concentration, model.mean_precision_, model.means_,
                          np.broadcast_to(np.asarray(model.degrees_of_freedom_, np.float64), (k,)),
                          model.covariances_, covariance_type)
    prior = Prior(prior_type, covariance_type, k, float(model.weight_concentration_prior_),
                  float(model.mean_precision_prior_), model.mean_prior_, float(model.degrees_of_freedom_prior_),
                  model.covariance_prior_)
    return posterior, prior


# --- merge moves ----------------------------------------------------------------------------------------------------
#
# Variational inference empties the components the data do not support only slowly: components sharing one cluster
# split its rows in proportion to their weights, and only terms of order 1/n_k pull them apart, so on large data they
# stay side by side for thousands of iterations. A merge move (Hughes & Sudderth, 2013) proposes to give the rows of
# a group of components to one of them and keeps the proposal when the lower bound rises. Everything the bound of the
# merged posterior needs is in one pass's statistics: the sufficient statistics add (re-centred), and the
# responsibilities' entropy term changes by ``group_entropy[g] - sum of component_entropy[j] over the group``.
# The groups proposed are the closest pairs and the nested groups of an agglomeration of the components (a cluster
# tiled by several components is merged whole: no pair of its tiles alone is a Gaussian).

# Iterations between merge moves, by default (mergeEvery). A merge check's pass also takes a logarithm per row for
# each component and each proposed group (3k groups at most), so it is not made every iteration.
DEFAULT_MERGE_EVERY = 10
# A component takes part in merges while its expected weight is above this.
MERGE_ALIVE_WEIGHT = 1e-4


def _full_covariances(mixture: Mixture) -> np.ndarray:
    """Every component's covariance as a (k, d, d) matrix."""
    k, d = mixture.means.shape
    c = mixture.covariances
    if mixture.covariance_type == "full":
        return np.array(c)
    if mixture.covariance_type == "tied":
        return np.broadcast_to(c, (k, d, d)).copy()
    variances = c if mixture.covariance_type == "diag" else np.repeat(c[:, None], d, axis=1)
    return variances[:, :, None] * np.eye(d)


def _separation(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """``delta^T (cov_a + cov_b)^-1 delta``, through a Cholesky factor."""
    factor = np.linalg.cholesky(cov_a + cov_b)
    whitened = np.linalg.solve(factor, mean_a - mean_b)
    return float(whitened @ whitened)


@dataclass(frozen=True)
class MergeProposals:
    """Groups of components to try merging: ``groups`` (G, k) boolean, one row per group; ``tree`` says which rows
    are the nodes of the agglomeration and from what they were joined: ``(row, left, right)``, children first, a child
    being another node's row or, as ``-1 - j``, the single component ``j``; the root, every used component in one, is
    no proposal (``row`` -1)."""

    groups: np.ndarray
    tree: tuple[tuple[int, int, int], ...] = ()


def merge_candidates(posterior: Posterior, max_pairs: int) -> MergeProposals:
    """What to try merging: the ``max_pairs`` closest pairs of used components (means apart in the metric of their
    summed covariances), and the nested groups of an agglomeration that repeatedly joins the two closest groups, each
    described by the weight, mean and covariance of its components together."""
    m = posterior.mixture
    k = m.n_components
    alive = [int(j) for j in np.flatnonzero(m.weights > MERGE_ALIVE_WEIGHT)]
    if len(alive) < 2:
        return MergeProposals(np.zeros((0, k), dtype=bool))
    covariances = _full_covariances(m)
    pairs = sorted((_separation(m.means[a], covariances[a], m.means[b], covariances[b]), a, b)
                   for i, a in enumerate(alive) for b in alive[i + 1:])
    rows: dict[frozenset[int], int] = {}

    def row_of(group: frozenset[int]) -> int:
        return rows.setdefault(group, len(rows))

    for _, a, b in pairs[:max_pairs]:
        row_of(frozenset((a, b)))
    # the agglomeration: each cluster of components as one Gaussian (weight, mean, covariance by moment matching)
    clusters = {frozenset([j]): (float(m.weights[j]), m.means[j], covariances[j]) for j in alive}
    node: dict[frozenset[int], int] = {frozenset([j]): -1 - j for j in alive}
    apart = {(frozenset([a]), frozenset([b])): distance for distance, a, b in pairs}  # kept up to date: O(k^2) in all
    tree = []
    while len(clusters) > 1:
        x, y = min(apart, key=lambda pair: (apart[pair], min(pair[0]), min(pair[1])))
        (wx, mx, cx), (wy, my, cy) = clusters.pop(x), clusters.pop(y)
        w = wx + wy
        mean = (wx * mx + wy * my) / w
        cov = (wx * (cx + np.outer(mx - mean, mx - mean)) + wy * (cy + np.outer(my - mean, my - mean))) / w
        apart = {pair: distance for pair, distance in apart.items() if not {x, y} & set(pair)}
        for other, (_, other_mean, other_cov) in clusters.items():
            apart[(other, x | y)] = _separation(other_mean, other_cov, mean, cov)
        clusters[x | y] = (w, mean, cov)
        node[x | y] = row_of(x | y) if len(clusters) > 1 else -1  # all in one: no proposal
        tree.append((node[x | y], node[x], node[y]))
    groups = np.zeros((len(rows), k), dtype=bool)
    for group, row in rows.items():
        groups[row, sorted(group)] = True
    return MergeProposals(groups, tuple(tree))


def _merged_stats(stats: SufficientStats, centres: np.ndarray, groups: np.ndarray) -> SufficientStats:
    """``stats`` with each of the disjoint ``groups`` (rows of a membership matrix) folded into its first member
    (re-centred on that member's centre), the others left empty."""
    nk, first, second = stats.nk.copy(), stats.first.copy(), stats.second.copy()
    full = second.ndim == 3
    for members in groups:
        a, *rest = np.flatnonzero(members)
        for b in rest:
            delta = centres[b] - centres[a]
            fb = first[b]
            first[a] += fb + nk[b] * delta
            if full:
                second[a] += second[b] + np.outer(fb, delta) + np.outer(delta, fb) + nk[b] * np.outer(delta, delta)
            else:
                second[a] += second[b] + 2.0 * fb * delta + nk[b] * delta**2
            nk[a] += nk[b]
            nk[b], first[b], second[b] = 0.0, 0.0, 0.0
    return dataclasses.replace(stats, nk=nk, first=first, second=second)


def _merged(stats: SufficientStats, centres: np.ndarray, prior: Prior, reg_covar: float, candidates: np.ndarray,
            rows: list[int]) -> tuple[Posterior, float]:
    """The posterior and lower bound after merging the disjoint groups ``candidates[rows]``."""
    if stats.component_entropy is None or stats.group_entropy is None:
        raise ValueError("a merge needs the pass's entropy per component and per group")
    groups = candidates[rows]
    entropy = stats.entropy - stats.component_entropy[groups.any(axis=0)].sum() + stats.group_entropy[rows].sum()
    posterior = variational_m_step(_merged_stats(stats, centres, groups), centres, prior, reg_covar)
    return posterior, lower_bound(posterior, float(entropy))


def _best_cut(proposals: MergeProposals, gains: np.ndarray) -> list[int]:
    """The disjoint nodes of the agglomeration whose merges gain most in sum (gains taken as additive): at each node,
    merging its group whole or the best of its two children's."""
    best: dict[int, tuple[float, list[int]]] = {}

    def value(child: int) -> tuple[float, list[int]]:
        return (0.0, []) if child < 0 else best[child]

    root: tuple[float, list[int]] = (0.0, [])
    for row, left, right in proposals.tree:
        (gl, cl), (gr, cr) = value(left), value(right)
        split = (gl + gr, cl + cr)
        whole = (float(gains[row]), [row]) if row >= 0 and np.isfinite(gains[row]) else (-math.inf, [])
        choice = whole if whole[0] > split[0] else split
        if row >= 0:
            best[row] = choice
        else:
            root = choice
    return root[1] if root[0] > 0.0 else []


def merge_move(stats: SufficientStats, centres: np.ndarray, prior: Prior, reg_covar: float,
               proposals: MergeProposals, bound: float) -> tuple[Posterior, float, int] | None:
    """The best merge of the ``proposals`` (the groups the pass measured) that raises the lower bound above ``bound``
    (that of the plain update from the same pass), or None. Each group is scored alone; then three ways of merging
    several are scored exactly: the best cut of the agglomeration (``_best_cut``), the disjoint groups that gain,
    best first, and the best group alone; the highest bound wins. Returns the posterior, its bound and how many
    components were merged away."""
    candidates = proposals.groups
    gains = np.full(candidates.shape[0], -math.inf)
    for row in range(candidates.shape[0]):
        try:
            gains[row] = _merged(stats, centres, prior, reg_covar, candidates, [row])[1] - bound
        except CovarianceError:
            continue
    if not candidates.shape[0] or gains.max() <= 0.0:
        return None
    greedy: list[int] = []
    used = np.zeros(candidates.shape[1], dtype=bool)
    for row in np.argsort(-gains, kind="stable"):
        if gains[row] > 0.0 and not (used & candidates[row]).any():
            greedy.append(int(row))
            used |= candidates[row]
    ways = {tuple(sorted(rows)) for rows in (greedy, _best_cut(proposals, gains), [int(np.argmax(gains))]) if rows}
    outcomes = []
    for rows in ways:
        try:
            posterior, merged_bound = _merged(stats, centres, prior, reg_covar, candidates, list(rows))
        except CovarianceError:
            continue
        outcomes.append((merged_bound, rows, posterior))
    if not outcomes:
        return None
    merged_bound, rows, posterior = max(outcomes, key=lambda o: o[0])
    if merged_bound <= bound:
        return None
    return posterior, merged_bound, int(candidates[list(rows)].sum()) - len(rows)
