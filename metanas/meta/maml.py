"""MAML (Finn et al. 2017), first-order MAML, ANIL (Raghu et al. 2020) and Meta-SGD (Li et al. 2017).

All four share the outer step (``_MetaGradient.meta_train_step``): the meta-objective is the mean over tasks
of the query loss at the adapted parameters, L(theta) = 1/T sum_t L_q^t(U_t(theta)) (MAML eq. 1 / Alg. 2),
differentiated through the inner loop (second order) or with the inner gradients held constant (first order),
and fed to an optax outer optimizer (Adam in the papers).

The step computes that gradient as J^T g (``meta_value_and_grad``): the adaptations of all tasks with their VJP
(tasks batched by ``task_map``), the query-loss gradient g_t at each task's adapted parameters (tasks batched by
``query_map``), then one VJP back through the adaptations. Only the inner loop is differentiated twice; the query
pass is a first-order value-and-grad, which ``query_map="map"`` runs one task at a time so that a conv net's
activations stay in cache (``"auto"``, the default: ``"map"`` on CPU, ``"vmap"`` on GPU / TPU, where one batched
kernel beats many small ones). Second-order steps unroll inner loops of at most ``unroll_inner`` steps: the outer
derivative of a rolled scan keeps its residuals in stacked buffers, which XLA:CPU zero-fills and copies (unrolled,
W2's second-order step is faster and compiles longer; docs/performance.md; 0: never unroll). ``meta_loss`` stays
the plain definition, for tests and for other derivatives.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from metanas.meta.base import (AbstractMetaAlgorithm, ApplyFn, LossFn, MetaState, PyTree, Task, map_tasks,
                               query_metrics, sgd_adapt)


class _MetaGradient(AbstractMetaAlgorithm, abc.ABC):
    """Outer step shared by MAML, ANIL and Meta-SGD."""

    inner_steps: int
    transductive: bool
    task_map: str
    query_map: str
    first_order: bool
    unroll_inner: int

    def meta_loss(self, meta_params: dict, tasks: Task, key: jax.Array, *, apply_fn: ApplyFn,
                  loss: LossFn) -> tuple[jax.Array, dict]:
        """Mean query loss after adaptation over a batch of tasks [T, ...], and mean metrics."""

        def one(task: Task, k: jax.Array):
            params, support_losses = self.adapt(meta_params, (task.support_x, task.support_y), k,
                                                apply_fn=apply_fn, loss=loss)
            # meta-training always scores the query set as one batch (MAML's protocol)
            q_loss, q_metric = query_metrics(params, task, apply_fn=apply_fn, loss=loss, transductive=True)
            return q_loss, {"query_metric": q_metric, "support_loss_first": support_losses[0],
                            "support_loss_last": support_losses[-1]}

        losses, aux = map_tasks(one, tasks, jax.random.split(key, tasks.support_x.shape[0]), self.task_map)
        return jnp.mean(losses), jax.tree.map(jnp.mean, aux)

    def meta_value_and_grad(self, meta_params: dict, tasks: Task, key: jax.Array, *, apply_fn: ApplyFn,
                            loss: LossFn) -> tuple[tuple[jax.Array, dict], dict]:
        """``jax.value_and_grad(meta_loss, has_aux=True)`` as J^T g (see the module doc): same values and gradients
        up to float rounding."""
        n = tasks.support_x.shape[0]
        unroll = not self.first_order and self.inner_steps <= self.unroll_inner

        def adapt_all(mp):
            return map_tasks(lambda task, k: self.adapt(mp, (task.support_x, task.support_y), k, apply_fn=apply_fn,
                                                        loss=loss, unroll=unroll),
                             tasks, jax.random.split(key, n), self.task_map)

        # the support losses are metrics (aux): differentiating them would add a backward pass per inner step
        adapted, adapt_vjp, support_losses = jax.vjp(adapt_all, meta_params, has_aux=True)

        def query(task: Task, params):  # meta-training always scores the query set as one batch (MAML's protocol)
            return jax.value_and_grad(lambda p: query_metrics(p, task, apply_fn=apply_fn, loss=loss,
                                                              transductive=True), has_aux=True)(params)

        if self.query_map not in ("auto", "map", "vmap"):
            raise ValueError(f"query_map '{self.query_map}' is unknown; use 'auto', 'map' or 'vmap'")
        query_map = self.query_map
        if query_map == "auto":
            query_map = "map" if jax.default_backend() == "cpu" else "vmap"
        (q_losses, q_metrics), q_grads = map_tasks(query, tasks, adapted, query_map)
        (grads,) = adapt_vjp(jax.tree.map(lambda g: g / n, q_grads))
        aux = {"query_metric": jnp.mean(q_metrics), "support_loss_first": jnp.mean(support_losses[:, 0]),
               "support_loss_last": jnp.mean(support_losses[:, -1])}
        return (jnp.mean(q_losses), aux), grads

    def meta_train_step(self, state: MetaState, tasks: Task, key: jax.Array, *, apply_fn: ApplyFn,
                        loss: LossFn, tx: optax.GradientTransformation) -> tuple[MetaState, dict]:
        (value, aux), grads = self.meta_value_and_grad(state.params, tasks, key, apply_fn=apply_fn, loss=loss)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return MetaState(params, opt_state, state.inner_opt_state), {"loss": value, **aux}


@dataclass(frozen=True)
class MAML(_MetaGradient):
    """MAML: ``inner_steps`` SGD steps of size ``inner_lr`` on the support set; ``first_order`` gives FOMAML."""

    inner_steps: int = 5
    inner_lr: float = 0.4
    first_order: bool = False
    eval_inner_steps: int = 10
    transductive: bool = True  # MAML evaluates with query-batch statistics
    task_map: str = "vmap"  # how tasks are batched in the adaptation: "vmap" or "map" (lax.map)
    query_map: str = "auto"  # tasks in the query loss and its gradient: "map", "vmap", "auto" (map on CPU only)
    unroll_inner: int = 8  # second order: unroll inner loops of at most this many steps (0: never)

    def init(self, params: PyTree) -> dict:
        return {"theta": params}

    def adapt(self, meta_params, support, key, *, apply_fn, loss, steps=None, unroll=False):
        return sgd_adapt(meta_params["theta"], float(self.inner_lr), support, steps or self.inner_steps,
                         apply_fn=apply_fn, loss=loss, first_order=self.first_order, unroll=unroll)


@dataclass(frozen=True)
class ANIL(MAML):
    """ANIL: the inner loop adapts only ``params[head_key]``; the body is meta-learned in the outer loop only (MAML's
    settings and defaults otherwise)."""

    head_key: str = "head"

    def adapt(self, meta_params, support, key, *, apply_fn, loss, steps=None, unroll=False):
        theta = meta_params["theta"]
        body = {k: v for k, v in theta.items() if k != self.head_key}

        def head_apply(head, x):
            return apply_fn(body | {self.head_key: head}, x)

        head, losses = sgd_adapt(theta[self.head_key], float(self.inner_lr), support, steps or self.inner_steps,
                                 apply_fn=head_apply, loss=loss, first_order=self.first_order, unroll=unroll)
        return body | {self.head_key: head}, losses


@dataclass(frozen=True)
class MetaSGD(MAML):
    """Meta-SGD: per-parameter step sizes ``lr`` (initialised to ``inner_lr``) meta-learned with theta (MAML's
    settings otherwise; one inner step by default)."""

    inner_steps: int = 1
    eval_inner_steps: int = 1

    def init(self, params: PyTree) -> dict:
        return {"theta": params, "lr": jax.tree.map(lambda p: jnp.full_like(p, self.inner_lr), params)}

    def adapt(self, meta_params, support, key, *, apply_fn, loss, steps=None, unroll=False):
        return sgd_adapt(meta_params["theta"], meta_params["lr"], support, steps or self.inner_steps,
                         apply_fn=apply_fn, loss=loss, first_order=self.first_order, unroll=unroll)
