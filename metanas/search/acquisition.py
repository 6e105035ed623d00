"""Optimizers of a cheap fitness (a predictor's score) over any ``SearchSpace``; pure and jittable.

``fitness`` maps int32 archs [P, E] to float32 [P] (higher = better).
- ``evolve``: aging evolution (Real et al., AAAI 2019) with tournament selection, run on the predictor.
- ``reinforce``: a factorised categorical policy pi(arch) = prod_e softmax(theta_e) trained with REINFORCE
  (Williams, 1992) and a moving-average baseline, as in Zoph & Le (ICLR 2017) but over the encoding directly.
Both return candidate archs [M, E] (possibly with repeats); the caller de-duplicates against what it queried.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metanas.search_spaces.base import SearchSpace

Fitness = Callable[[jax.Array], jax.Array]


def evolve(key: jax.Array, fitness: Fitness, *, space: SearchSpace, population: int = 64, generations: int = 30,
           tournament: int = 8) -> jax.Array:
    """Aging evolution on ``fitness``; returns every arch visited, int32 [population * (generations + 1), E]."""
    k0, key = jax.random.split(key)
    pop = jax.vmap(space.sample)(jax.random.split(k0, population))
    fit = fitness(pop)

    def gen(carry, k):
        pop, fit = carry
        k_sel, k_mut = jax.random.split(k)
        # `population` tournaments in parallel: each picks the best of `tournament` members and mutates it
        idx = jax.random.randint(k_sel, (population, tournament), 0, population)
        parents = pop[jnp.take_along_axis(idx, jnp.argmax(fit[idx], axis=1)[:, None], 1)[:, 0]]
        children = jax.vmap(space.mutate)(jax.random.split(k_mut, population), parents)
        child_fit = fitness(children)
        # aging: the children replace the oldest generation (the whole previous population)
        return (children, child_fit), children

    (_, _), visited = jax.lax.scan(gen, (pop, fit), jax.random.split(key, generations))
    return jnp.concatenate([pop, visited.reshape(-1, pop.shape[1])])


def reinforce(key: jax.Array, fitness: Fitness, *, num_edges: int, num_ops: int, steps: int = 50,
              batch: int = 64, lr: float = 0.5, baseline_decay: float = 0.9) -> jax.Array:
    """REINFORCE over the one-hot encoding; returns every arch sampled, int32 [steps * batch, E]."""
    theta = jnp.zeros((num_edges, num_ops))

    def step(carry, k):
        theta, baseline = carry
        archs = jax.random.categorical(k, theta, axis=-1, shape=(batch, num_edges)).astype(jnp.int32)
        reward = fitness(archs)
        reward = (reward - reward.mean()) / (reward.std() + 1e-8)  # scale-free rewards
        adv = reward - baseline

        def logp(theta):
            lp = jax.nn.log_softmax(theta, axis=-1)  # [E, K]
            return jnp.take_along_axis(lp[None], archs[:, :, None], axis=2)[:, :, 0].sum(1)  # [batch]

        grad = jax.grad(lambda t: jnp.mean(adv * logp(t)))(theta)
        return (theta + lr * grad, baseline_decay * baseline + (1 - baseline_decay) * reward.mean()), archs

    (_, _), archs = jax.lax.scan(step, (theta, jnp.zeros(())), jax.random.split(key, steps))
    return archs.reshape(-1, num_edges)
