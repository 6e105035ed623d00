"""Black-box search: budgets, no repeated queries, optimizers improve a known fitness, baselines behave."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.benchmarks.nb201 import NB201Benchmark
from metanas.search import table_search as S
from metanas.search.acquisition import evolve, reinforce
from metanas.predictors.encodings import encode_archs
from metanas.predictors.pairwise import Pairwise
from metanas.predictors.pointwise import Ridge
from metanas.search_spaces.nb201 import NB201Space

SPACE = NB201Space()
TABLE = jnp.asarray(NB201Benchmark().table())
FEATURES = encode_archs(SPACE, SPACE.enumerate(), "onehot")
TINY = Pairwise(hidden=8, layers=1, embed=4, steps=20, batch=32)


def test_codes_round_trip():
    archs = SPACE.enumerate()[::11]
    codes = S.arch_codes(SPACE, jnp.asarray(archs))
    np.testing.assert_array_equal(codes, SPACE.arch_code(archs))
    np.testing.assert_array_equal(S.code_to_arch(SPACE, codes), archs)


def _check_trace(trace, budget):
    codes = np.asarray(trace.codes)
    assert codes.shape[-1] == budget
    for row in codes.reshape(-1, budget):
        assert len(set(row.tolist())) == budget  # never the same arch twice
    np.testing.assert_array_equal(np.asarray(trace.values), np.asarray(TABLE)[codes])  # values are real lookups


@pytest.mark.parametrize("acquisition", ["exhaustive", pytest.param("evolution", marks=pytest.mark.slow),
                                         pytest.param("reinforce", marks=pytest.mark.slow)])
def test_predictor_search_respects_budget_and_never_repeats(key, acquisition):
    search = S.PredictorSearch(budget=16, init=4, topk=6, acquisition=acquisition, evo_population=16,
                               evo_generations=3, rl_steps=3, rl_batch=16)
    trace = jax.jit(jax.vmap(lambda k: search.run(k, TABLE, FEATURES, predictor=TINY, space=SPACE)))(
        jax.random.split(key, 2))
    _check_trace(trace, 16)


def test_predictor_search_never_repeats_even_when_the_space_runs_out(key):
    """SYNTHETIC 12-cell table: the budget equals the space, so the last rounds must pick the leftovers."""
    table = jnp.arange(1.0, 13.0)
    feats = jax.random.normal(key, (12, 5))
    search = S.PredictorSearch(budget=12, init=2, topk=5)
    trace = jax.jit(lambda k: search.run(k, table, feats, predictor=Ridge(), space=SPACE))(key)
    assert sorted(np.asarray(trace.codes).tolist()) == list(range(12))


def test_bad_budget_is_a_one_line_error():
    with pytest.raises(ValueError, match="budget - init to be a multiple of topk"):
        S.PredictorSearch(budget=30, init=10, topk=7)


def test_baselines_respect_budget_and_never_repeat(key):
    keys = jax.random.split(key, 3)
    _check_trace(jax.vmap(functools.partial(S.random_search, table=TABLE, budget=50))(keys), 50)
    rea = jax.jit(jax.vmap(functools.partial(S.regularized_evolution, table=TABLE, space=SPACE, budget=80,
                                             population=10, sample_size=3)))(keys)
    _check_trace(rea, 80)


@pytest.mark.slow
def test_regularized_evolution_beats_random_on_average(key):
    keys = jax.random.split(key, 8)
    rs = jax.vmap(functools.partial(S.random_search, table=TABLE, budget=150))(keys)
    rea = jax.jit(jax.vmap(functools.partial(S.regularized_evolution, table=TABLE, space=SPACE, budget=150)))(keys)
    assert np.asarray(rea.values)[:, 100:].mean() > np.asarray(rs.values)[:, 100:].mean() + 3  # children of good parents


def test_reported_best_so_far_reports_the_best_queried_cell():
    values = np.array([[1.0, 3.0, 2.0, 5.0]])
    codes = np.array([[7, 4, 2, 0]])
    report = np.arange(10.0) * 10
    np.testing.assert_array_equal(S.reported_best_so_far(values, report, codes), [[70, 40, 40, 0]])


def test_evolve_and_reinforce_improve_a_known_fitness(key):
    """SYNTHETIC fitness: number of edges whose op is 3; the optimum (all 3) scores 6."""
    def fitness(archs):
        return (archs == 3).sum(-1).astype(jnp.float32)

    visited = jax.jit(lambda k: evolve(k, fitness, space=SPACE, population=32, generations=15))(key)
    assert float(fitness(visited[-32:]).mean()) > float(fitness(visited[:32]).mean()) + 1.5
    sampled = jax.jit(lambda k: reinforce(k, fitness, num_edges=6, num_ops=5, steps=30, batch=32))(key)
    assert float(fitness(sampled[-32:]).mean()) > float(fitness(sampled[:32]).mean()) + 1.5


def test_neighbour_codes_are_the_one_edge_changes():
    arch = np.array([0, 1, 2, 3, 4, 0])
    code = int(SPACE.arch_code(arch))
    got = sorted(np.asarray(S.neighbour_codes(SPACE, jnp.int32(code))).tolist())
    assert got == sorted(SPACE.arch_code(SPACE.neighbours(arch)).tolist())


def test_local_search_respects_budget_never_repeats_and_climbs(key):
    keys = jax.random.split(key, 3)
    ls = jax.jit(jax.vmap(functools.partial(S.local_search, table=TABLE, space=SPACE, budget=60, init=5)))(keys)
    _check_trace(ls, 60)
    codes, values = np.asarray(ls.codes), np.asarray(ls.values)
    # after the random init, the first queries are the neighbours of the best initial cell
    for s in range(3):
        best0 = codes[s, np.argmax(values[s, :5])]
        nbhd = set(SPACE.arch_code(SPACE.neighbours(SPACE.enumerate()[best0])).tolist())
        assert set(codes[s, 5:10].tolist()) <= nbhd


def test_local_search_moves_to_the_best_neighbour_and_restarts_at_a_local_optimum():
    """SYNTHETIC table with one peak: value = -(Hamming distance to the peak); LS must walk to it and restart."""
    peak = np.array([3, 3, 3, 3, 3, 3])
    archs = SPACE.enumerate()
    table = jnp.asarray(-(archs != peak).sum(1).astype(np.float32))
    tr = jax.jit(functools.partial(S.local_search, table=table, space=SPACE, budget=200, init=1))(jax.random.PRNGKey(3))
    values = np.asarray(tr.values)
    assert values.max() == 0  # found the peak: each full neighbourhood has a better cell until then
    hit = int(np.argmax(values == 0))
    assert hit <= 1 + 6 * 24  # at most 6 climbs of one neighbourhood each
    assert len(set(np.asarray(tr.codes).tolist())) == 200


def test_bananas_configuration_respects_budget_and_never_repeats(key):
    from metanas.predictors.pointwise import MLP

    search = S.PredictorSearch(budget=24, init=4, topk=5, acquisition="mutation", thompson=True,
                               mutation_candidates=20, encoding="path")
    feats = encode_archs(SPACE, SPACE.enumerate(), "path")
    trace = jax.jit(jax.vmap(lambda k: search.run(k, TABLE, feats, predictor=MLP(hidden=8, steps=10, ensemble=3),
                                                  space=SPACE)))(jax.random.split(key, 2))
    _check_trace(trace, 24)


def test_mutation_candidates_are_mutations_of_the_best_queried_cells(key):
    codes = jnp.asarray([5, 100, 2000, 7, 9], jnp.int32)
    values = jnp.asarray([1.0, 9.0, 8.0, 100.0, 0.0])  # row 3 is past n: not queried yet
    cand = np.asarray(S.mutation_candidates(key, SPACE, codes, values, 3, parents=2, candidates=40, max_mutations=1))
    allowed = set()
    for c in (100, 2000):
        allowed |= set(SPACE.arch_code(SPACE.neighbours(SPACE.enumerate()[c])).tolist())
    assert set(cand.tolist()) <= allowed


def test_reported_best_is_the_test_accuracy_of_the_best_by_validation_cell():
    """SYNTHETIC: validation and test disagree; the curve reports the best-by-validation cell's test accuracy,
    never the largest test accuracy among the queried cells."""
    valid = np.array([[80.0, 90.0, 85.0]])
    test = np.array([70.0, 60.0, 99.0, 0.0])
    codes = np.array([[0, 1, 2]])
    np.testing.assert_array_equal(S.reported_best_so_far(valid, test, codes), [[70.0, 60.0, 60.0]])


def test_every_search_respects_excluded_cells(key):
    canon = S.canonical_cells(SPACE)
    assert canon.sum() == 9445  # one cell per class of equivalent cells (the NB201 "valid nets")
    excluded = jnp.asarray(~canon)
    keys = jax.random.split(key, 2)
    runs = {
        "random": functools.partial(S.random_search, budget=40, excluded=excluded),
        "rea": functools.partial(S.regularized_evolution, space=SPACE, budget=40, population=8, sample_size=3,
                                 excluded=excluded),
        "ls": functools.partial(S.local_search, space=SPACE, budget=40, init=4, excluded=excluded),
        "pairwise": lambda k, table: S.PredictorSearch(budget=16, init=4, topk=6).run(
            k, table, FEATURES, predictor=TINY, space=SPACE, excluded=excluded),
    }
    for name, fn in runs.items():
        tr = jax.jit(jax.vmap(lambda k, fn=fn: fn(k, TABLE)))(keys)
        _check_trace(tr, tr.codes.shape[-1])
        assert canon[np.asarray(tr.codes)].all(), name


class _HostRidge(Ridge):
    """The same ridge model, flagged as a host model: ``round_fn`` fits and scores it per seed outside jit."""

    jittable = False


@pytest.mark.parametrize("acquisition", ["exhaustive", "mutation"])
def test_host_predictor_round_equals_the_jitted_round(key, acquisition):
    """The host path (trees, CVBlend) uses the same keys and acquisition as the jitted path: same queries."""
    search = S.PredictorSearch(budget=14, init=4, topk=5, acquisition=acquisition, thompson=acquisition == "mutation")
    keys = jax.random.split(key, 3)
    tables = jnp.broadcast_to(TABLE, (3, TABLE.shape[0]))
    k_init, rkeys = jax.vmap(search.round_keys)(keys)
    traces = []
    for pred in (Ridge(), _HostRidge()):
        state = jax.vmap(search.init_state)(k_init, tables)
        step = search.round_fn(FEATURES, predictor=pred, space=SPACE)
        for r in range(search.rounds):
            state = step(state, r, rkeys[:, r], tables)
        traces.append(S.Trace(state.codes, state.values))
    _check_trace(traces[1], 14)
    ref = jax.jit(jax.vmap(lambda k: search.run(k, TABLE, FEATURES, predictor=Ridge(), space=SPACE)))(keys)

    def per_round(codes):  # each round's queries as a set (eager vs jitted float rounding may swap near-ties)
        c = np.asarray(codes)
        return [np.sort(c[:, :4], 1)] + [np.sort(c[:, i:i + 5], 1) for i in range(4, 14, 5)]

    for a, b, c in zip(per_round(ref.codes), per_round(traces[0].codes), per_round(traces[1].codes)):
        np.testing.assert_array_equal(a, b)  # round_fn = run's scan, round by round
        np.testing.assert_array_equal(a, c)  # the host path queries the same cells


def test_random_forest_guided_search_respects_budget_and_never_repeats(key):
    from metanas.predictors.trees import RandomForest

    search = S.PredictorSearch(budget=12, init=4, topk=4)
    keys = jax.random.split(key, 2)
    tables = jnp.broadcast_to(TABLE, (2, TABLE.shape[0]))
    k_init, rkeys = jax.vmap(search.round_keys)(keys)
    state = jax.vmap(search.init_state)(k_init, tables)
    step = search.round_fn(FEATURES, predictor=RandomForest(trees=10), space=SPACE)
    for r in range(search.rounds):
        state = step(state, r, rkeys[:, r], tables)
    _check_trace(S.Trace(state.codes, state.values), 12)


def test_every_method_of_a_seed_starts_from_the_same_initial_cells(key):
    """Common random numbers: with one ``init_key`` per seed, random search, REA (any population), local search and
    the predictor-guided searches (greedy and BANANAS-style) query the same first ``init`` cells; other seeds differ."""
    init = 6
    excluded = ~S.canonical_cells(SPACE)
    keys = jax.random.split(key, 3)
    init_keys = jax.vmap(lambda k: jax.random.fold_in(k, 7))(keys)
    path = encode_archs(SPACE, SPACE.enumerate(), "path")
    bananas = S.PredictorSearch(budget=12, init=init, topk=3, acquisition="mutation", thompson=True, encoding="path")
    greedy = S.PredictorSearch(budget=12, init=init, topk=3)
    runs = {
        "random": lambda k, ki: S.random_search(k, TABLE, budget=12, excluded=excluded, init_key=ki),
        "rea": lambda k, ki: S.regularized_evolution(k, TABLE, space=SPACE, budget=14, population=10, sample_size=3,
                                                     excluded=excluded, init_key=ki),
        "ls": lambda k, ki: S.local_search(k, TABLE, space=SPACE, budget=12, init=init, excluded=excluded, init_key=ki),
        "greedy": lambda k, ki: greedy.run(k, TABLE, FEATURES, predictor=Ridge(), space=SPACE, excluded=excluded,
                                           init_key=ki),
        "bananas": lambda k, ki: bananas.run(jax.random.fold_in(k, 1), TABLE, path, predictor=Ridge(), space=SPACE,
                                             excluded=excluded, init_key=ki),
    }
    firsts = {name: np.asarray(jax.jit(jax.vmap(fn))(keys, init_keys).codes)[:, :init] for name, fn in runs.items()}
    ref = firsts.pop("random")
    for name, f in firsts.items():
        np.testing.assert_array_equal(f, ref, err_msg=name)
    assert len({tuple(r) for r in ref.tolist()}) == 3  # the seeds differ
    assert not np.asarray(excluded)[ref].any()


def test_trust_ensemble_weights_a_perfect_member_and_uses_out_of_fold_scores(key):
    """SYNTHETIC members: one prior member equal to the queried table (a perfect order) and one reversed. The trust
    ensemble gives the perfect member most of the weight and the reversed one none, and its out-of-fold scores of
    the target model are finite on the queried cells and 0 past them."""
    search = S.PredictorSearch(budget=20, init=10, topk=5, trust_folds=2, trust_boot=50)
    state = search.init_state(key, TABLE)
    state = search.round(state, jnp.int32(0), key, TABLE, FEATURES, predictor=TINY, space=SPACE,
                         members=jnp.stack([TABLE, -TABLE]))
    n = 15
    oof = search.oof_scores(key, state, n, FEATURES, predictor=TINY)
    assert np.isfinite(np.asarray(oof)).all() and (np.asarray(oof)[n:] == 0).all() and np.std(oof[:n]) > 0
    mean, std = TINY.score_std(TINY.fit(key, FEATURES[state.codes], state.values, n), FEATURES)
    blended, _, w = search.trust_scores(key, state, n, mean, std, FEATURES, predictor=TINY,
                                        members=jnp.stack([TABLE, -TABLE]))
    w = np.asarray(w)
    assert w[1] > 0.5 and w[2] == 0 and abs(w.sum() - 1) < 1e-5
    with pytest.raises(ValueError, match="prior members"):
        search.round(state, jnp.int32(1), key, TABLE, FEATURES, predictor=TINY, space=SPACE)
