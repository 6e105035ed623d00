"""Gradient meta-learned cost model (the ``maml_mlp`` family of ``hw_latency``): a small MLP on the same cell
features as the additive family (``cost.cost_features``), its initialisation meta-learnt across source devices by
MAML (``metanas.meta.maml.MAML``, second order), then adapted to a new device by a few SGD steps on its k measured
cells (``MAML.adapt``, the same inner loop as in meta-training).

Tasks. One task per source device and input size (a row of ``tables`` [T, N], NaN = not measured). Each meta-step
draws, per task, ``k`` random measured cells as the support set and ``query`` other measured cells as the query set.
The target is the standardised log cost: log c minus the support cells' mean log cost, divided by their std (the
statistics of the k cells only, the same at adaptation time, where nothing else is known). Only the ranking of the
prediction is scored, so the target's scale never has to be recovered.

Which k cells on the new device: random (``cost.random_cells``, drawing again where a measurement fails). The
design rule of the Bayesian families needs a Gaussian prior over the weights, which this model does not have, and
meta-training draws its support sets the same way.

Everything is pure JAX: meta-training is one jit (``lax.scan`` over meta-steps, tasks ``vmap``-ed inside
``MAML.meta_train_step``), adaptation and scoring one jit ``vmap``-ed over seeds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from metanas.meta.base import Task, mse
from metanas.meta.maml import MAML
from metanas.nn.primitives import mlp, mlp_init
from metanas.predictors.cost import random_cells, spearman

SD_FLOOR = 1e-3  # floor of the support cells' log-cost std (identical support costs would divide by 0)


def apply_fn(params, x: jax.Array) -> jax.Array:
    """[N] predicted standardised log cost of the cells ``x`` [N, D] (``metanas.nn.primitives.mlp``)."""
    return mlp(params, x)[:, 0]


def standardise(logy: jax.Array, support: jax.Array) -> jax.Array:
    """``logy`` standardised by the mean and std of ``logy[support]``."""
    s = logy[support]
    return (logy - s.mean()) / jnp.maximum(s.std(), SD_FLOOR)


@dataclass(frozen=True)
class MetaMLPCost:
    """MAML over an MLP cost model; the settings are declared a priori (``inner_lr`` may be a tiny grid, chosen by
    the runner's leave-one-source-out rule)."""

    hidden: int = 64
    layers: int = 2
    inner_lr: float = 0.1
    inner_steps: int = 5
    meta_steps: int = 1000
    meta_lr: float = 1e-3
    query: int = 256  # query cells per task and meta-step

    def algo(self) -> MAML:
        return MAML(inner_steps=self.inner_steps, inner_lr=self.inner_lr, first_order=False,
                    eval_inner_steps=self.inner_steps, task_map="vmap", query_map="vmap")

    def sample_task(self, key: jax.Array, x: jax.Array, y: jax.Array, k: int) -> Task:
        """k support and ``query`` other query cells among the measured cells of ``y`` [N] (NaN = not measured)."""
        avail = jnp.isfinite(y)
        g = jnp.where(avail, jax.random.gumbel(key, y.shape), -jnp.inf)
        _, idx = jax.lax.top_k(g, k + self.query)
        logy = jnp.log(jnp.where(avail, y, 1.0))
        z = standardise(logy, idx[:k])
        return Task(x[idx[:k]], z[idx[:k]], x[idx[k:]], z[idx[k:]])

    @functools.partial(jax.jit, static_argnums=(0, 4))
    def meta_train(self, key: jax.Array, x: jax.Array, tables: jax.Array, k: int) -> tuple[dict, jax.Array]:
        """(meta-learnt params, meta-loss per step [meta_steps]) from the source ``tables`` [T, N]; one jit."""
        algo, tx = self.algo(), optax.adam(self.meta_lr)
        k_init, k_run = jax.random.split(key)
        state = algo.init_state(mlp_init(k_init, (x.shape[1],) + (self.hidden,) * self.layers + (1,)), tx)

        def step(state, kk):
            k_tasks, k_step = jax.random.split(kk)
            tasks = jax.vmap(self.sample_task, in_axes=(0, None, 0, None))(
                jax.random.split(k_tasks, tables.shape[0]), x, tables, k)
            state, metrics = algo.meta_train_step(state, tasks, k_step, apply_fn=apply_fn, loss=mse, tx=tx)
            return state, metrics["loss"]

        state, losses = jax.lax.scan(step, state, jax.random.split(k_run, self.meta_steps))
        return state.params["theta"], losses

    def adapt_predict(self, theta: dict, x: jax.Array, y: jax.Array, codes: jax.Array) -> jax.Array:
        """[N] predicted standardised log cost of every cell after ``inner_steps`` SGD steps on the cells ``codes``
        (measured values ``y[codes]``)."""
        logy = jnp.log(y[codes])
        z = (logy - logy.mean()) / jnp.maximum(logy.std(), SD_FLOOR)
        params, _ = self.algo().adapt({"theta": theta}, (x[codes], z), None, apply_fn=apply_fn, loss=mse)
        return apply_fn(params, x)

    @functools.partial(jax.jit, static_argnums=(0, 6))
    def few_shot_run(self, theta: dict, x: jax.Array, y: jax.Array, true_rank: jax.Array, keys: jax.Array,
                     k: int):
        """As ``cost.few_shot_run`` (k random cells per key): (spearman [S], predictions [S, N], codes [S, k],
        failed [S])."""
        avail = jnp.isfinite(y)

        def one(key):
            codes, failed = random_cells(key, avail, k)
            pred = self.adapt_predict(theta, x, y, codes)
            return spearman(pred, true_rank, avail), pred, codes, failed

        return jax.vmap(one)(keys)
