"""Benchmark-backed search on a finite space (NB201): every query is a table lookup, so a whole search is a
pure function of its key. Runners ``jax.jit(jax.vmap(search))(keys)`` over seeds (purejaxrl style).

Archs are identified by their row ``code`` in ``space.enumerate()``; ``table`` [N] is the queried metric (the
validation accuracy under the NB201 protocol), ``features`` [N, D] the encodings. Each search returns
``Trace(codes [B], values [B])`` in query order; no code is queried twice and exactly ``budget`` queries are made.
``reported_best_so_far`` turns a trace into the reported curve: the report metric (test accuracy) of the cell with the best
*queried* value after each query.

Searches: ``PredictorSearch`` (the meta-learner's fine-tune loop; with an MLP ensemble on the path encoding,
``acquisition="mutation"`` and ``thompson=True`` it is BANANAS, White et al., AAAI 2021), and the baselines
``random_search``, ``regularized_evolution`` (Real et al., AAAI 2019) and ``local_search`` (White et al., UAI 2021,
"Local search is state of the art for NAS benchmarks").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.trust import blend, ranking_loss_weights
from metanas.search.acquisition import evolve, reinforce
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


def canonical_cells(space: NB201Space) -> np.ndarray:
    """bool [N]: the cells equal to their pruned form (``nb201_prune``), one per class of cells that compute the same
    function (the others differ from it only by dead branches); 9,445 of the 15,625 NB201 cells."""
    from metanas.predictors.encodings import nb201_prune

    archs = space.enumerate()
    return (np.asarray(jax.vmap(lambda a: nb201_prune(space, a))(archs)) == archs).all(1)


def _excluded(excluded, n: int) -> jax.Array:
    """bool [N] cells a search may not query (``None``: none); every search treats them as already queried."""
    return jnp.zeros(n, bool) if excluded is None else jnp.asarray(excluded, bool)


def _first_random(key: jax.Array, excluded: jax.Array, k: int) -> jax.Array:
    """int32 [k] distinct random cells outside ``excluded`` (a uniform sample without replacement). The first j of
    ``_first_random(key, excluded, k)`` are ``_first_random(key, excluded, j)`` for every j <= k, so methods that
    draw their initial cells from one key start from the same cells (common random numbers), whatever their count."""
    return jax.lax.top_k(jnp.where(excluded, -jnp.inf, jax.random.gumbel(key, excluded.shape)), k)[1].astype(jnp.int32)


def random_search(key: jax.Array, table: jax.Array, *, budget: int, excluded=None, init_key=None) -> Trace:
    """Uniform sampling without replacement (outside ``excluded``). With ``init_key`` (the key every method of a seed
    draws its initial cells from, see ``_first_random``) its first queries are the other methods' initial cells."""
    codes = _first_random(key if init_key is None else init_key, _excluded(excluded, table.shape[0]), budget)
    return Trace(codes, table[codes])


def _random_unqueried(key, queried):
    return jnp.argmax(jnp.where(queried, -jnp.inf, jax.random.gumbel(key, queried.shape))).astype(jnp.int32)


def unqueried_child(space, k_mutate, k_random, parent, queried, max_tries: int) -> jax.Array:
    """Code of a mutation of ``parent`` not yet ``queried`` (up to ``max_tries`` mutations of mutations), else of a
    random unqueried cell."""

    def cond(c):
        i, child, _ = c
        return (i < max_tries) & queried[arch_codes(space, child)]

    def body(c):
        i, child, kk = c
        kk, k1 = jax.random.split(kk)
        return i + 1, space.mutate(k1, child), kk

    _, child, _ = jax.lax.while_loop(cond, body, (0, space.mutate(k_mutate, parent), k_mutate))
    c = arch_codes(space, child)
    return jnp.where(queried[c], _random_unqueried(k_random, queried), c)


def regularized_evolution(key: jax.Array, table: jax.Array, *, space: NB201Space, budget: int,
                          population: int = 10, sample_size: int = 3, max_tries: int = 32, excluded=None,
                          init_key=None) -> Trace:
    """Regularized (aging) evolution, Real et al. (AAAI 2019), Alg. 1, with a cache: a child that was already
    queried (or is ``excluded``) is mutated again (up to ``max_tries``, then a random unqueried cell), so no query
    is wasted. Defaults: population 10, tournament sample 3 (the R-EA settings of the NB201 paper). The initial
    population is drawn with ``init_key`` when given (shared by every method of a seed)."""
    n = table.shape[0]
    k_init, key = jax.random.split(key)
    k_init = k_init if init_key is None else init_key
    excluded = _excluded(excluded, n)
    codes0 = _first_random(k_init, excluded, population)
    codes = jnp.zeros(budget, jnp.int32).at[:population].set(codes0)
    values = jnp.zeros(budget, jnp.float32).at[:population].set(table[codes0])
    queried = excluded.at[codes0].set(True)

    def step(carry, xs):
        codes, values, queried = carry
        t, k = xs
        k_s, k_m, k_r = jax.random.split(k, 3)
        # the population is the last `population` queries (aging): positions t-population .. t-1
        pos = t - population + jax.random.randint(k_s, (sample_size,), 0, population)
        parent = code_to_arch(space, codes[pos[jnp.argmax(values[pos])]])

        c = unqueried_child(space, k_m, k_r, parent, queried, max_tries)
        return (codes.at[t].set(c), values.at[t].set(table[c]), queried.at[c].set(True)), None

    ts = jnp.arange(population, budget)
    (codes, values, _), _ = jax.lax.scan(step, (codes, values, queried), (ts, jax.random.split(key, len(ts))))
    return Trace(codes, values)


def neighbour_codes(space: NB201Space, code: jax.Array) -> jax.Array:
    """int32 [E * (K - 1)]: codes of every cell that differs from ``code`` on exactly one edge (jittable)."""
    arch = code_to_arch(space, code)
    e = jnp.repeat(jnp.arange(space.num_edges), space.num_ops - 1)
    shift = jnp.tile(jnp.arange(1, space.num_ops), space.num_edges)
    archs = jnp.broadcast_to(arch, (e.shape[0], space.num_edges))
    archs = archs.at[jnp.arange(e.shape[0]), e].set((arch[e] + shift) % space.num_ops)
    return arch_codes(space, archs)


class LocalSearchState(NamedTuple):
    codes: jax.Array  # int32 [B]
    values: jax.Array  # float32 [B]
    queried: jax.Array  # bool [N]
    chosen_val: jax.Array  # value of the cell whose neighbourhood is being evaluated (-inf: none yet)
    best: jax.Array  # best cell of the current climb (since the last restart) and its value
    best_val: jax.Array
    nbhd: jax.Array  # int32 [M] the chosen cell's neighbours in random order
    ptr: jax.Array  # next neighbour to evaluate (M: the neighbourhood is done)


def local_search(key: jax.Array, table: jax.Array, *, space: NB201Space, budget: int, init: int = 10,
                 excluded=None, init_key=None) -> Trace:
    """Local search as in White et al. (UAI 2021) and NASLib's ``LocalSearch``: ``init`` random queries; then evaluate
    the whole neighbourhood (one-edge changes) of the best cell in random order, move to the best cell found if it
    improved, else restart from a random cell. Neighbours that were already queried (or are ``excluded``) are skipped
    (no query is spent on them), so it never queries a cell twice. The ``init`` cells are drawn with ``init_key`` when
    given (shared by every method of a seed)."""
    n = table.shape[0]
    m = space.num_edges * (space.num_ops - 1)
    k_init, key = jax.random.split(key)
    k_init = k_init if init_key is None else init_key
    init = min(init, budget)
    excluded = _excluded(excluded, n)
    codes0 = _first_random(k_init, excluded, init)
    vals0 = table[codes0]
    b = jnp.argmax(vals0)
    state = LocalSearchState(jnp.zeros(budget, jnp.int32).at[:init].set(codes0),
                             jnp.zeros(budget, jnp.float32).at[:init].set(vals0),
                             excluded.at[codes0].set(True), jnp.float32(-jnp.inf), codes0[b], vals0[b],
                             jnp.zeros(m, jnp.int32), jnp.int32(m))

    def next_query(st: LocalSearchState, k):
        """(code to query, restart?, state): skip queried neighbours, move or restart at the neighbourhood's end."""

        def cond(c):
            return ~c[1]

        def body(c):
            st, _, code, restart, k = c
            k, k_perm, k_rand = jax.random.split(k, 3)
            at_end = st.ptr >= m
            improved = st.best_val > st.chosen_val
            # neighbourhood done and the climb improved: move to the best cell, shuffle its neighbourhood
            move = at_end & improved
            nbhd = jnp.where(move, jax.random.permutation(k_perm, neighbour_codes(space, st.best)), st.nbhd)
            ptr = jnp.where(move, 0, st.ptr)
            chosen_val = jnp.where(move, st.best_val, st.chosen_val)
            # neighbourhood done, no improvement: restart from a random unqueried cell (that is the query)
            do_restart = at_end & ~improved
            cand = nbhd[jnp.minimum(ptr, m - 1)]
            take_nb = ~at_end & ~st.queried[cand]
            ptr = jnp.where(~at_end, ptr + 1, ptr)
            code = jnp.where(do_restart, _random_unqueried(k_rand, st.queried), cand)
            st = st._replace(nbhd=nbhd, ptr=ptr, chosen_val=chosen_val)
            return st, do_restart | take_nb, code.astype(jnp.int32), do_restart, k

        st, _, code, restart, _ = jax.lax.while_loop(cond, body, (st, False, jnp.int32(0), False, k))
        return code, restart, st

    def step(st: LocalSearchState, xs):
        t, k = xs
        c, restart, st = next_query(st, k)
        v = table[c]
        better = restart | (v > st.best_val)
        st = st._replace(codes=st.codes.at[t].set(c), values=st.values.at[t].set(v), queried=st.queried.at[c].set(True),
                         best=jnp.where(better, c, st.best), best_val=jnp.where(better, v, st.best_val))
        # a restart starts a new climb: its cell is chosen, its neighbourhood comes next
        st = st._replace(chosen_val=jnp.where(restart, -jnp.inf, st.chosen_val), ptr=jnp.where(restart, m, st.ptr))
        return st, None

    ts = jnp.arange(init, budget)
    st, _ = jax.lax.scan(step, state, (ts, jax.random.split(key, len(ts))))
    return Trace(st.codes, st.values)


def mutation_candidates(key: jax.Array, space: NB201Space, codes: jax.Array, values: jax.Array, n, *,
                        parents: int, candidates: int, max_mutations: int) -> jax.Array:
    """int32 [candidates]: BANANAS' acquisition candidates, mutations (1..``max_mutations`` edges) of the ``parents``
    best of the first ``n`` queried cells (NASLib ``acq_fn_optimization: mutation``)."""
    live = jnp.where(jnp.arange(values.shape[0]) < n, values, -jnp.inf)
    _, top = jax.lax.top_k(live, parents)
    k_par, k_num, k_mut = jax.random.split(key, 3)
    parent = code_to_arch(space, codes[top[jnp.arange(candidates) % parents]])
    n_mut = jax.random.randint(k_num, (candidates,), 1, max_mutations + 1)

    def mutate(k, arch, n_m):
        def body(i, a):
            return jnp.where(i < n_m, space.mutate(jax.random.fold_in(k, i), a), a)

        return jax.lax.fori_loop(0, max_mutations, body, arch)

    children = jax.vmap(mutate)(jax.random.split(k_mut, candidates), parent, n_mut)
    return arch_codes(space, children)


class GuidedSearchState(NamedTuple):
    codes: jax.Array  # int32 [budget] queried rows so far (zeros past the current count)
    values: jax.Array  # float32 [budget] their queried metric
    queried: jax.Array  # bool [N] mask over the whole space (queried or excluded)


Acquisition = Literal["exhaustive", "evolution", "reinforce", "mutation"]


@dataclass(frozen=True)
class PredictorSearch:
    """The fine-tune loop: query ``init`` random cells, then repeat {fit the predictor on all queried cells;
    propose with ``acquisition``; query the ``topk`` best unqueried proposals} until ``budget`` queries.

    acquisition: ``exhaustive`` ranks every cell (finite spaces); ``evolution`` / ``reinforce`` optimise the
    predictor's score and rank only the cells they visited (for spaces too large to enumerate); ``mutation`` ranks
    ``mutation_candidates`` mutations of the ``mutate_parents`` best queried cells (BANANAS).
    Score = mean + ``beta`` * ensemble std (UCB; beta 0 = greedy), or with ``thompson`` an independent Thompson
    sample mean + std * N(0, 1) per cell (BANANAS' ITS acquisition).

    Trust ensemble (``trust_folds`` > 0, with fixed prior ``members`` [M, N] passed to ``run`` / ``round``: zero-cost
    proxies, source tasks' tables, ...): each round the predictor fitted on the target is one member among the prior
    ones; its row on the queried cells is its ``trust_folds``-fold out-of-fold score, and every member's weight is
    its share of RGPE votes (``metanas.predictors.trust.ranking_loss_weights``, ``trust_boot`` bootstrap resamples
    of the queried cells, RGPE's dilution rule with the target member as reference). The ranking score is the
    weighted sum of the members' standardised scores (``trust.blend``); the spread is the target member's, scaled
    by its weight. Costs ``trust_folds`` extra fits per round.
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
    thompson: bool = False
    mutate_parents: int = 2
    mutation_candidates: int = 100
    max_mutations: int = 1
    trust_folds: int = 0  # > 0: trust ensemble of the target model and the prior members (see above)
    trust_boot: int = 100

    def __post_init__(self):
        if self.budget < self.init or (self.budget - self.init) % self.topk:
            raise ValueError(f"PredictorSearch needs budget - init to be a multiple of topk, got budget={self.budget}, "
                             f"init={self.init}, topk={self.topk}")

    @property
    def rounds(self) -> int:
        return (self.budget - self.init) // self.topk

    def init_state(self, key: jax.Array, table: jax.Array, excluded=None) -> GuidedSearchState:
        """The ``init`` random queries (outside ``excluded``, which is never queried). ``key`` is the first half of
        ``split(search_key)`` (see ``run``)."""
        excluded = _excluded(excluded, table.shape[0])
        codes0 = _first_random(key, excluded, self.init)
        return GuidedSearchState(jnp.zeros(self.budget, jnp.int32).at[: self.init].set(codes0),
                           jnp.zeros(self.budget, jnp.float32).at[: self.init].set(table[codes0]),
                           excluded.at[codes0].set(True))

    def round(self, state: GuidedSearchState, r: jax.Array, key: jax.Array, table: jax.Array, features: jax.Array, *,
              predictor, space: NB201Space, members=None) -> GuidedSearchState:
        """Round ``r`` (0-based): fit on the ``init + r * topk`` queried cells, query the ``topk`` best unqueried.
        ``members`` [M, N]: the prior members of the trust ensemble (used when ``trust_folds`` > 0)."""
        k_fit, k_acq = jax.random.split(key)
        n = self.init + r * self.topk
        params = predictor.fit(k_fit, features[state.codes], state.values, n)
        mean, std = predictor.score_std(params, features)
        if self.trust_folds > 0:
            if members is None:
                raise ValueError("PredictorSearch(trust_folds > 0) needs the prior members [M, N]")
            mean, std, _ = self.trust_scores(jax.random.fold_in(k_fit, 1), state, n, mean, std, features,
                                             predictor=predictor, members=members)
        return self.select(state, n, k_acq, mean, std, table, space=space)

    def oof_scores(self, key: jax.Array, state: GuidedSearchState, n, features: jax.Array, *, predictor) -> jax.Array:
        """float32 [budget]: ``trust_folds``-fold out-of-fold scores of the first ``n`` queried cells (query ``i`` is
        in fold ``i % trust_folds``; each fold's model is fitted on the other folds' cells only); 0 past ``n``."""
        b, k = state.codes.shape[0], self.trust_folds
        idx = jnp.arange(b)
        live = idx < n

        def fold(f, kf):
            held = (idx % k == f) | ~live
            order = jnp.argsort(held, stable=True)  # the fold's training cells first
            n_train = jnp.sum(~held)
            params = predictor.fit(kf, features[state.codes[order]], state.values[order], n_train)
            s = predictor.score(params, features[state.codes])
            # each fold's model has its own offset and scale: standardise over the queried cells
            m = jnp.sum(jnp.where(live, s, 0.0)) / n
            sd = jnp.sqrt(jnp.sum(jnp.where(live, (s - m) ** 2, 0.0)) / n)
            return jnp.where(idx % k == f, (s - m) / (sd + 1e-12), 0.0)

        return jnp.where(live, jax.vmap(fold)(jnp.arange(k), jax.random.split(key, k)).sum(0), 0.0)

    def trust_scores(self, key: jax.Array, state: GuidedSearchState, n, mean: jax.Array, std: jax.Array,
                     features: jax.Array, *, predictor, members: jax.Array):
        """(blended mean [N], std [N], weights [1 + M]) of the trust ensemble: member 0 is the target model (``mean``,
        judged by its out-of-fold scores), members 1.. the prior ``members`` [M, N]."""
        k_oof, k_w = jax.random.split(key)
        members = jnp.asarray(members, jnp.float32)
        live = jnp.arange(state.codes.shape[0]) < n
        rows = jnp.concatenate([self.oof_scores(k_oof, state, n, features, predictor=predictor)[None],
                                members[:, state.codes]])
        w = ranking_loss_weights(k_w, rows, state.values, live, n_boot=self.trust_boot, target=0)
        all_scores = jnp.concatenate([mean[None], members])
        return blend(all_scores, w), w[0] * std / (jnp.std(mean) + 1e-12), w

    def select(self, state: GuidedSearchState, n: jax.Array, key: jax.Array, mean: jax.Array, std: jax.Array,
               table: jax.Array, *, space: NB201Space) -> GuidedSearchState:
        """Query the ``topk`` best unqueried cells by the acquisition on the predictor's ``mean`` / ``std`` [N] over
        all cells (the second half of ``round``; jittable also when the scores come from a host model)."""
        codes, values, queried = state
        n_cells = table.shape[0]
        k_acq, k_its = jax.random.split(key)
        noise = jax.random.normal(k_its, mean.shape) if self.thompson else self.beta
        acq = mean + noise * std
        if self.acquisition == "mutation":
            k_cand, k_fill = jax.random.split(k_acq)  # each key used once
            cand = mutation_candidates(k_cand, space, codes, values, n, parents=self.mutate_parents,
                                       candidates=self.mutation_candidates, max_mutations=self.max_mutations)
            proposed = jnp.zeros(n_cells, bool).at[cand].set(True)
            # the candidates first (by acquisition); if fewer than topk are new, random unqueried cells fill up
            acq = jnp.where(proposed, acq - jnp.min(acq) + 1.0, -jax.random.uniform(k_fill, acq.shape))
        elif self.acquisition != "exhaustive":
            def fitness(archs):
                c = arch_codes(space, archs)
                return mean[c] + self.beta * std[c]

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
        return GuidedSearchState(codes, values, queried.at[new].set(True))

    def round_fn(self, features: jax.Array, *, predictor, space: NB201Space, members=None):
        """``fn(states, r, keys [S], tables [S, N]) -> states``: one round for S seeds at once. A JAX predictor runs
        as one ``jit(vmap(round))``; a host model (``jittable = False``: random forest, boosted trees, ``CVBlend``)
        is fitted and scored per seed on the host with the same keys, then the acquisition runs as one
        ``jit(vmap(select))``. ``members``: the trust ensemble's prior members [M, N] (JAX predictors only)."""
        from metanas.predictors.trees import is_jittable

        if is_jittable(predictor):
            return jax.jit(jax.vmap(functools.partial(self.round, features=features, predictor=predictor,
                                                      space=space, members=members), in_axes=(0, None, 0, 0)))
        if self.trust_folds > 0:
            raise ValueError("the trust ensemble (trust_folds > 0) needs a JAX predictor, not a host model")
        select = jax.jit(jax.vmap(functools.partial(self.select, space=space), in_axes=(0, None, 0, 0, 0, 0)))
        feats = np.asarray(features)

        def host_round(states: GuidedSearchState, r, keys: jax.Array, tables: jax.Array) -> GuidedSearchState:
            n = self.init + int(r) * self.topk
            k_fit, k_acq = jax.vmap(jax.random.split, out_axes=1)(keys)
            codes, values = np.asarray(states.codes), np.asarray(states.values)
            mean, std = zip(*(predictor.score_std(predictor.fit(k_fit[s], feats[codes[s]], values[s], n), feats)
                              for s in range(codes.shape[0])))
            return select(states, jnp.int32(n), k_acq, jnp.asarray(np.stack(mean), jnp.float32),
                          jnp.asarray(np.stack(std), jnp.float32), tables)

        return host_round

    def round_keys(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(init key, [rounds] round keys) of a search key; ``run`` and step-wise runners use the same split."""
        k_init, key = jax.random.split(key)
        return k_init, jax.random.split(key, self.rounds)

    def run(self, key: jax.Array, table: jax.Array, features: jax.Array, *, predictor, space: NB201Space,
            excluded=None, init_key=None, members=None) -> Trace:
        """The whole search; its ``init`` random cells are drawn with ``init_key`` when given (common random numbers:
        the key every method of a seed draws its initial cells from), else with the first half of ``key``."""
        k_init, keys = self.round_keys(key)
        k_init = k_init if init_key is None else init_key

        def round_(state, xs):
            r, k = xs
            return self.round(state, r, k, table, features, predictor=predictor, space=space, members=members), None

        state, _ = jax.lax.scan(round_, self.init_state(k_init, table, excluded), (jnp.arange(self.rounds), keys))
        return Trace(state.codes, state.values)


def reported_best_so_far(trace_values: np.ndarray, report: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """[..., B] report metric (e.g. test acc) of the best-by-queried-metric cell after each query."""
    values = np.asarray(trace_values)
    arg = np.zeros(values.shape, np.int64)
    best_idx = np.zeros(values.shape[:-1], np.int64)
    for t in range(values.shape[-1]):
        better = np.take_along_axis(values, best_idx[..., None], -1)[..., 0] < values[..., t]
        best_idx = np.where(better, t, best_idx)
        arg[..., t] = best_idx
    return np.asarray(report)[np.take_along_axis(np.asarray(codes), arg, -1)]
