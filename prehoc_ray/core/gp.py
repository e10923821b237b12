"""A small Gaussian-process regressor: ARD RBF + linear kernel, type-II maximum likelihood.

Why a GP: the population predictor must give a mean *and* a variance per candidate, handle
non-linear interactions (a high learning rate makes a good-looking prefix diverge later), and
offer exact leave-one-out predictions (used to calibrate intervals without touching held-out
finals). Populations here are hundreds to a few thousand candidates, where an O(n^3) solve is
milliseconds to a second. Hyper-parameters are fitted on a subsample for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from scipy.optimize import minimize

_JITTER = 1e-8


def _hyper(theta: np.ndarray, d: int) -> tuple[np.ndarray, float, float, float]:
    """theta (all logs) -> (ARD length-scales, RBF variance, linear variance, noise variance):
    [log ls_1..ls_d, log sf, log sl, log sn], the layout the optimizer and its bounds use."""
    return np.exp(theta[:d]), np.exp(2 * theta[d]), np.exp(2 * theta[d + 1]), np.exp(2 * theta[d + 2])


@dataclass
class GaussianProcess:
    """Fit with `fit(X, y)`; learned values end in `_` (scikit-learn convention)."""

    max_hyper_points: int = 200
    seed: int = 0

    def _kernel(self, A: np.ndarray, B: np.ndarray, theta: np.ndarray) -> np.ndarray:
        ls, sf2, sl2, _ = _hyper(theta, A.shape[1])
        As, Bs = A / ls, B / ls
        sq = (As**2).sum(1)[:, None] + (Bs**2).sum(1)[None, :] - 2 * As @ Bs.T
        return sf2 * np.exp(-0.5 * np.maximum(sq, 0.0)) + sl2 * (A @ B.T)

    def _nll_and_grad(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        n, d = X.shape
        ls, sf2, sl2, sn2 = _hyper(theta, d)
        Xs = X / ls
        sq = (Xs**2).sum(1)[:, None] + (Xs**2).sum(1)[None, :] - 2 * Xs @ Xs.T
        Krbf = sf2 * np.exp(-0.5 * np.maximum(sq, 0.0))
        Klin = sl2 * (X @ X.T)
        K = Krbf + Klin + (sn2 + _JITTER) * np.eye(n)
        try:
            cf = cho_factor(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return 1e25, np.zeros_like(theta)
        a = cho_solve(cf, y, check_finite=False)
        logdet = 2 * np.log(np.diag(cf[0])).sum()
        nll = 0.5 * y @ a + 0.5 * logdet + 0.5 * n * np.log(2 * np.pi)
        Kinv = cho_solve(cf, np.eye(n), check_finite=False)
        W = np.outer(a, a) - Kinv  # dNLL/dK = -0.5 W
        grad = np.empty_like(theta)
        for k in range(d):
            diff2 = (X[:, k, None] - X[None, :, k]) ** 2 / ls[k] ** 2
            grad[k] = -0.5 * np.sum(W * Krbf * diff2)
        grad[d] = -0.5 * np.sum(W * 2 * Krbf)
        grad[d + 1] = -0.5 * np.sum(W * 2 * Klin)
        grad[d + 2] = -0.5 * np.trace(W) * 2 * sn2
        return float(nll), grad

    def fit(self, X: np.ndarray, y: np.ndarray) -> GaussianProcess:
        X = np.asarray(X, float)
        y = np.asarray(y, float)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be (n, d) matching y (n,), got {X.shape} and {y.shape}")
        if X.shape[0] < 2:
            raise ValueError("a Gaussian process needs at least 2 training points")
        self.x_mean_ = X.mean(0)
        self.x_std_ = np.where(X.std(0) > 1e-12, X.std(0), 1.0)
        self.y_mean_ = float(y.mean())
        self.y_std_ = float(y.std()) if y.std() > 1e-12 else 1.0
        Xs = (X - self.x_mean_) / self.x_std_
        ys = (y - self.y_mean_) / self.y_std_
        n, d = Xs.shape
        rng = np.random.default_rng(self.seed)
        sub = rng.choice(n, self.max_hyper_points, replace=False) if n > self.max_hyper_points else np.arange(n)
        theta0 = np.concatenate([np.full(d, np.log(np.sqrt(d))), [np.log(0.8), np.log(0.3), np.log(0.3)]])
        # Length-scales under ~0.3 standard deviations let a few hundred points be interpolated
        # exactly and the predictions between them swing wildly; the linear part is kept modest
        # for the same reason (it extrapolates without bound).
        bounds = [(np.log(0.3), np.log(100.0))] * d + [
            (np.log(1e-3), np.log(10.0)),
            (np.log(1e-4), np.log(1.0)),
            (np.log(0.15), np.log(3.0)),
        ]
        # Two starts (smooth and wiggly) guard against the interpolating local optimum that a
        # subsample sometimes offers; the noise floor of 15% of the target's spread serves too.
        starts = [theta0, np.concatenate([np.full(d, np.log(1.0)), [np.log(1.0), np.log(0.1), np.log(0.5)]])]
        fits = [
            minimize(
                self._nll_and_grad,
                t0,
                args=(Xs[sub], ys[sub]),
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 60},
            )
            for t0 in starts
        ]
        self.theta_ = min(fits, key=lambda r: r.fun).x
        K = self._kernel(Xs, Xs, self.theta_) + (_hyper(self.theta_, d)[3] + _JITTER) * np.eye(n)
        self._cf = cho_factor(K, lower=True, check_finite=False)
        self._alpha = cho_solve(self._cf, ys, check_finite=False)
        self._Xs = Xs
        self._ys = ys
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and std of a new observation (latent variance + noise)."""
        Xs = (np.asarray(X, float) - self.x_mean_) / self.x_std_
        Ks = self._kernel(Xs, self._Xs, self.theta_)
        mean = Ks @ self._alpha
        v = cho_solve(self._cf, Ks.T, check_finite=False)
        _, sf2, sl2, sn2 = _hyper(self.theta_, Xs.shape[1])
        kss = sf2 + sl2 * (Xs**2).sum(1)
        var = np.maximum(kss - np.einsum("ij,ji->i", Ks, v), 0.0) + sn2
        return self.y_mean_ + self.y_std_ * mean, self.y_std_ * np.sqrt(var)

    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact leave-one-out predictive mean and std for the training points.

        For a GP, y_i - mu_loo_i = [K^-1 y]_i / [K^-1]_ii and var_loo_i = 1 / [K^-1]_ii.
        """
        n = self._Xs.shape[0]
        kinv_diag = np.diag(cho_solve(self._cf, np.eye(n), check_finite=False))
        mu = self._ys - self._alpha / kinv_diag
        return self.y_mean_ + self.y_std_ * mu, self.y_std_ * np.sqrt(1.0 / kinv_diag)
