"""The pairwise meta-learner M(L2, L1): predicted relative improvement (p2 - p1) / p1 of L2 over L1.

Design: a shared encoder f (MLP) and a linear comparison head w on the difference of the two embeddings,

    r(a, b) = w . (f(a) - f(b)),        M(a, b) = exp(r(a, b)) - 1,

so r is exactly antisymmetric (r(a, b) = -r(b, a)) and M is consistent: (1 + M(a, b)) (1 + M(b, a)) = 1, the
same identity the true ratios obey ((1 + (p2 - p1)/p1) (1 + (p1 - p2)/p2) = 1). Ranking N candidates needs N
encoder passes: u(x) = w . f(x) is a score with M(a, b) = exp(u(a) - u(b)) - 1.

Loss on a pair (i, j) from the same data set / validation split (``group``), target t = (p_i - p_j) / p_j:
    (r(i, j) - log(1 + t))^2  +  rank_weight * softplus(-sign(t) * r(i, j) / temperature)
The first term is t matched in log-ratio space (exact when r = log(1 + t)); the second is RankNet's logistic
ranking loss (Burges et al., ICML 2005), which weights the order of close pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from metanas.nn.primitives import mlp, mlp_init
from metanas.predictors.fit import fit_steps


def pair_targets(p: jax.Array, i: jax.Array, j: jax.Array) -> jax.Array:
    """Relative improvement (p_i - p_j) / p_j of row i over row j (both measured on the same split)."""
    return (p[i] - p[j]) / p[j]


@dataclass(frozen=True)
class Pairwise:
    """Shared-encoder pairwise predictor (see module docstring). ``ensemble`` members for uncertainty."""

    hidden: int = 64
    layers: int = 2
    embed: int = 16
    steps: int = 1000
    lr: float = 3e-3
    weight_decay: float = 0.1
    batch: int = 256
    rank_weight: float = 30.0
    temperature: float = 0.05
    ensemble: int = 1
    linear_skip: bool = True  # f(x) also carries x itself: r = v.(a - b) + w.(g(a) - g(b))

    def init(self, key: jax.Array, dim: int) -> dict:
        k1, k2 = jax.random.split(key)
        return {"enc": mlp_init(k1, (dim,) + (self.hidden,) * self.layers + (self.embed,)),
                "w": jax.random.normal(k2, (self.embed,)) / jnp.sqrt(self.embed),
                "v": jnp.zeros(dim)}

    def embedding(self, params: dict, x: jax.Array) -> jax.Array:
        """Shared encoder f(x) [N, embed (+ D)] (one pass per candidate)."""
        h = mlp(params["enc"], x)
        return jnp.concatenate([h, x], -1) if self.linear_skip else h

    def _head(self, params: dict) -> jax.Array:
        return jnp.concatenate([params["w"], params["v"]]) if self.linear_skip else params["w"]

    def utility(self, params: dict, x: jax.Array) -> jax.Array:
        """u(x) [N]: one encoder pass per candidate; M(a, b) = expm1(u(a) - u(b))."""
        return self.embedding(params, x) @ self._head(params)

    def log_ratio(self, params: dict, xa: jax.Array, xb: jax.Array) -> jax.Array:
        """r(a, b) = head . (f(a) - f(b)): the comparison head sees only the difference, so r is antisymmetric."""
        return (self.embedding(params, xa) - self.embedding(params, xb)) @ self._head(params)

    def compare(self, params: dict, xa: jax.Array, xb: jax.Array) -> jax.Array:
        """M(a, b): predicted (p_a - p_b) / p_b."""
        return jnp.expm1(self.log_ratio(params, xa, xb))

    def pair_loss(self, params: dict, xa: jax.Array, xb: jax.Array, target: jax.Array,
                  weight: jax.Array | None = None) -> jax.Array:
        """Mean loss over pairs with targets ``target`` = (p_a - p_b) / p_b; ``weight`` masks pairs."""
        r = self.log_ratio(params, xa, xb)
        per = (r - jnp.log1p(target)) ** 2 + self.rank_weight * jax.nn.softplus(-jnp.sign(target) * r / self.temperature) * self.temperature
        weight = jnp.ones_like(per) if weight is None else weight
        return jnp.sum(per * weight) / jnp.maximum(weight.sum(), 1.0)

    def _fit_one(self, key, x, p, n, group, within_group: bool = False, params0: dict | None = None):
        k_init, k_data = jax.random.split(key)
        params = self.init(k_init, x.shape[1]) if params0 is None else params0
        tx = optax.adamw(self.lr, weight_decay=self.weight_decay)
        hi = jnp.maximum(n, 1)
        # rows sorted by group (rows past n last): the rows of i's group are one slice [lo, hi) of ``order``
        gkey = jnp.where(jnp.arange(x.shape[0]) < n, group, jnp.iinfo(jnp.int32).max)
        order = jnp.argsort(gkey, stable=True)
        sorted_g = gkey[order]

        def loss(params, k):
            ki, kj = jax.random.split(k)
            i = jax.random.randint(ki, (self.batch,), 0, hi)
            if within_group:  # j uniform among the first n rows of i's group (many groups: no wasted pairs)
                lo = jnp.searchsorted(sorted_g, group[i], side="left")
                up = jnp.searchsorted(sorted_g, group[i], side="right")
                j = order[lo + jnp.floor(jax.random.uniform(kj, (self.batch,)) * (up - lo)).astype(jnp.int32)]
            else:
                j = jax.random.randint(kj, (self.batch,), 0, hi)
            same = (group[i] == group[j]) & (i != j)  # pairs only within one data set / validation split
            return self.pair_loss(params, x[i], x[j], pair_targets(p, i, j), same.astype(jnp.float32))

        params = fit_steps(loss, params, k_data, steps=self.steps, tx=tx)
        return params

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n, group: jax.Array | None = None,
            init: dict | None = None) -> dict:
        """Train on the first ``n`` rows; ``y`` > 0 (e.g. accuracy); ``group`` [N] int: data set / split id.

        Without ``group`` pairs are drawn uniformly; with it, the second row of a pair is drawn from the first row's
        group (with many groups, uniform pairs would mostly be masked out). ``init``: parameters of a previous
        ``fit`` (leading axis = ``ensemble`` members) to start from instead of a random init (fine-tuning a
        pre-trained meta-learner for ``steps`` steps with a fresh optimiser state); None = from scratch."""
        within = group is not None
        group = jnp.zeros(x.shape[0], jnp.int32) if group is None else group
        keys = jax.random.split(key, self.ensemble)
        if init is not None:
            return jax.vmap(lambda k, p0: self._fit_one(k, x, y, n, group, within, p0))(keys, init)
        fit = lambda k: self._fit_one(k, x, y, n, group, within)  # noqa: E731
        return jax.vmap(fit)(keys)

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and spread over members of the utility (members' scales are comparable: log-ratio units)."""
        u = jax.vmap(self.utility, in_axes=(0, None))(params, x)  # [K, N]
        u = u - u.mean(1, keepdims=True)  # each member's u is defined up to an offset
        return u.mean(0), u.std(0)

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return self.score_std(params, x)[0]
