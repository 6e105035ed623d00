"""The trust search on a table (metanas.search.trust.TrustSearch with portfolio members, as
metanas.hpo.trust_portfolio runs it) on SYNTHETIC regret matrices: it starts exactly as
its prior (the greedy portfolio), hands over to the source task that ranks the target's evaluations right, never
reads an unevaluated target value, and padding the source tasks changes nothing."""

import jax
import numpy as np
import pytest

from metanas.hpo.portfolio import WARM_START_CANDIDATES, greedy_portfolio, rank_matrix, regret_curve
from metanas.hpo.trust_portfolio import SETTINGS, TrustSettings, build_members, run_trust

KERNEL = (WARM_START_CANDIDATES[-2], WARM_START_CANDIDATES[-1])  # uniform weights


def _table(seed=0, tasks=10, configs=24):
    rng = np.random.default_rng(seed)
    regret = rng.random((tasks, configs))
    regret = (regret - regret.min(1, keepdims=True)) / np.ptp(regret, 1, keepdims=True)
    return rng.normal(size=(tasks, 3)), regret, rng.normal(size=(configs, 4))


def test_first_picks_are_the_greedy_portfolio_and_prior_alone_is_it():
    feats, regret, cfg = _table()
    src, tgt = np.arange(1, 10), np.array([0])
    members = [build_members(feats[src], regret[src], feats[0], k=3, kernel=KERNEL)[0]]
    greedy = greedy_portfolio(regret[src], 6)
    for s in (SETTINGS[0], SETTINGS[3]):
        picks = run_trust(s, members, [regret[src]], -regret[tgt], cfg, budget=6, seed=0)[0][0]
        assert picks[:2].tolist() == greedy[:2]  # no pair judged before two evaluations: the prior decides
        if s.acquisition == "prior":
            assert picks.tolist() == greedy
    # zero-shot ranking = the prior member's: mean per-task rank
    rank0 = run_trust(SETTINGS[3], members, [regret[src]], -regret[tgt], cfg, budget=6, seed=0)[2][0, 0]
    assert np.corrcoef(rank0, -rank_matrix(regret[src]).mean(0))[0, 1] > 0.999


def test_hands_over_to_the_source_task_the_target_resembles():
    """The target is a (slightly noisy) twin of one source task among 9 unrelated ones: once its evaluations can be
    judged, that task's own member earns the largest weight and the search finds the target's best config."""
    rng = np.random.default_rng(3)
    src = rng.random((9, 30))
    src = (src - src.min(1, keepdims=True)) / np.ptp(src, 1, keepdims=True)
    j = 4
    target = np.clip(src[j] + 0.01 * rng.normal(size=30), 0, None)
    target[np.argmin(src[j])] = -0.1  # the same best config
    target = (target - target.min()) / np.ptp(target)
    feats = rng.normal(size=(9, 3))
    members = [build_members(feats, src, rng.normal(size=3), k=3, kernel=KERNEL)[0]]
    cfg = rng.normal(size=(30, 4))
    picks, w, _ = run_trust(TrustSettings(acquisition="mixture", use_target=False), members, [src], -target[None],
                            cfg, budget=8, seed=1)
    assert regret_curve(target, picks[0])[-1] == 0.0
    assert np.argmax(w[0][-1]) == 4 + j  # prior members first, then one member per source task


def test_unevaluated_target_values_are_never_read():
    feats, regret, cfg = _table(1)
    src = np.arange(1, 10)
    members = [build_members(feats[src], regret[src], feats[0], k=3, kernel=KERNEL)[0]]
    y = -regret[:1].copy()
    picks, w, r = run_trust(SETTINGS[3], members, [regret[src]], y, cfg, budget=6, seed=0)
    poisoned = y.copy()
    rest = np.setdiff1d(np.arange(y.shape[1]), picks[0])
    poisoned[0, rest] = np.random.default_rng(0).normal(size=len(rest)) * 100
    p2, w2, r2 = run_trust(SETTINGS[3], members, [regret[src]], poisoned, cfg, budget=6, seed=0)
    np.testing.assert_array_equal(picks, p2)
    np.testing.assert_allclose(w, w2)


@pytest.mark.slow
def test_tasks_with_different_source_sets_run_together_as_alone():
    feats, regret, cfg = _table(2)
    a_src, b_src = np.arange(1, 10), np.arange(2, 8)
    ma = build_members(feats[a_src], regret[a_src], feats[0], k=3, kernel=KERNEL)[0]
    mb = build_members(feats[b_src], regret[b_src], feats[1], k=3, kernel=KERNEL)[0]
    both = run_trust(SETTINGS[4], [ma, mb], [regret[a_src], regret[b_src]], -regret[:2], cfg, budget=5, seed=0)
    alone = run_trust(SETTINGS[4], [mb], [regret[b_src]], -regret[1:2], cfg, budget=5, seed=0, ids=[1])
    assert both[0].shape == (2, 5) and both[1][0].shape == (5, 4 + 9 + 1) and both[1][1].shape == (5, 4 + 6 + 1)
    np.testing.assert_array_equal(both[0][1], alone[0][0])
    np.testing.assert_allclose(both[1][1], alone[1][0], atol=1e-6)


def test_table_search_jits_and_vmaps_over_tasks(key):
    from metanas.hpo.trust_portfolio import rank_gp, search_for
    from metanas.search.trust import Portfolio

    feats, regret, cfg = _table(4)
    m = build_members(feats[1:], regret[1:], feats[0], k=3, kernel=KERNEL)[0]
    search = search_for(TrustSettings(), 4)
    x = jax.numpy.asarray(cfg, jax.numpy.float32)

    def one(k, y):
        return search.run(k, x, m.rank, y, fit=rank_gp(x), portfolio=Portfolio(regret[1:], m.mix, m.complementary))

    out = jax.jit(jax.vmap(one))(jax.random.split(key, 2), -regret[:2])
    assert out.codes.shape == (2, 4) and out.ranking.shape == (2, 4, regret.shape[1])
    np.testing.assert_allclose(out.weights.sum(-1), 1.0, atol=1e-5)
    assert all(len(set(c)) == 4 for c in np.asarray(out.codes).tolist())


def test_run_trust_makes_no_batched_lapack_call():
    """The held-out tasks are mapped, not batched: batched, the target GP's LAPACK calls run through jaxlib's
    ParallelBatchMap on the XLA CPU pool that calls them (the deadlock of the TransNAS study on 2 cores)."""
    import re

    import jax.numpy as jnp

    from metanas.hpo.trust_portfolio import PriorMembers, _searcher

    feats, regret, cfg = _table(5)
    m = build_members(feats[1:], regret[1:], feats[0], k=3, kernel=KERNEL)[0]
    st = PriorMembers(*(jnp.asarray(np.stack([getattr(m, f)] * 3)) for f in PriorMembers._fields))
    hlo = _searcher(SETTINGS[3], 4).lower(jax.random.split(jax.random.PRNGKey(0), 3), st,
                                           jnp.asarray(np.stack([regret[1:]] * 3), jnp.float32),
                                           jnp.asarray(-regret[:3], jnp.float32), jnp.asarray(cfg, jnp.float32)
                                           ).as_text()
    calls = [line for line in hlo.splitlines() if "custom_call @lapack_" in line]
    assert calls and all(re.search(r'num_batch_dims = "0"', line) for line in calls)
