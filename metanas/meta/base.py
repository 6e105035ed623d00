"""Shared types and helpers of the meta-learning algorithms.

Conventions (all algorithms):
- ``apply_fn(params, x) -> out`` is the model, ``loss(out, y) -> (scalar loss, scalar metric)`` the task loss
  (``mse`` for regression, ``cross_entropy_accuracy`` whose metric is accuracy).
- Meta-parameters are a dict ``{"theta": params}`` (Meta-SGD adds ``"lr"``: per-parameter step sizes).
- ``Task`` holds one task; a batch of tasks is the same NamedTuple with a leading task axis [T, ...].
- Batch norm (CNN4) uses the statistics of the batch it sees. ``transductive=True`` evaluates the query set as
  one batch (MAML's protocol; Reptile's "transductive" numbers); ``False`` classifies each query point in a
  batch made of the support set plus that one point (Reptile's non-transductive protocol, Nichol et al. 2018,
  Sec. 6), so no information is shared between query points.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metanas.nn.types import ApplyFn, LossFn, PyTree


class Task(NamedTuple):
    support_x: jax.Array  # [K_s, ...] inputs (images NHWC [K_s,28,28,1]; sinusoid [K_s,1])
    support_y: jax.Array  # [K_s] int labels or [K_s,1] targets
    query_x: jax.Array  # [K_q, ...]
    query_y: jax.Array  # [K_q] or [K_q,1]


class MetaState(NamedTuple):
    params: dict  # meta-parameters {"theta": model params, ("lr": Meta-SGD step sizes)}
    opt_state: optax.OptState  # outer optimizer state
    inner_opt_state: PyTree  # Reptile's persistent inner-Adam state (supervised-reptile); () otherwise


def mse(out: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean squared error; the metric is the same MSE."""
    loss = jnp.mean(jnp.square(out - y))
    return loss, loss


def cross_entropy_accuracy(logits: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Softmax cross-entropy with int labels [N] (optax); the metric is accuracy."""
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    return loss, jnp.mean((jnp.argmax(logits, axis=-1) == y).astype(jnp.float32))


LOSSES: dict[str, LossFn] = {"mse": mse, "cross_entropy": cross_entropy_accuracy}


def query_metrics(params: PyTree, task: Task, *, apply_fn: ApplyFn, loss: LossFn,
                  transductive: bool) -> tuple[jax.Array, jax.Array]:
    """(loss, metric) of adapted ``params`` on the query set, transductive or not (see module doc)."""
    if transductive:
        return loss(apply_fn(params, task.query_x), task.query_y)

    def one(x):  # the support set plus one query point; keep the query point's output
        return apply_fn(params, jnp.concatenate([task.support_x, x[None]], axis=0))[-1]

    # lax.map, not vmap: a vmap over query points (under the vmap over tasks) materialises
    # tasks x queries x (support + 1) activations at once (27 GB for 100 Omniglot tasks with CNN4-64)
    return loss(jax.lax.map(one, task.query_x), task.query_y)


def sgd_adapt(params: PyTree, lrs: PyTree, support: tuple[jax.Array, jax.Array], steps: int, *,
              apply_fn: ApplyFn, loss: LossFn, first_order: bool, unroll: bool = False) -> tuple[PyTree, jax.Array]:
    """``steps`` full-batch gradient steps phi <- phi - lr * grad L_support(phi) as a ``lax.scan``.

    ``lrs`` is a pytree like ``params`` (Meta-SGD's per-parameter step sizes) or a Python float. With
    ``first_order`` the inner gradients are constants for the outer derivative (FOMAML, Finn et al. 2017,
    Sec. 5.2), so d phi / d theta = I. ``unroll`` unrolls the scan (the same values; see ``_MetaGradient``).
    Returns the adapted params and the support loss before each step [steps].
    """
    x, y = support

    def support_loss(p):
        return loss(apply_fn(p, x), y)[0]

    def step(p, _):
        value, g = jax.value_and_grad(support_loss)(p)
        if first_order:
            g = jax.lax.stop_gradient(g)
        if isinstance(lrs, (float, int)):
            p = jax.tree.map(lambda w, gw: w - lrs * gw, p, g)
        else:
            p = jax.tree.map(lambda w, gw, a: w - a * gw, p, g, lrs)
        return p, value

    return jax.lax.scan(step, params, None, length=steps, unroll=unroll)


def map_tasks(fn: Callable, tasks: Task, per_task: PyTree, task_map: str = "vmap"):
    """``fn(task, x)`` over the leading task axis of ``tasks`` and ``per_task`` (keys, adapted params, ...):
    ``"vmap"`` (batched) or ``"map"`` (``lax.map``: one task after the other inside one program; less memory, and
    on XLA:CPU faster for conv nets, where a vmap over per-task conv weights becomes a slow grouped convolution
    and a batch of tasks' activations does not stay in cache). Same results either way."""
    if task_map == "vmap":
        return jax.vmap(fn)(tasks, per_task)
    if task_map == "map":
        return jax.lax.map(lambda tx: fn(*tx), (tasks, per_task))
    raise ValueError(f"task_map '{task_map}' is unknown; use 'vmap' or 'map'")


class AbstractMetaAlgorithm(abc.ABC):
    """Interface: ``init``, ``adapt``, ``meta_train_step``; ``evaluate`` is shared."""

    eval_inner_steps: int
    transductive: bool
    task_map: str  # how tasks are batched in the meta-step and in ``evaluate``: "vmap" or "map" (``map_tasks``)

    @abc.abstractmethod
    def init(self, params: PyTree) -> dict:
        """Meta-parameters from initial model params."""

    def init_state(self, params: PyTree, tx: optax.GradientTransformation) -> MetaState:
        meta_params = self.init(params)
        return MetaState(meta_params, tx.init(meta_params), ())

    @abc.abstractmethod
    def adapt(self, meta_params: dict, support: tuple[jax.Array, jax.Array], key: jax.Array, *,
              apply_fn: ApplyFn, loss: LossFn, steps: int | None = None) -> tuple[PyTree, jax.Array]:
        """Task-specific params after the inner loop (a ``lax.scan``) and the support loss before each step."""

    @abc.abstractmethod
    def meta_train_step(self, state: MetaState, tasks: Task, key: jax.Array, *, apply_fn: ApplyFn,
                        loss: LossFn, tx: optax.GradientTransformation) -> tuple[MetaState, dict]:
        """One outer update from a batch of tasks [T, ...]."""

    def evaluate(self, meta_params: dict, tasks: Task, key: jax.Array, *, apply_fn: ApplyFn,
                 loss: LossFn) -> dict:
        """Adapt on each task's support set (``eval_inner_steps``) and score its query set; tasks by ``task_map``.

        Returns per-task arrays [T]: ``query_loss``, ``query_metric`` (accuracy or MSE), ``pre_query_metric``
        (before adaptation), ``support_loss_before`` / ``support_loss_after``.
        """

        def one(task: Task, k: jax.Array) -> dict:
            support = (task.support_x, task.support_y)
            pre_loss, pre_metric = query_metrics(meta_params["theta"], task, apply_fn=apply_fn, loss=loss,
                                                 transductive=self.transductive)
            params, _ = self.adapt(meta_params, support, k, apply_fn=apply_fn, loss=loss,
                                   steps=self.eval_inner_steps)
            q_loss, q_metric = query_metrics(params, task, apply_fn=apply_fn, loss=loss,
                                             transductive=self.transductive)
            return {"query_loss": q_loss, "query_metric": q_metric, "pre_query_metric": pre_metric,
                    "support_loss_before": loss(apply_fn(meta_params["theta"], task.support_x), task.support_y)[0],
                    "support_loss_after": loss(apply_fn(params, task.support_x), task.support_y)[0]}

        return map_tasks(one, tasks, jax.random.split(key, tasks.support_x.shape[0]), self.task_map)
