"""GDAS (Dong & Yang, CVPR 2019): sample one op per edge with Gumbel-softmax and a straight-through gradient.

Per forward pass: ``h = softmax((log_softmax(alpha) + g) / tau)``, ``g ~ Gumbel(0, 1)``; ``index = argmax h``; the
op weights are ``one_hot(index) - stop_gradient(h) + h`` (value one-hot, gradient of the soft sample), and only op
``index`` of each edge is computed. One sample is shared by all cells of a forward pass (xautodl ``TinyNetworkGDAS``).
``tau`` decays linearly from ``tau_max`` (10) to ``tau_min`` (0.1) over the search. A step is a weight step on a
training batch, then an alpha step on a validation batch, each with its own sample (first order).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metanas.search.darts import Batch, SearchOptimizers, DartsState, accuracy, cross_entropy


def gumbel_straight_through(alpha: jax.Array, key: jax.Array, tau) -> tuple[jax.Array, jax.Array]:
    """``(hard weights [E, K] with straight-through gradient, index [E])`` for one alpha array."""
    g = jax.random.gumbel(key, alpha.shape, alpha.dtype)
    h = jax.nn.softmax((jax.nn.log_softmax(alpha, -1) + g) / tau, -1)
    index = jnp.argmax(h, -1)
    hard = jax.nn.one_hot(index, alpha.shape[-1], dtype=alpha.dtype)
    return hard - jax.lax.stop_gradient(h) + h, index


def sample_tree(alphas, key: jax.Array, tau):
    leaves, tree = jax.tree.flatten(alphas)
    outs = [gumbel_straight_through(a, jax.random.fold_in(key, i), tau) for i, a in enumerate(leaves)]
    return jax.tree.unflatten(tree, [o[0] for o in outs]), jax.tree.unflatten(tree, [o[1] for o in outs])


@dataclass(frozen=True)
class GDAS(SearchOptimizers):
    tau_max: float = 10.0
    tau_min: float = 0.1

    def tau(self, step, total_steps: int):
        frac = step / max(total_steps - 1, 1)
        return self.tau_max - (self.tau_max - self.tau_min) * jnp.minimum(frac, 1.0)

    def step(self, state: DartsState, train: Batch, val: Batch, key: jax.Array, *, net, total_steps: int):
        tau = self.tau(state.step, total_steps)
        k_w, k_a = jax.random.split(key)

        def loss(w, a, batch, k):
            mix, index = sample_tree(a, k, tau)
            logits, bs = net.apply_mix(w, mix, state.batch_stats, batch[0], True, index=index)
            return cross_entropy(logits, batch[1]), (bs, accuracy(logits, batch[1]))

        state, w_loss, acc = self.weight_step(state, lambda w: loss(w, state.alphas, train, k_w),
                                              total_steps=total_steps)
        (val_loss, _), ga = jax.value_and_grad(loss, argnums=1, has_aux=True)(state.weights, state.alphas, val, k_a)
        state = self.alpha_step(state, ga)
        return state._replace(step=state.step + 1), {"loss": w_loss, "train_acc": acc, "val_loss": val_loss,
                                                     "tau": tau}
