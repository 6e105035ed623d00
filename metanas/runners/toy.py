"""toy_regression: an MLP fit to noisy sinusoid samples (synthetic data). The smallest full experiment."""

from __future__ import annotations

from typing import NamedTuple

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from metanas.runners.context import RunContext, train_loop


class TrainState(NamedTuple):
    params: dict  # MLP weights {"w1","b1","w2","b2"}
    opt_state: optax.OptState


def init_mlp(key: jax.Array, hidden: int) -> dict:
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (1, hidden)), "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, 1)) / jnp.sqrt(hidden), "b2": jnp.zeros(1)}


def mlp(params: dict, x: jax.Array) -> jax.Array:
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def sample_batch(seed: int, step: int, batch_size: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, step])
    x = rng.uniform(-3, 3, (batch_size, 1)).astype(np.float32)
    return x, (np.sin(x) + noise * rng.standard_normal(x.shape)).astype(np.float32)


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    t = cfg.train
    tx: optax.GradientTransformation = hydra.utils.instantiate(cfg.optimizer)
    params = init_mlp(ctx.key, t.hidden)
    state = TrainState(params, tx.init(params))

    def loss_fn(params, x, y):
        return jnp.mean((mlp(params, x) - y) ** 2)

    @jax.jit
    def update(state: TrainState, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), {"loss": loss}

    def step_fn(state, step):
        return update(state, *sample_batch(cfg.seed, step, t.batch_size, t.noise))

    state, last = train_loop(ctx, "train", state, step_fn, t.steps)
    x, y = sample_batch(cfg.seed + 1_000_003, 0, 1024, 0.0)  # a held-out noise-free stream
    return {"loss": last["loss"], "test_mse": float(loss_fn(state.params, x, y))}
