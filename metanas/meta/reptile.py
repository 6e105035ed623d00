"""Reptile (Nichol, Achiam & Schulman 2018, Alg. 2, batched version).

For each task, phi_t = theta after ``inner_steps`` steps of an inner optimizer (SGD, or Adam with beta1 = 0 as
in the paper) on mini-batches of the support set; then theta <- theta + eps * (1/T sum_t phi_t - theta).
The outer update is fed to optax as the pseudo-gradient ``theta - mean_t phi_t``, so ``optax.sgd(eps)`` is the
paper's update and a schedule anneals eps.

``persist_inner_state=True`` reproduces supervised-reptile: one inner-Adam state whose moments carry over
from task to task and across meta-iterations (tasks then run sequentially, as a ``lax.scan``);
otherwise each task starts from a fresh inner state and tasks are ``vmap``-ed (``task_map="vmap"``) or run one
after the other in one program (``task_map="map"``, ``lax.map``; the same result). ``task_map`` also applies to
``evaluate``. On XLA:CPU a ``vmap`` over per-task conv weights becomes a grouped convolution, which is several
times slower than the sequential map for conv nets (MetaNAS's supernet: 4.6 vs 26.9 s per meta-step on the
loaded 2-core VM, compile 158 vs 365 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from metanas.meta.base import AbstractMetaAlgorithm, MetaState, PyTree, Task, map_tasks


@dataclass(frozen=True)
class Reptile(AbstractMetaAlgorithm):
    inner_steps: int = 5
    inner_lr: float = 1e-3
    inner_opt: str = "adam"  # "adam" (beta1 = 0, beta2 = 0.999) or "sgd"
    inner_batch: int = 10  # mini-batch size of each inner step; 0 = the full support set
    persist_inner_state: bool = False
    eval_inner_steps: int = 50
    eval_inner_batch: int = 0  # the paper's evaluation uses the full (1-shot: 5-image) support set
    transductive: bool = False  # True: query scored as one batch (the paper's "transductive" rows)
    task_map: str = "vmap"  # fresh-state tasks (meta-step and evaluate): "vmap" or "map" (lax.map, sequential)

    def inner_tx(self) -> optax.GradientTransformation:
        if self.inner_opt == "adam":
            return optax.adam(self.inner_lr, b1=0.0, b2=0.999, eps=1e-8)
        if self.inner_opt == "sgd":
            return optax.sgd(self.inner_lr)
        raise ValueError(f"Reptile inner_opt '{self.inner_opt}' is unknown; use 'adam' or 'sgd'")

    def init(self, params: PyTree) -> dict:
        return {"theta": params}

    def init_state(self, params: PyTree, tx: optax.GradientTransformation) -> MetaState:
        meta_params = self.init(params)
        inner = self.inner_tx().init(params) if self.persist_inner_state else ()
        return MetaState(meta_params, tx.init(meta_params), inner)

    def _inner_loop(self, params, inner_state, support, key, *, apply_fn, loss, steps, batch):
        x, y = support
        n = x.shape[0]
        tx = self.inner_tx()
        perm = jax.random.permutation(key, n)

        def step(carry, i):
            p, s = carry
            if batch and batch < n:  # consecutive slices of one permutation, cycling (supervised-reptile)
                idx = perm[(i * batch + jnp.arange(batch)) % n]
                bx, by = x[idx], y[idx]
            else:
                bx, by = x, y
            value, g = jax.value_and_grad(lambda q: loss(apply_fn(q, bx), by)[0])(p)
            updates, s = tx.update(g, s, p)
            return (optax.apply_updates(p, updates), s), value

        (params, inner_state), losses = jax.lax.scan(step, (params, inner_state), jnp.arange(steps))
        return params, inner_state, losses

    def adapt(self, meta_params, support, key, *, apply_fn, loss, steps=None):
        """Evaluation-time adaptation: a fresh inner state, ``eval_inner_batch`` mini-batches."""
        theta = meta_params["theta"]
        params, _, losses = self._inner_loop(theta, self.inner_tx().init(theta), support, key,
                                             apply_fn=apply_fn, loss=loss, steps=steps or self.inner_steps,
                                             batch=self.eval_inner_batch if steps else self.inner_batch)
        return params, losses

    def meta_train_step(self, state: MetaState, tasks: Task, key: jax.Array, *, apply_fn, loss,
                        tx: optax.GradientTransformation) -> tuple[MetaState, dict]:
        theta = state.params["theta"]
        keys = jax.random.split(key, tasks.support_x.shape[0])
        kw = dict(apply_fn=apply_fn, loss=loss, steps=self.inner_steps, batch=self.inner_batch)
        if self.persist_inner_state:
            def body(inner, tk):
                task, k = tk
                phi, inner, losses = self._inner_loop(theta, inner, (task.support_x, task.support_y), k, **kw)
                return inner, (phi, losses)

            inner_state, (phis, losses) = jax.lax.scan(body, state.inner_opt_state, (tasks, keys))
        else:
            def one(task, k):
                phi, _, losses = self._inner_loop(theta, self.inner_tx().init(theta),
                                                  (task.support_x, task.support_y), k, **kw)
                return phi, losses

            phis, losses = map_tasks(one, tasks, keys, self.task_map)
            inner_state = state.inner_opt_state
        mean_phi = jax.tree.map(lambda p: jnp.mean(p, axis=0), phis)
        pseudo_grad = {"theta": jax.tree.map(jnp.subtract, theta, mean_phi)}
        updates, opt_state = tx.update(pseudo_grad, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return MetaState(params, opt_state, inner_state), {"loss": jnp.mean(losses[:, -1]),
                                                           "support_loss_first": jnp.mean(losses[:, 0])}
