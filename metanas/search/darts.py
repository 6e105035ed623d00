"""DARTS (Liu, Simonyan & Yang, ICLR 2019): bilevel search with continuous relaxation of the op choice.

    min_alpha L_val(w*(alpha), alpha)   s.t.   w*(alpha) = argmin_w L_train(w, alpha)          (paper eq. 3-4)

First order: the alpha gradient is grad_alpha L_val(w, alpha) (w treated as constant). Second order: one unrolled
step ``w' = w - xi grad_w L_train(w, alpha)`` (eq. 6) and the hypergradient
``d/dalpha L_val(w'(alpha), alpha)`` (eq. 7), either exactly by differentiating through the inner gradient with JAX
(``hessian="exact"``) or with the paper's central finite difference of the Hessian-vector product (eq. 8,
``hessian="finite_difference"``, ``eps = fd_eps / ||grad_w' L_val||``). ``xi`` is the current weight learning rate.

One ``step`` = an alpha step on a validation batch, then a weight step on a training batch (Algorithm 1).
Weights: SGD with momentum, cosine learning rate ``w_lr -> w_lr_min``, weight decay, global-norm clipping;
alphas: Adam (lr 3e-4, betas (0.5, 0.999), L2 weight decay 1e-3): the paper's settings. Weights and alphas are
separate pytrees with separate optax states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

Batch = tuple[jax.Array, jax.Array]  # (x [B, H, W, C] float32, y [B] int32)


class DartsState(NamedTuple):
    weights: Any  # supernet weights pytree
    alphas: Any  # architecture parameters pytree ([E, K] or {"normal", "reduce"})
    batch_stats: Any  # network state (``{}``: batch-statistics BN)
    w_opt: optax.OptState  # weight optimiser state (of the raveled weight vector, see ``weight_step``)
    a_opt: optax.OptState  # alpha optimiser state
    step: jax.Array  # int32 [], completed steps


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))


def tree_sub_scaled(a, b, s):
    return jax.tree.map(lambda x, y: x - s * y, a, b)


@dataclass(frozen=True)
class SearchOptimizers:
    """Hyper-parameters of the two optimisers shared by DARTS and GDAS (defaults: DARTS paper, sec. 3.1.1)."""

    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_nesterov: bool = False
    w_weight_decay: float = 3e-4
    w_grad_clip: float = 5.0
    a_lr: float = 3e-4
    a_beta1: float = 0.5
    a_beta2: float = 0.999
    a_weight_decay: float = 1e-3

    def w_schedule(self, total_steps: int) -> optax.Schedule:
        return optax.cosine_decay_schedule(self.w_lr, max(total_steps, 1), alpha=self.w_lr_min / self.w_lr)

    def w_tx(self, total_steps: int) -> optax.GradientTransformation:
        return optax.chain(optax.clip_by_global_norm(self.w_grad_clip), optax.add_decayed_weights(self.w_weight_decay),
                           optax.sgd(self.w_schedule(total_steps), self.w_momentum, self.w_nesterov))

    def a_tx(self) -> optax.GradientTransformation:
        return optax.chain(optax.add_decayed_weights(self.a_weight_decay),
                           optax.adam(self.a_lr, b1=self.a_beta1, b2=self.a_beta2))

    def init(self, weights, alphas, batch_stats, *, total_steps: int) -> DartsState:
        return DartsState(weights, alphas, batch_stats, self.w_tx(total_steps).init(ravel_pytree(weights)[0]),
                           self.a_tx().init(alphas), jnp.zeros((), jnp.int32))

    def weight_step(self, state: DartsState, loss_fn, *, total_steps: int):
        """``loss_fn(weights) -> (loss, (batch_stats, acc))``; one SGD step on the weights.

        The optimiser runs on the weights and gradients raveled into one vector (its state is that vector's
        momentum): the same update as leaf by leaf, but a few fused loops instead of several per weight array (the
        NB201 supernet has ~90), which cuts XLA compile time."""
        (loss, (bs, acc)), g = jax.value_and_grad(loss_fn, has_aux=True)(state.weights)
        flat_w, unravel = ravel_pytree(state.weights)
        upd, w_opt = self.w_tx(total_steps).update(ravel_pytree(g)[0], state.w_opt, flat_w)
        return state._replace(weights=unravel(flat_w + upd), w_opt=w_opt, batch_stats=bs), loss, acc

    def alpha_step(self, state: DartsState, grad_alphas):
        upd, a_opt = self.a_tx().update(grad_alphas, state.a_opt, state.alphas)
        return state._replace(alphas=optax.apply_updates(state.alphas, upd), a_opt=a_opt)


@dataclass(frozen=True)
class DARTS(SearchOptimizers):
    order: int = 1  # 1: first order; 2: unrolled (second order)
    hessian: Literal["exact", "finite_difference"] = "exact"
    fd_eps: float = 0.01  # eq. 8: eps = fd_eps / ||grad_w' L_val||
    alpha_first: bool = True  # paper Algorithm 1; False: weight step first (xautodl DARTS-V1 loop, bench W1)

    def __post_init__(self):
        if self.order not in (1, 2):
            raise ValueError(f"DARTS order must be 1 or 2, got {self.order}")
        if self.hessian not in ("exact", "finite_difference"):
            raise ValueError(f"DARTS hessian must be 'exact' or 'finite_difference', got {self.hessian!r}")

    def hypergradient(self, weights, alphas, batch_stats, train: Batch, val: Batch, xi, *, net):
        """``(L_val, dL_val/dalpha)`` for this ``order``/``hessian``; ``net`` has the supernet ``apply``."""

        def loss(w, a, batch):
            logits, _ = net.apply(w, a, batch_stats, batch[0], True)
            return cross_entropy(logits, batch[1])

        if self.order == 1:
            return jax.value_and_grad(loss, argnums=1)(weights, alphas, val)
        if self.hessian == "exact":
            def unrolled(a):
                w2 = tree_sub_scaled(weights, jax.grad(loss)(weights, a, train), xi)
                return loss(w2, a, val)

            return jax.value_and_grad(unrolled)(alphas)
        w2 = tree_sub_scaled(weights, jax.grad(loss)(weights, alphas, train), xi)
        lv, (gw, ga) = jax.value_and_grad(loss, argnums=(0, 1))(w2, alphas, val)
        eps = self.fd_eps / (optax.global_norm(gw) + 1e-12)
        gp = jax.grad(loss, argnums=1)(tree_sub_scaled(weights, gw, -eps), alphas, train)
        gm = jax.grad(loss, argnums=1)(tree_sub_scaled(weights, gw, eps), alphas, train)
        return lv, jax.tree.map(lambda g, p, m: g - xi * (p - m) / (2 * eps), ga, gp, gm)

    def step(self, state: DartsState, train: Batch, val: Batch, key: jax.Array, *, net, total_steps: int):
        """One search step (alpha on ``val``, then weights on ``train``; swapped if not ``alpha_first``).
        Returns ``(state, metrics)``."""
        xi = self.w_schedule(total_steps)(state.step)

        def w_loss(w):
            logits, bs = net.apply(w, state.alphas, state.batch_stats, train[0], True)
            return cross_entropy(logits, train[1]), (bs, accuracy(logits, train[1]))

        if not self.alpha_first:
            state, loss, acc = self.weight_step(state, w_loss, total_steps=total_steps)
        val_loss, ga = self.hypergradient(state.weights, state.alphas, state.batch_stats, train, val, xi, net=net)
        state = self.alpha_step(state, ga)
        if self.alpha_first:
            state, loss, acc = self.weight_step(state, w_loss, total_steps=total_steps)
        return state._replace(step=state.step + 1), {"loss": loss, "train_acc": acc, "val_loss": val_loss,
                                                     "lr": xi}
