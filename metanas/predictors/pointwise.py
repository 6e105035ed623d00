"""Pointwise baselines: ridge regression (closed form) and an MLP (Adam), predicting p from an encoding.

All predictors share one pure interface (no jit inside): ``fit(key, x, y, n) -> params`` uses the first
``n`` rows of fixed-size arrays (``n`` may be traced, so a search loop keeps static shapes) and
``score(params, x) -> [N]`` (higher = better). ``ensemble > 1`` trains independent members (different keys)
with ``vmap``; ``score_std`` is the member spread, the uncertainty used by acquisition functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from metanas.nn.primitives import mlp, mlp_init
from metanas.predictors.fit import fit_steps


def _mask(x: jax.Array, n) -> jax.Array:
    return (jnp.arange(x.shape[0]) < n).astype(jnp.float32)


@dataclass(frozen=True)
class Ridge:
    """Ridge regression y ~ x @ w + b with L2 penalty ``lam`` on w (closed form, masked rows)."""

    lam: float = 1.0

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n) -> dict:
        del key
        m = _mask(x, n)
        cnt = jnp.maximum(m.sum(), 1.0)
        xm = (m @ x) / cnt
        ym = (m @ y) / cnt
        xc = (x - xm[None, :]) * m[:, None]
        yc = (y - ym) * m
        a = xc.T @ xc + self.lam * jnp.eye(x.shape[1])
        w = jnp.linalg.solve(a, xc.T @ yc)
        return {"w": w, "b": ym - xm @ w}

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return x @ params["w"] + params["b"]

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.score(params, x)
        return s, jnp.zeros_like(s)


@dataclass(frozen=True)
class MLP:
    """Pointwise MLP regressor on standardised targets (AdamW, minibatches drawn from the first n rows).

    ``loss``: ``mse`` on the standardised target, or ``mape``: the mean absolute percentage error of the predicted
    *error* ``mape_ref - y`` (for accuracies in %, the error in %), as BANANAS trains its meta neural network
    (White et al., AAAI 2021: MAPE on the validation error); the net still predicts on the standardised scale."""

    hidden: int = 64
    layers: int = 2
    steps: int = 500
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch: int = 64
    ensemble: int = 1
    loss: str = "mse"  # mse | mape
    mape_ref: float = 100.0  # mape: the error is mape_ref - y (must stay > 0 on the data)

    def __post_init__(self):
        if self.loss not in ("mse", "mape"):
            raise ValueError(f"MLP loss={self.loss!r}; choose mse or mape")

    def _fit_one(self, key, x, y, n):
        m = _mask(x, n)
        cnt = jnp.maximum(m.sum(), 1.0)
        mu = (m @ y) / cnt
        sd = jnp.sqrt((m @ (y - mu) ** 2) / cnt) + 1e-6
        k_init, k_data = jax.random.split(key)
        net = mlp_init(k_init, (x.shape[1],) + (self.hidden,) * self.layers + (1,))
        tx = optax.adamw(self.lr, weight_decay=self.weight_decay)

        def loss(net, k):
            idx = jax.random.randint(k, (self.batch,), 0, jnp.maximum(n, 1))
            pred = mlp(net, x[idx])[:, 0]
            if self.loss == "mape":  # |predicted error - error| / error
                err = self.mape_ref - y[idx]
                return jnp.mean(jnp.abs(pred * sd - (y[idx] - mu)) / jnp.maximum(err, 1e-6))
            return jnp.mean((pred - (y[idx] - mu) / sd) ** 2)

        net = fit_steps(loss, net, k_data, steps=self.steps, tx=tx)
        return {"net": net, "mu": mu, "sd": sd}

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n) -> dict:
        return jax.vmap(self._fit_one, in_axes=(0, None, None, None))(jax.random.split(key, self.ensemble), x, y, n)

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = jax.vmap(lambda p: mlp(p["net"], x)[:, 0] * p["sd"] + p["mu"])(params)  # [K, N]
        return s.mean(0), s.std(0)

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return self.score_std(params, x)[0]
