"""Closed forms of the shrinkage experiment: the data-dependent ridge, its equal-trace plain
ridge, Wager's logistic penalty and the MLP measures (numpy only, no training)."""

from __future__ import annotations

import numpy as np
import pytest
from dropstudy_experiments import shrinkage_linear as SL
from dropstudy_experiments import shrinkage_logistic as SG
from dropstudy_experiments import shrinkage_mlp as SM
from scipy import optimize


def _data(n: int = 60, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.array([0.1, 1.0, 3.0, 10.0])[:d]
    x -= x.mean(0)
    y = x @ rng.normal(size=d) + rng.normal(size=n)
    return x, y - y.mean()


@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_dd_ridge_minimises_the_expected_dropout_loss(keep):
    """E_m ||y - X (m/p * w)||^2 over Bernoulli(p) masks per example is
    ||y - Xw||^2 + (1-p)/p w^T diag(X^T X) w, and dd_ridge is its minimiser."""
    x, y = _data()
    rng = np.random.default_rng(1)
    w = rng.normal(size=x.shape[1])
    closed = np.sum((y - x @ w) ** 2) + (1 - keep) / keep * np.sum(w * w * np.sum(x * x, 0))
    masks = rng.random((20000, *x.shape)) < keep
    mc = np.mean(np.sum((y - (x * masks / keep) @ w) ** 2, axis=1))
    assert mc == pytest.approx(closed, rel=0.01)
    w_dd = SL.dd_ridge(x, y, keep)
    grad = -2 * x.T @ (y - x @ w_dd) + 2 * (1 - keep) / keep * np.sum(x * x, 0) * w_dd
    assert np.abs(grad).max() < 1e-8 * np.abs(x.T @ y).max()


def test_standardised_features_make_the_penalty_plain_ridge():
    """diag(X^T X) = nI: the data-dependent ridge is the plain ridge of equal trace."""
    x, y = _data()
    x = x / x.std(0)
    for keep in (0.5, 0.8):
        lam = SL.equal_trace_lambda(x, keep)
        assert lam == pytest.approx((1 - keep) / keep * len(x))
        np.testing.assert_allclose(SL.dd_ridge(x, y, keep), SL.plain_ridge(x, y, lam), rtol=1e-10)


def test_heterogeneous_features_separate_the_two_ridges():
    x, y, scales = SL.heterogeneous_diabetes(1.5, 0)
    assert np.log10(scales.max() / scales.min()) == pytest.approx(1.5)
    np.testing.assert_allclose(np.diag(x.T @ x), len(x) * scales**2, rtol=1e-10)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-10)
    w_dd, w_pr = SL.dd_ridge(x, y, 0.5), SL.plain_ridge(x, y, SL.equal_trace_lambda(x, 0.5))
    assert SL.rel(w_pr, w_dd) > 0.2


def test_wager_logistic_plain_l2_matches_sklearn():
    """With ``lam`` the fit is L2 logistic regression: sklearn's C = 1 / lam."""
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    labels = (y > 0).astype(float)
    w, b = SG.wager_logistic(x, labels, 0.5, lam=2.0)
    ref = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(x, labels)
    np.testing.assert_allclose(w, ref.coef_[0], rtol=1e-4, atol=1e-6)
    assert b == pytest.approx(ref.intercept_[0], rel=1e-4, abs=1e-6)


def test_wager_logistic_is_stationary_for_its_penalty():
    """The fit minimises NLL + (1-p)/(2p) sum_j w_j^2 sum_i p_i(1-p_i) x_ij^2, written here
    independently and differentiated numerically."""
    x, y = _data()
    labels, keep = (y > 0).astype(float), 0.5

    def objective(theta):
        z = x @ theta[:-1] + theta[-1]
        p = 1 / (1 + np.exp(-z))
        pen = (1 - keep) / (2 * keep) * np.sum(theta[:-1] ** 2 * ((x * x).T @ (p * (1 - p))))
        return np.sum(np.logaddexp(0, z) - labels * z) + pen

    w, b = SG.wager_logistic(x, labels, keep)
    theta = np.r_[w, b]
    g = optimize.approx_fprime(theta, objective, 1e-7)
    assert np.abs(g).max() < 1e-4 * len(x)
    assert SG.fisher_lambda(x, w, b, keep) > 0


def test_mlp_measures():
    params = {"a": {"kernel": np.diag([3.0, 1.0])}, "b": {"kernel": np.array([[2.0], [0.0]])}}
    assert SM.kernel_norm(params) == pytest.approx(np.sqrt(9 + 1 + 4))
    assert SM.spectral_product(params) == pytest.approx(6.0)
    lp = np.array([[0.0, 2.0], [1.0, 1.0]])
    assert SM.logit_norm(lp) == pytest.approx(np.sqrt(2) / 2)
    assert SM.logit_norm(lp + 5.0) == pytest.approx(SM.logit_norm(lp))  # shift-invariant
