"""The one optax fit loop every gradient-trained predictor shares (pointwise MLP, pairwise meta-learner, transfer
fine-tuning): ``steps`` optimiser steps of ``loss(params, key)`` as one ``lax.scan``, a fresh key per step (the
loss draws its own minibatch from it), starting from a fresh optimiser state."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax


def fit_steps(loss: Callable, params, key: jax.Array, *, steps: int, tx: optax.GradientTransformation):
    """Parameters after ``steps`` steps of ``tx`` on ``loss(params, key_t)``; pure, jittable, vmappable."""

    def step(carry, k):
        params, opt = carry
        upd, opt = tx.update(jax.grad(loss)(params, k), opt, params)
        return (optax.apply_updates(params, upd), opt), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(key, steps))
    return params
