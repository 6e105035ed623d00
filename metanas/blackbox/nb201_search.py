"""Benchmark-backed search on a finite space (NB201): every query is a table lookup, so a whole search is a
pure function of its key. Runners ``jax.jit(jax.vmap(search))(keys)`` over seeds (purejaxrl style).

Archs are identified by their row ``code`` in ``space.enumerate()``; ``table`` [N] is the queried metric,
``features`` [N, D] the encodings. Each search returns ``Trace(codes [B], values [B])`` in query order; no code
is queried twice and exactly ``budget`` queries are made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.blackbox.optimizers import evolve, reinforce
from metanas.search_spaces.nb201 import NB201Space


class Trace(NamedTuple):
    codes: jax.Array  # int32 [B] rows of space.enumerate() in query order
    values: jax.Array  # float32 [B] queried metric


def arch_codes(space: NB201Space, archs: jax.Array) -> jax.Array:
    """Row in ``space.enumerate()`` of int archs [..., E] (jittable ``space.arch_code``)."""
    w = (space.num_ops ** jnp.arange(space.num_edges - 1, -1, -1)).astype(jnp.int32)
    return archs.astype(jnp.int32) @ w


def code_to_arch(space: NB201Space, codes: jax.Array) -> jax.Array:
    w = (space.num_ops ** jnp.arange(space.num_edges - 1, -1, -1)).reshape((1,) * jnp.ndim(codes) + (-1,))
    return ((jnp.asarray(codes)[..., None] // w) % space.num_ops).astype(jnp.int32)


def random_search(key: jax.Array, table: jax.Array, *, budget: int) -> Trace:
    """Uniform sampling without replacement."""
    codes = jax.random.permutation(key, table.shape[0])[:budget].astype(jnp.int32)
    return Trace(codes, table[codes])


def _random_unqueried(key, queried):
    return jnp.argmax(jnp.where(queried, -jnp.inf, jax.random.gumbel(key, queried.shape))).astype(jnp.int32)


def regularized_evolution(key: jax.Array, table: jax.Array, *, space: NB201Space, budget: int,
                          population: int = 20, sample_size: int = 5, max_tries: int = 32) -> Trace:
    """Regularized (aging) evolution, Real et al. (AAAI 2019), Alg. 1, with a cache: a child that was already
    queried is mutated again (up to ``max_tries``, then a random unqueried cell), so no query is wasted."""
    n = table.shape[0]
    k_init, key = jax.random.split(key)
    codes0 = jax.random.permutation(k_init, n)[:population].astype(jnp.int32)
    codes = jnp.zeros(budget, jnp.int32).at[:population].set(codes0)
    values = jnp.zeros(budget, jnp.float32).at[:population].set(table[codes0])
    queried = jnp.zeros(n, bool).at[codes0].set(True)

    def step(carry, xs):
        codes, values, queried = carry
        t, k = xs
        k_s, k_m, k_r = jax.random.split(k, 3)
        # the population is the last `population` queries (aging): positions t-population .. t-1
        pos = t - population + jax.random.randint(k_s, (sample_size,), 0, population)
        parent = code_to_arch(space, codes[pos[jnp.argmax(values[pos])]])

        def cond(c):
            i, child, _ = c
            return (i < max_tries) & queried[arch_codes(space, child)]

        def body(c):
            i, child, kk = c
            kk, k1 = jax.random.split(kk)
            return i + 1, space.mutate(k1, child), kk

        _, child, _ = jax.lax.while_loop(cond, body, (0, space.mutate(k_m, parent), k_m))
        c = arch_codes(space, child)
        c = jnp.where(queried[c], _random_unqueried(k_r, queried), c)
        return (codes.at[t].set(c), values.at[t].set(table[c]), queried.at[c].set(True)), None

    ts = jnp.arange(population, budget)
    (codes, values, _), _ = jax.lax.scan(step, (codes, values, queried), (ts, jax.random.split(key, len(ts))))
    return Trace(codes, values)


class SearchState(NamedTuple):
    codes: jax.Array  # int32 [budget] queried rows so far (zeros past the current count)
    values: jax.Array  # float32 [budget] their queried metric
    queried: jax.Array  # bool [N] mask over the whole space


Acquisition = Literal["exhaustive", "evolution", "reinforce"]


@dataclass(frozen=True)
class PredictorSearch:
    """The fine-tune loop: query ``init`` random cells, then repeat {fit the predictor on all queried cells;
    propose with ``acquisition``; query the ``topk`` best unqueried proposals} until ``budget`` queries.

    acquisition: ``exhaustive`` ranks every cell (finite spaces); ``evolution`` / ``reinforce`` optimise the
    predictor's score and rank only the cells they visited (for spaces too large to enumerate).
    Score = mean + ``beta`` * ensemble std (UCB; beta 0 = greedy).
    """

    budget: int = 100
    init: int = 10
    topk: int = 10
    acquisition: Acquisition = "exhaustive"
    beta: float = 0.0
    encoding: str = "onehot_pruned"
    evo_population: int = 64
    evo_generations: int = 20
    rl_steps: int = 40
    rl_batch: int = 64

    def __post_init__(self):
        if self.budget < self.init or (self.budget - self.init) % self.topk:
            raise ValueError(f"PredictorSearch needs budget - init to be a multiple of topk, got budget={self.budget}, "
                             f"init={self.init}, topk={self.topk}")

    @property
    def rounds(self) -> int:
        return (self.budget - self.init) // self.topk

    def init_state(self, key: jax.Array, table: jax.Array) -> SearchState:
        """The ``init`` random queries. ``key`` is the first half of ``split(search_key)`` (see ``run``)."""
        n_cells = table.shape[0]
        codes0 = jax.random.permutation(key, n_cells)[: self.init].astype(jnp.int32)
        return SearchState(jnp.zeros(self.budget, jnp.int32).at[: self.init].set(codes0),
                           jnp.zeros(self.budget, jnp.float32).at[: self.init].set(table[codes0]),
                           jnp.zeros(n_cells, bool).at[codes0].set(True))

    def round(self, state: SearchState, r: jax.Array, key: jax.Array, table: jax.Array, features: jax.Array, *,
              predictor, space: NB201Space) -> SearchState:
        """Round ``r`` (0-based): fit on the ``init + r * topk`` queried cells, query the ``topk`` best unqueried."""
        codes, values, queried = state
        n_cells = table.shape[0]
        k_fit, k_acq = jax.random.split(key)
        n = self.init + r * self.topk
        params = predictor.fit(k_fit, features[codes], values, n)
        mean, std = predictor.score_std(params, features)
        acq = mean + self.beta * std
        if self.acquisition != "exhaustive":
            def fitness(archs):
                c = arch_codes(space, archs)
                m, s = predictor.score_std(params, features[c])
                return m + self.beta * s

            if self.acquisition == "evolution":
                visited = evolve(k_acq, fitness, space=space, population=self.evo_population,
                                 generations=self.evo_generations)
            else:
                visited = reinforce(k_acq, fitness, num_edges=space.num_edges, num_ops=space.num_ops,
                                    steps=self.rl_steps, batch=self.rl_batch)
            proposed = jnp.zeros(n_cells, bool).at[arch_codes(space, visited)].set(True)
            # proposed cells first (ordered by score); if the optimiser visited fewer than topk new cells,
            # the rest come from the global ranking. The shift is the score range, so no precision is lost.
            shift = jnp.max(acq) - jnp.min(acq) + 1.0
            acq = jnp.where(proposed, acq, acq - shift)
        acq = jnp.where(queried, -jnp.inf, acq)
        _, new = jax.lax.top_k(acq, self.topk)  # distinct and never queried before
        new = new.astype(jnp.int32)
        codes = jax.lax.dynamic_update_slice(codes, new, (n,))
        values = jax.lax.dynamic_update_slice(values, table[new], (n,))
        return SearchState(codes, values, queried.at[new].set(True))

    def round_keys(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(init key, [rounds] round keys) of a search key; ``run`` and step-wise runners use the same split."""
        k_init, key = jax.random.split(key)
        return k_init, jax.random.split(key, self.rounds)

    def run(self, key: jax.Array, table: jax.Array, features: jax.Array, *, predictor, space: NB201Space) -> Trace:
        k_init, keys = self.round_keys(key)

        def round_(state, xs):
            r, k = xs
            return self.round(state, r, k, table, features, predictor=predictor, space=space), None

        state, _ = jax.lax.scan(round_, self.init_state(k_init, table), (jnp.arange(self.rounds), keys))
        return Trace(state.codes, state.values)


def best_so_far(trace_values: np.ndarray, report: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[..., B] report metric (e.g. test acc) of the best-by-queried-metric cell after each query."""
    values = np.asarray(trace_values)
    arg = np.zeros(values.shape, np.int64)
    best_idx = np.zeros(values.shape[:-1], np.int64)
    for t in range(values.shape[-1]):
        better = np.take_along_axis(values, best_idx[..., None], -1)[..., 0] < values[..., t]
        best_idx = np.where(better, t, best_idx)
        arg[..., t] = best_idx
    return np.asarray(report)[np.take_along_axis(np.asarray(codes), arg, -1)]
