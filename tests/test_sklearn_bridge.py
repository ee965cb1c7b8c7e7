"""scikit-learn both ways: Mixture.to_sklearn / Mixture.from_sklearn, and a fitted sklearn model as initialModel.

scikit-learn is the oracle: its own predict/score_samples on the converted model must agree with sparkgmm's, and a
model it fitted must come back with the same arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from helpers import make_mixture
from sparkgmm import InputError, Mixture



def test_to_sklearn_scores_as_the_mixture_does(covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4, seed=3)
    X, _ = mixture.sample(400, seed=1)
    gm = mixture.to_sklearn()
    np.testing.assert_allclose(gm.score_samples(X), mixture.score_samples(X), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(gm.predict_proba(X), mixture.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(gm.predict(X), mixture.predict(X))
    assert gm.bic(X) == pytest.approx(mixture.bic(X), rel=1e-12)
    assert gm.aic(X) == pytest.approx(mixture.aic(X), rel=1e-12)
    # precisions_ are what scikit-learn would compute by inverting the covariances (the oracle may invert)
    cov = mixture.covariances
    expected = np.linalg.inv(cov) if covariance_type in ("full", "tied") else 1.0 / cov
    np.testing.assert_allclose(gm.precisions_, expected, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # one iteration, on purpose
def test_to_sklearn_warm_start_continues_em_from_the_mixture():
    mixture = make_mixture("full", n_components=2, n_features=2, seed=5)
    X, _ = mixture.sample(2000, seed=2)
    warm = mixture.to_sklearn(warm_start=True, max_iter=1, tol=0.0)
    warm.fit(X)
    reference = SkGaussianMixture(2, covariance_type="full", max_iter=1, tol=0.0, weights_init=mixture.weights,
                                  means_init=mixture.means, precisions_init=np.linalg.inv(mixture.covariances))
    reference.fit(X)
    np.testing.assert_allclose(warm.means_, reference.means_, rtol=1e-10)
    np.testing.assert_allclose(warm.covariances_, reference.covariances_, rtol=1e-10)


def test_from_sklearn_takes_a_fitted_model_back(covariance_type):
    X, _ = make_mixture(covariance_type, n_components=3, n_features=3, seed=7).sample(600, seed=4)
    gm = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    mixture = Mixture.from_sklearn(gm)
    assert mixture.covariance_type == covariance_type
    np.testing.assert_array_equal(mixture.weights, gm.weights_)
    np.testing.assert_array_equal(mixture.means, gm.means_)
    np.testing.assert_array_equal(mixture.covariances, gm.covariances_)
    np.testing.assert_allclose(mixture.score_samples(X), gm.score_samples(X), rtol=1e-12, atol=1e-10)
    back = Mixture.from_sklearn(mixture.to_sklearn())
    np.testing.assert_array_equal(back.covariances, mixture.covariances)


def test_from_sklearn_refuses_an_unfitted_model_and_other_objects():
    with pytest.raises(InputError, match="not fitted"):
        Mixture.from_sklearn(SkGaussianMixture(2))
    with pytest.raises(InputError, match=r"expected a sklearn\.mixture\.GaussianMixture"):
        Mixture.from_sklearn(object())
    with pytest.raises(InputError, match="n_components from the mixture"):
        make_mixture("diag").to_sklearn(n_components=4)


def test_a_fitted_sklearn_model_is_an_initial_model():
    from sparkgmm import GaussianMixture

    X, _ = make_mixture("diag", n_components=2, n_features=3, seed=1).sample(300, seed=0)
    gm = SkGaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    initial = GaussianMixture(k=2, covarianceType="diag", initialModel=gm).getInitialModel()
    assert isinstance(initial, Mixture)
    np.testing.assert_array_equal(initial.means, gm.means_)
    np.testing.assert_array_equal(initial.covariances, gm.covariances_)
    with pytest.raises(InputError, match="not fitted"):
        GaussianMixture(k=2, initialModel=SkGaussianMixture(2))
