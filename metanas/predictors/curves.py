"""Learning-curve meta-learners: predict where a run ends from where it stands (pure fit / predict on pytrees).

Observations are a table ``y`` [R, L] of curves (lower is better) with ``prog`` [R] (how many leading checkpoints of
row r are observed; 0 = not started) and ``cfg`` [R] (row -> config index into ``x`` [N, D]); rows of several
source tasks share the configs. Nothing past ``prog`` is ever read: unobserved entries (and NaN) are masked out
before they reach a loss or an input.

- ``CurveModel`` (metanas): an ensemble of MLPs f(config features, summary of the observed prefix, budget asked)
  -> value at that budget, added to the last observed value (or to the data mean before the first checkpoint).
  The prefix summary is (last, min, mean, last-minus-3-before, first value, fraction observed, observed flag), so
  one model serves every curve length. Training examples: a row, a target checkpoint q < prog, and a prefix length
  n <= q drawn uniformly (n = 0: the config alone), so the model learns both zero-shot and continuation;
  with ``final_weight`` a share of the targets is the last checkpoint. Pre-trained on source tasks' full curves
  (``metanas.benchmarks.curves.leave_one_task_out``), fine-tuned on the target's partial curves (``train`` continues
  from given parameters with a fresh optimiser state; ``mix`` keeps rehearsing source rows). Uncertainty: the spread of the
  ``ensemble`` members (each its own init and minibatches), as in DPL.
  ``prob_better(a, b)`` is the pairwise form: P(run a ends below run b | partial evidence), from the members'
  Gaussian approximation of the two final values.
- ``PowerLaw`` (DPL, Kadra et al. 2023): an ensemble of MLPs config -> (a, b, c), y(t) = a + b * t^(-c) with t the
  budget as a fraction of the full one (b, c > 0 through softplus), L1 loss on the target's observed points only.
  DPL's network also reads the partial curve through a 1-d CNN; this one is conditioned on the config only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metanas.nn.primitives import mlp, mlp_init
from metanas.predictors.fit import fit_steps

N_SUMMARY = 7


class Rows(NamedTuple):
    """Observed curves: ``y`` [R, L] (entries past ``prog`` ignored), ``prog`` [R] int, ``cfg`` [R] int."""

    y: jax.Array
    prog: jax.Array
    cfg: jax.Array


def prefix_summary(y: jax.Array, n: jax.Array, scale: jax.Array) -> jax.Array:
    """[B, N_SUMMARY] summary of the first ``n`` [B] entries of ``y`` [B, L], in units of ``scale`` (0 when n = 0)."""
    L = y.shape[-1]
    idx = jnp.arange(L)
    m = idx[None, :] < n[:, None]
    yz = jnp.where(m, jnp.nan_to_num(y), 0.0)
    nn = jnp.maximum(n, 1)
    last = jnp.take_along_axis(yz, (nn - 1)[:, None], 1)[:, 0]
    back = jnp.take_along_axis(yz, jnp.maximum(nn - 4, 0)[:, None], 1)[:, 0]
    mn = jnp.min(jnp.where(m, yz, jnp.inf), 1)
    mean = yz.sum(1) / nn
    on = (n > 0).astype(y.dtype)
    feats = jnp.stack([last, jnp.where(n > 0, mn, 0.0), mean, last - back, yz[:, 0]], 1) / scale
    return jnp.concatenate([feats * on[:, None], (n / L)[:, None].astype(y.dtype), on[:, None]], 1)


def sample_examples(key: jax.Array, rows: Rows, batch: int, final_weight: float):
    """(row [B], prefix length n [B], target checkpoint q [B], weight [B]) drawn from rows with prog >= 1."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    ok = rows.prog >= 1
    cum = jnp.cumsum(ok)  # row = the k-th observed row, k uniform (no [batch, R] noise)
    k = jnp.floor(jax.random.uniform(k1, (batch,)) * cum[-1]).astype(cum.dtype)
    r = jnp.minimum(jnp.searchsorted(cum, k, side="right"), rows.prog.shape[0] - 1)
    p = rows.prog[r]
    q = jnp.floor(jax.random.uniform(k2, (batch,)) * p).astype(jnp.int32)
    q = jnp.where(jax.random.uniform(k4, (batch,)) < final_weight, p - 1, q)
    n = jnp.floor(jax.random.uniform(k3, (batch,)) * (q + 1)).astype(jnp.int32)  # 0..q
    w = ok.any().astype(jnp.float32) * jnp.isfinite(rows.y[r, q]).astype(jnp.float32)
    return r, n, q, w


@dataclass(frozen=True)
class CurveModel:
    """Ensemble curve regressor (see module docstring)."""

    hidden: int = 64
    layers: int = 2
    ensemble: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch: int = 128
    final_weight: float = 0.3
    mix: float = 0.0  # share of source rows in fine-tuning batches

    def init(self, key: jax.Array, dim: int, mu, sd) -> dict:
        """Parameters of every member (leading axis ``ensemble``); ``mu`` / ``sd``: scale of the values."""
        keys = jax.random.split(key, self.ensemble)
        nets = jax.vmap(lambda k: mlp_init(k, (dim + N_SUMMARY + 1,) + (self.hidden,) * self.layers + (1,)))(keys)
        return {"net": nets, "mu": jnp.full(self.ensemble, mu, jnp.float32),
                "sd": jnp.full(self.ensemble, sd, jnp.float32)}

    def tx(self):
        return optax.adamw(self.lr, weight_decay=self.weight_decay)

    def _one(self, p: dict, x: jax.Array, y: jax.Array, n: jax.Array, q: jax.Array) -> jax.Array:
        L = y.shape[-1]
        s = prefix_summary(y, n, p["sd"])
        h = jnp.concatenate([x, s, (q / (L - 1 if L > 1 else 1))[:, None].astype(x.dtype)], 1)
        last = jnp.take_along_axis(jnp.nan_to_num(y), jnp.maximum(n - 1, 0)[:, None], 1)[:, 0]
        base = jnp.where(n > 0, last, p["mu"])
        return base + p["sd"] * mlp(p["net"], h)[:, 0]

    def predict(self, params: dict, x: jax.Array, y: jax.Array, n: jax.Array, q: jax.Array) -> jax.Array:
        """[M, B]: every member's value at checkpoint ``q`` [B] of configs ``x`` [B, D] given the first ``n`` [B]
        entries of their curves ``y`` [B, L]."""
        return jax.vmap(lambda p: self._one(p, x, y, n, q))(params)

    def _loss(self, p, x, rows: Rows, key):
        r, n, q, w = sample_examples(key, rows, self.batch, self.final_weight)
        pred = self._one(p, x[rows.cfg[r]], rows.y[r], n, q)
        err = jnp.where(w > 0, (pred - jnp.nan_to_num(rows.y[r, q])) / p["sd"], 0.0)
        return jnp.sum(w * optax.huber_loss(err, delta=1.0)) / jnp.maximum(w.sum(), 1.0)

    def train(self, key: jax.Array, params: dict, x: jax.Array, rows: Rows, steps: int,
              source: Rows | None = None):
        """``steps`` AdamW steps of every member from ``params`` (a fresh optimiser state each call, as
        ``predictors.fit.fit_steps`` does) on ``rows`` (and ``mix`` of ``source`` rows). Returns the parameters."""
        mix = self.mix if source is not None else 0.0

        def one(k, p):
            def loss(net, kk):
                pp = {**p, "net": net}
                k1, k2 = jax.random.split(kk)
                lt = self._loss(pp, x, rows, k1)
                return lt if mix <= 0 else (1 - mix) * lt + mix * self._loss(pp, x, source, k2)

            return {**p, "net": fit_steps(loss, p["net"], k, steps=steps, tx=self.tx())}

        return jax.vmap(one)(jax.random.split(key, self.ensemble), params)

    def final(self, params: dict, x: jax.Array, y: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(mean [B], std [B]) over members of the value at the last checkpoint."""
        q = jnp.full(n.shape, y.shape[-1] - 1, jnp.int32)
        v = self.predict(params, x, y, n, q)
        return v.mean(0), v.std(0)

    def prob_better(self, params: dict, xa, ya, na, xb, yb, nb) -> jax.Array:
        """P(final value of a < final value of b) [B] given each run's observed prefix (pairwise form)."""
        ma, sa = self.final(params, xa, ya, na)
        mb, sb = self.final(params, xb, yb, nb)
        return jax.scipy.stats.norm.cdf((mb - ma) / jnp.sqrt(sa ** 2 + sb ** 2 + 1e-12))


def data_scale(y: jax.Array, prog: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, std) of the observed finite entries of ``y`` [R, L] (1.0 std when fewer than two)."""
    m = (jnp.arange(y.shape[-1])[None, :] < prog[:, None]) & jnp.isfinite(y)
    c = jnp.maximum(m.sum(), 1)
    mu = jnp.where(m, y, 0.0).sum() / c
    var = jnp.where(m, (y - mu) ** 2, 0.0).sum() / c
    return mu, jnp.where(m.sum() > 1, jnp.sqrt(var) + 1e-6, 1.0)


@dataclass(frozen=True)
class PowerLaw:
    """DPL's power-law ensemble, config-conditioned (see module docstring)."""

    hidden: int = 64
    layers: int = 2
    ensemble: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch: int = 128

    def init(self, key: jax.Array, dim: int, mu=0.0, sd=1.0) -> dict:
        keys = jax.random.split(key, self.ensemble)
        nets = jax.vmap(lambda k: mlp_init(k, (dim,) + (self.hidden,) * self.layers + (3,)))(keys)
        return {"net": nets, "mu": jnp.full(self.ensemble, mu, jnp.float32),
                "sd": jnp.full(self.ensemble, sd, jnp.float32)}

    def tx(self):
        return optax.adamw(self.lr, weight_decay=self.weight_decay)

    @staticmethod
    def abc(p: dict, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per-config (a, b, c) in the data's units: y(t) = a + b * t^(-c), t in (0, 1]."""
        o = mlp(p["net"], x)
        return p["mu"] + p["sd"] * o[:, 0], p["sd"] * jax.nn.softplus(o[:, 1]), jax.nn.softplus(o[:, 2])

    def _one(self, p, x, q, L):
        a, b, c = self.abc(p, x)
        t = (q + 1.0) / L
        return a + b * t ** (-c)

    def predict(self, params: dict, x, y, n, q) -> jax.Array:
        """[M, B] (``y`` / ``n`` are not used: the curve enters only through training)."""
        return jax.vmap(lambda p: self._one(p, x, q, y.shape[-1]))(params)

    def train(self, key, params, x, rows: Rows, steps: int, source: Rows | None = None):
        """``steps`` AdamW steps of every member on the observed points (``source`` is not used: DPL fits the
        target only). Returns the parameters."""
        L = rows.y.shape[-1]

        def one(k, p):
            def loss(net, kk):
                r, _, q, w = sample_examples(kk, rows, self.batch, 0.0)
                pred = self._one({**p, "net": net}, x[rows.cfg[r]], q, L)
                err = jnp.where(w > 0, (pred - jnp.nan_to_num(rows.y[r, q])) / p["sd"], 0.0)
                return jnp.sum(w * jnp.abs(err)) / jnp.maximum(w.sum(), 1.0)

            return {**p, "net": fit_steps(loss, p["net"], k, steps=steps, tx=self.tx())}

        del source
        return jax.vmap(one)(jax.random.split(key, self.ensemble), params)

    def final(self, params, x, y, n):
        q = jnp.full(n.shape, y.shape[-1] - 1, jnp.int32)
        v = self.predict(params, x, y, n, q)
        return v.mean(0), v.std(0)


def fit_power_law(t: jax.Array, y: jax.Array, mask: jax.Array | None = None, *, grid: int = 400,
                  c_range: tuple[float, float] = (1e-3, 5.0)) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Least-squares (a, b, c) of y ~ a + b * t^(-c) on one curve (t > 0; ``mask`` drops unobserved points, NaN
    always dropped): for each c of a log grid, (a, b) is linear least squares in closed form; the best c is refined
    on a second grid around it. Jittable."""
    mask = jnp.isfinite(y) if mask is None else mask & jnp.isfinite(y)
    w = mask.astype(jnp.float32)
    yz = jnp.where(mask, y, 0.0)

    def solve(c):
        f = t ** (-c)
        sw = jnp.maximum(w.sum(), 1.0)
        fm, ym = (w * f).sum() / sw, (w * yz).sum() / sw
        var = (w * (f - fm) ** 2).sum()
        b = jnp.where(var > 1e-12, (w * (f - fm) * (yz - ym)).sum() / jnp.maximum(var, 1e-12), 0.0)
        a = ym - b * fm
        return a, b, (w * (a + b * f - yz) ** 2).sum()

    cs = jnp.exp(jnp.linspace(jnp.log(c_range[0]), jnp.log(c_range[1]), grid))
    sse = jax.vmap(lambda c: solve(c)[2])(cs)
    k = jnp.argmin(sse)
    fine = jnp.linspace(cs[jnp.maximum(k - 1, 0)], cs[jnp.minimum(k + 1, grid - 1)], grid)
    c = fine[jnp.argmin(jax.vmap(lambda c: solve(c)[2])(fine))]
    a, b, _ = solve(c)
    return a, b, c
