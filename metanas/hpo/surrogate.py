"""Small surrogates for model-based HPO and meta-learning across tasks (host numpy; tiny and shape-varying,
so eager jax would recompile at every new history length).

- ``fit_rff_ridge`` / ``rff_predict``: ridge regression on random Fourier features of an RBF kernel
  (Rahimi & Recht 2007), plus the raw inputs. Fitted on (task meta-features ++ config encoding) ->
  normalised error of many past tasks it is the *meta-learner* that ranks configurations for a new task.
- ``gp_posterior`` and ``expected_improvement``: an exact RBF-kernel GP for the few points observed on the
  current task (Rasmussen & Williams 2006, Alg. 2.1) and EI for minimisation (Jones et al. 1998, eq. 15).
  With a ``prior_mean`` from the meta-learner the GP models only the residual: warm-started BO.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.special import ndtr


class RFFRidge(NamedTuple):
    x_mean: np.ndarray  # [D] input standardisation
    x_scale: np.ndarray  # [D]
    omega: np.ndarray  # [D, M] random frequencies / lengthscale
    phase: np.ndarray  # [M]
    coef: np.ndarray  # [M + D + 1] weights on (features, raw inputs, bias)
    y_mean: float


def _features(omega: np.ndarray, phase: np.ndarray, z: np.ndarray) -> np.ndarray:
    rff = np.sqrt(2.0 / phase.shape[0]) * np.cos(z @ omega + phase[None, :])
    return np.concatenate([rff, z, np.ones((z.shape[0], 1))], axis=1)


def fit_rff_ridge(x: np.ndarray, y: np.ndarray, *, seed: int, num_features: int = 512,
                  lengthscale: float = 1.5, l2: float = 1e-2) -> RFFRidge:
    """Ridge on [RFF(x), x, 1] for x [N, D], y [N]; inputs are standardised column-wise first.

    ``l2`` is per example (the penalty is ``l2 * N * |w|^2``), so it does not need retuning with N.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu[None, :]) / sd[None, :]
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((x.shape[1], num_features)) / lengthscale
    phase = rng.uniform(0, 2 * np.pi, num_features)
    phi = _features(omega, phase, z)
    y_mean = float(y.mean())
    a = phi.T @ phi + l2 * y.shape[0] * np.eye(phi.shape[1])
    coef = np.linalg.solve(a, phi.T @ (y - y_mean))
    return RFFRidge(mu, sd, omega, phase, coef, y_mean)


def rff_predict(model: RFFRidge, x: np.ndarray) -> np.ndarray:
    """Predictions [N] for x [N, D]."""
    z = (np.asarray(x, np.float64) - model.x_mean[None, :]) / model.x_scale[None, :]
    return _features(model.omega, model.phase, z) @ model.coef + model.y_mean


def rbf_kernel(a: np.ndarray, b: np.ndarray, lengthscale: float) -> np.ndarray:
    d2 = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
    return np.exp(-0.5 * d2 / lengthscale ** 2)


def gp_posterior(x_obs: np.ndarray, y_obs: np.ndarray, x_query: np.ndarray, *, lengthscale: float = 0.5,
                 signal: float = 1.0, noise: float = 1e-3, prior_mean_obs: np.ndarray | None = None,
                 prior_mean_query: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GP posterior mean and std [Q] at x_query [Q, D] given x_obs [N, D], y_obs [N] (RW06 Alg. 2.1).

    Without a prior mean the GP centres on the mean of ``y_obs``.
    """
    x_obs, x_query = np.asarray(x_obs, np.float64), np.asarray(x_query, np.float64)
    y_obs = np.asarray(y_obs, np.float64)
    if prior_mean_obs is None:
        m_obs, m_q = np.full_like(y_obs, y_obs.mean()), np.full(x_query.shape[0], y_obs.mean())
    else:
        m_obs, m_q = np.asarray(prior_mean_obs, np.float64), np.asarray(prior_mean_query, np.float64)
    k = signal * rbf_kernel(x_obs, x_obs, lengthscale) + noise * np.eye(x_obs.shape[0])
    chol = cho_factor(k, lower=True)
    alpha = cho_solve(chol, y_obs - m_obs)
    ks = signal * rbf_kernel(x_query, x_obs, lengthscale)
    mean = m_q + ks @ alpha
    v = solve_triangular(np.tril(chol[0]), ks.T, lower=True)
    var = np.maximum(signal - np.sum(v * v, axis=0), 1e-12)
    return mean, np.sqrt(var)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """EI for minimisation: E[max(best - f, 0)] with f ~ N(mean, std^2)."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    z = (best - mean) / std
    return std * (z * ndtr(z) + np.exp(-0.5 * z ** 2) / np.sqrt(2 * np.pi))
