"""sparkgmm: Gaussian mixture models fitted with EM on Apache Spark.

``sparkgmm.Mixture`` (the fitted model as plain data, scoring NumPy arrays) imports no pyspark. The Spark estimator
``sparkgmm.GaussianMixture``, ``sparkgmm.BayesianGaussianMixture``, their ``GaussianMixtureModel`` and
``sparkgmm.select_model`` load pyspark on first access.
"""

from .errors import InputError
from .gaussian import COVARIANCE_TYPES, CovarianceError
from .mixture import Mixture
from .persistence import ModelFormatError

__version__ = "0.1.0"

_SPARK_NAMES = ("GaussianMixture", "GaussianMixtureModel", "GaussianMixtureSummary")
_BAYESIAN_NAMES = ("BayesianGaussianMixture",)
_SELECTION_NAMES = ("ModelSelection", "select_model")

# ruff cannot see that the starred tuples hold strings (PLE0604)
__all__ = ["COVARIANCE_TYPES", "CovarianceError", "InputError", "Mixture", "ModelFormatError",  # noqa: PLE0604
           *_SPARK_NAMES, *_BAYESIAN_NAMES, *_SELECTION_NAMES]


def __getattr__(name: str):
    if name in _SPARK_NAMES:
        from .spark import estimator

        return getattr(estimator, name)
    if name in _BAYESIAN_NAMES:
        from .spark import bayesian

        return getattr(bayesian, name)
    if name in _SELECTION_NAMES:
        from .spark import selection

        return getattr(selection, name)
    raise AttributeError(f"module 'sparkgmm' has no attribute {name!r}")
