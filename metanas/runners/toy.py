"""toy_regression: an MLP fit to noisy sinusoid samples (synthetic data). The smallest full experiment.

It is also the reference for ``seeds=K``: the same update, ``jax.vmap``-ed over a leading seed axis of
the state and the batch, compiled once, runs K seeds in one program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from metanas.config import Count, NonNeg, TrainBlock, takes_train, train_block
from metanas.nn.primitives import mlp
from metanas.runners.context import RunContext, train_loop


@dataclass(frozen=True)
class ToyTrain(TrainBlock):
    """``train:`` of ``toy_regression``."""

    steps: Count = 600
    batch_size: Count = 64
    hidden: Count = 64  # MLP width
    noise: NonNeg = 0.1  # std of the label noise


class TrainState(NamedTuple):
    params: list  # the MLP's layers [{"kernel": [1,H], "bias": [H]}, {"kernel": [H,1], "bias": [1]}]
    # (a leading [K] axis when seeds=K)
    opt_state: optax.OptState


def init_mlp(key: jax.Array, hidden: int) -> list[dict]:
    """1 -> ``hidden`` (tanh) -> 1 layers for ``metanas.nn.primitives.mlp``: input weights N(0, 1), output weights
    N(0, 1 / hidden) (the sinusoid fit's scale)."""
    k1, k2 = jax.random.split(key)
    return [{"kernel": jax.random.normal(k1, (1, hidden)), "bias": jnp.zeros(hidden)},
            {"kernel": jax.random.normal(k2, (hidden, 1)) / jnp.sqrt(hidden), "bias": jnp.zeros(1)}]


def mse(params: list[dict], x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean((mlp(params, x, activation=jnp.tanh) - y) ** 2)


def sample_batch(seed: int, step: int, batch_size: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, step])
    x = rng.uniform(-3, 3, (batch_size, 1)).astype(np.float32)
    return x, (np.sin(x) + noise * rng.standard_normal(x.shape)).astype(np.float32)


def make_update(tx: optax.GradientTransformation):
    def update(state: TrainState, x: jax.Array, y: jax.Array) -> tuple[TrainState, dict]:
        loss, grads = jax.value_and_grad(mse)(state.params, x, y)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), {"loss": loss}

    return update


@takes_train(ToyTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float | list[float]]:
    t = train_block(ToyTrain, cfg)
    tx: optax.GradientTransformation = hydra.utils.instantiate(cfg.optimizer)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))

    def init(seed):
        params = init_mlp(jax.random.PRNGKey(seed), t.hidden)
        return TrainState(params, tx.init(params))

    def batches(step, batch_size, noise, offset=0):
        xs, ys = zip(*(sample_batch(s + offset, step, batch_size, noise) for s in seeds))
        return np.stack(xs), np.stack(ys)

    ctx.record_dataset("sinusoid_synthetic", *sample_batch(cfg.seed, 0, 512, t.noise), classification=False)
    state = jax.vmap(init)(jnp.asarray(seeds))
    update = jax.jit(jax.vmap(make_update(tx)), donate_argnums=0)
    state, last = train_loop(ctx, "train", state, lambda s, step: update(s, *batches(step, t.batch_size, t.noise)),
                             t.steps)
    x, y = batches(0, 1024, 0.0, offset=1_000_003)  # a held-out, noise-free stream per seed
    test = jax.vmap(mse)(state.params, x, y)
    if cfg.seeds == 1:
        return {"loss": float(last["loss"]), "test_mse": float(test[0])}
    return {"loss": last["loss"], "test_mse": np.asarray(test).tolist()}
