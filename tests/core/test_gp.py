"""The population GP pinned against scikit-learn's GaussianProcessRegressor with the same
kernel and the same hyper-parameters (ARD RBF + scaled linear + white noise)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from prehoc_ray.core.gp import _JITTER, GaussianProcess

sk_gp = pytest.importorskip("sklearn.gaussian_process")
sk_k = pytest.importorskip("sklearn.gaussian_process.kernels")


def _data(n=80, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.array([1.0, 3.0, 0.5])
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=n)
    return X, y


def _sklearn_twin(gp: GaussianProcess, d: int):
    th = gp.theta_
    ls, sf2, sl2, sn2 = np.exp(th[:d]), np.exp(2 * th[d]), np.exp(2 * th[d + 1]), np.exp(2 * th[d + 2])
    kernel = (
        sk_k.ConstantKernel(sf2, "fixed") * sk_k.RBF(ls, "fixed")
        + sk_k.ConstantKernel(sl2, "fixed") * sk_k.DotProduct(sigma_0=0.0, sigma_0_bounds="fixed")
        + sk_k.WhiteKernel(sn2, "fixed")
    )
    return sk_gp.GaussianProcessRegressor(kernel, alpha=_JITTER, optimizer=None, normalize_y=False)


def test_predictions_match_scikit_learn_with_the_same_hyper_parameters():
    X, y = _data()
    gp = GaussianProcess(seed=0).fit(X, y)
    Xs = (X - gp.x_mean_) / gp.x_std_
    ys = (y - gp.y_mean_) / gp.y_std_
    twin = _sklearn_twin(gp, X.shape[1]).fit(Xs, ys)
    Xt, _ = _data(n=30, seed=1)
    mean, std = gp.predict(Xt)
    m2, s2 = twin.predict((Xt - gp.x_mean_) / gp.x_std_, return_std=True)
    np.testing.assert_allclose(mean, gp.y_mean_ + gp.y_std_ * m2, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(std, gp.y_std_ * s2, rtol=1e-5, atol=1e-8)


def test_negative_log_likelihood_and_its_gradient():
    X, y = _data(n=50)
    gp = GaussianProcess(seed=0).fit(X, y)
    Xs = (X - gp.x_mean_) / gp.x_std_
    ys = (y - gp.y_mean_) / gp.y_std_
    nll, grad = gp._nll_and_grad(gp.theta_, Xs, ys)
    twin = _sklearn_twin(gp, X.shape[1]).fit(Xs, ys)
    assert nll == pytest.approx(-twin.log_marginal_likelihood_value_, rel=1e-6)
    num = approx_fprime(gp.theta_, lambda t: gp._nll_and_grad(t, Xs, ys)[0], 1e-6)
    np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-3)


def test_leave_one_out_equals_refitting_without_the_point():
    X, y = _data(n=40)
    gp = GaussianProcess(seed=0).fit(X, y)
    mu, sd = gp.loo()
    Xs = (X - gp.x_mean_) / gp.x_std_
    ys = (y - gp.y_mean_) / gp.y_std_
    for i in (0, 7, 23):
        keep = np.arange(len(y)) != i
        twin = _sklearn_twin(gp, X.shape[1]).fit(Xs[keep], ys[keep])
        m, s = twin.predict(Xs[i : i + 1], return_std=True)
        assert mu[i] == pytest.approx(gp.y_mean_ + gp.y_std_ * m[0], rel=1e-6, abs=1e-8)
        assert sd[i] == pytest.approx(gp.y_std_ * s[0], rel=1e-5)


def test_hyper_parameters_fit_the_noise_it_was_given():
    # ground truth the fit cannot see: the noise sd of the data (0.1 of a unit-ish signal)
    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, size=(300, 1))
    y = np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=300)
    gp = GaussianProcess(seed=0, max_hyper_points=300).fit(X, y)
    # the noise floor is bounded below at 15% of y's spread (see fit); here that is ~0.11
    noise_sd = float(np.exp(gp.theta_[-1]) * gp.y_std_)  # log sn is the last hyper-parameter (gp._hyper)
    assert 0.08 < noise_sd < 0.2
    Xt = np.linspace(-1.8, 1.8, 50)[:, None]
    mean, _ = gp.predict(Xt)
    assert np.sqrt(np.mean((mean - np.sin(2 * Xt[:, 0])) ** 2)) < 0.06
