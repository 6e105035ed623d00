"""Trust search (metanas.search.trust) and the space-generic TransNAS loader: a perfect prior member is followed from
the first query, a useless one loses its weight, the first random cells are common to every method of a seed,
censoring treats every method alike, leave-one-task-out holds, and user files of other shapes load and search.
All tables here are SYNTHETIC (small random tables built in the tests)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.benchmarks.transnas import TransNASDataError, encode_cells, load_transnas, task_view, top_cells
from metanas.search import trust as R
from metanas.search.transfer import order_queries_to_hit, paired_study, queries_to_hit, zscore_order

SEARCH = R.TrustSearch(budget=15, init=5, topk=5, n_boot=50)


def _space(n_pos=4, n_choice=3, seed=0):
    """SYNTHETIC: every cell of n_choice ** n_pos, an additive value per (position, choice)."""
    rng = np.random.default_rng(seed)
    archs = np.stack(np.meshgrid(*[np.arange(n_choice)] * n_pos, indexing="ij"), -1).reshape(-1, n_pos)
    x = encode_cells(archs)
    return archs, x, rng


def test_perfect_prior_member_is_followed_and_useless_member_gets_no_weight():
    archs, x, rng = _space()
    truth = (x @ rng.normal(size=x.shape[1])).astype(np.float32)
    useless = rng.normal(size=truth.shape).astype(np.float32)
    members = R.prior_members(np.stack([useless, truth]))[1:]  # row 0 useless, row 1 perfect
    s = R.TrustSearch(budget=15, init=5, topk=5, n_boot=50, start=1)
    tr = jax.vmap(lambda k: s.run(k, jnp.asarray(x), jnp.asarray(members), jnp.asarray(truth)))(
        jax.random.split(jax.random.PRNGKey(0), 3))
    order = np.argsort(-truth)
    for codes in np.asarray(tr.codes):
        assert set(codes[:5].tolist()) == set(order[:5].tolist())  # starts exactly as the perfect prior
        assert queries_to_hit(codes, top_cells(truth, 0.01)) == 1
    w = np.asarray(tr.weights)  # [seeds, rounds, M + 1]
    assert (w[:, :, 1] >= w[:, :, 2] - 1e-6).all()  # the perfect member is never trusted less than the target model
    assert (w[:, :, 1] > 0.45).all() and (w[:, :, 0] < 0.05).all()


def test_start_member_decides_the_first_queries_and_no_prior_starts_at_random():
    archs, x, rng = _space()
    v = rng.normal(size=len(x)).astype(np.float32)
    members = R.prior_members(rng.normal(size=(3, len(x))))
    key = jax.random.PRNGKey(4)
    tr = SEARCH.run(key, jnp.asarray(x), jnp.asarray(members), jnp.asarray(v))
    assert set(np.asarray(tr.codes[:5]).tolist()) == set(np.argsort(-members[0])[:5].tolist())
    scratch = SEARCH.run(key, jnp.asarray(x), jnp.zeros((0, len(x))), jnp.asarray(v))
    first = np.asarray(R.initial_cells(jax.random.split(key)[0], len(x), 5))
    np.testing.assert_array_equal(np.asarray(scratch.codes[:5]), first)
    np.testing.assert_array_equal(np.asarray(R.random_order(jax.random.split(key)[0], len(x))[:5]), first)
    assert len(set(np.asarray(scratch.codes).tolist())) == 15 and scratch.weights.shape == (2, 1)


@pytest.mark.slow  # ~36 s on the loaded 2-core CPU (9 GP compiles)
def test_gp_leave_one_out_is_out_of_fold():
    """The target member's trust row must not see the point it predicts: a duplicate-free LOO differs from a fit."""
    archs, x, rng = _space(3, 3)
    y = rng.normal(size=8).astype(np.float32)
    xq = jnp.asarray(np.concatenate([x[:8], np.zeros((4, x.shape[1]), np.float32)]))
    yy = jnp.asarray(np.concatenate([y, np.zeros(4, np.float32)]))
    mask = jnp.arange(12) < 8
    mu, loo = R.gp_loo(xq, yy, mask, jnp.asarray(x))
    mu_minus = []
    for i in range(8):
        keep = np.ones(8, bool)
        keep[i] = False
        xi = jnp.asarray(np.concatenate([x[:8][keep], np.zeros((5, x.shape[1]), np.float32)]))
        yi = jnp.asarray(np.concatenate([y[keep], np.zeros(5, np.float32)]))
        # a fixed one-point grid: the same hyper-parameters with and without the point
        m_i, _ = R.gp_loo(xi, yi, jnp.arange(12) < 7, jnp.asarray(x), lengthscales=(0.4,), noises=(0.1,))
        mu_minus.append(float(m_i[i]))
    _, loo_fixed = R.gp_loo(xq, yy, mask, jnp.asarray(x), lengthscales=(0.4,), noises=(0.1,))
    np.testing.assert_allclose(np.asarray(loo_fixed[:8]), mu_minus, rtol=1e-3, atol=1e-4)
    assert np.asarray(mu).shape == (len(x),)


def test_local_search_moves_by_one_position():
    archs, x, rng = _space()
    v = (x @ rng.normal(size=x.shape[1])).astype(np.float32)
    prior = rng.normal(size=len(x))
    codes = R.prior_local_search(archs, v, prior, 3, 20)
    assert len(set(codes.tolist())) == 20
    np.testing.assert_array_equal(codes[:3], np.argsort(-prior, kind="stable")[:3])
    # every later query is a one-position neighbour of an earlier cell or a restart at the best unqueried prior cell
    for i in range(3, 20):
        near = ((archs[codes[:i]] != archs[codes[i]]).sum(1) == 1).any()
        rest = np.argsort(-prior, kind="stable")
        restart = codes[i] == [c for c in rest if c not in codes[:i]][0]
        assert near or restart


def _user_tasks(path, seed=0):
    """SYNTHETIC user file: 4 positions x 3 choices (81 cells), 4 tasks that hold different random subsets."""
    archs, x, rng = _space(4, 3, seed)
    w = rng.normal(size=x.shape[1])
    d = {}
    for t in "abcd":
        keep = rng.random(len(archs)) < 0.75
        vals = x @ (w + 0.5 * rng.normal(size=w.shape)) + 0.2 * rng.normal(size=len(archs))
        d[t] = {str(tuple(int(o) for o in a)): {"val_accuracy": float(v)} for a, v, k in zip(archs, vals, keep) if k}
    path.write_text(json.dumps(d))
    return d


def test_user_file_any_shape_and_subsets(tmp_path):
    d = _user_tasks(tmp_path / "mine.json")
    data = load_transnas(tmp_path / "mine.json")
    assert data.archs.shape[1] == 4 and data.x.shape[1] == 12  # 4 positions x 3 choices
    held = np.isfinite(data.valid)
    assert [int(h.sum()) for h in held] == [len(d[t]) for t in "abcd"]
    # the target's top cells are judged among its own cells
    cells, x, sv, tv, _ = task_view(data, 2, [0, 1, 3])
    assert len(tv) == len(d["c"]) and np.isfinite(tv).all() and np.isnan(sv).any()
    hit = top_cells(tv, 0.05)
    assert hit.sum() == max(1, round(0.05 * len(tv)))
    assert np.isfinite(zscore_order(sv)).all()
    with pytest.raises(ValueError, match="cannot be among its own source tasks"):
        task_view(data, 2, [0, 2])
    # the whole row of a task that lacks a cell is NaN there, never a top cell
    assert not top_cells(data.valid, 0.05)[~held].any()
    # bad shapes: one line naming what is wrong
    (tmp_path / "bad.json").write_text(json.dumps({"a": {"(0, 1)": {"val_accuracy": 1.0},
                                                         "(0, 1, 2)": {"val_accuracy": 2.0}}}))
    with pytest.raises(TransNASDataError, match="different lengths"):
        load_transnas(tmp_path / "bad.json")


def test_paired_study_common_random_numbers_censoring_and_leave_one_out(tmp_path):
    _user_tasks(tmp_path / "mine.json", seed=1)
    data = load_transnas(tmp_path / "mine.json")
    methods = {"trust": {"kind": "trust", "members": "orders"}, "scratch": {"kind": "scratch"},
               "random": {"kind": "random"}, "zero_shot": {"kind": "zero_shot"},
               "zero_shot_ls": {"kind": "zero_shot_ls"}}
    r = paired_study([0, 1, 2], data, methods=methods, budget=10, init=5, topk=5, hit_frac=0.02, targets=[0],
                     log=lambda m: None)
    res = r["targets"]["a"]
    codes = res["codes"]
    for i in range(3):  # the same random first cells within a seed; the same prior first cells
        assert sorted(codes["scratch"][i]) == sorted(codes["random"][i])
        assert sorted(codes["trust"][i]) == sorted(codes["zero_shot_ls"][i])
    assert codes["scratch"][0] != codes["scratch"][1]
    for q in res["queries"].values():  # censored at budget + 1 for every method, orders included
        assert max(q) <= 11 and min(q) >= 1
    order = order_queries_to_hit(R.prior_members(task_view(data, 0, [1, 2, 3])[2])[0],
                                 top_cells(task_view(data, 0, [1, 2, 3])[3], 0.02))
    assert res["queries"]["zero_shot"] == [float(min(order, 11))] * 3
    # leave-one-task-out: poisoning the target's own records changes neither the prior members nor the first cells
    poisoned = data._replace(valid=np.where(np.arange(4)[:, None] == 0, -data.valid, data.valid))
    r2 = paired_study([0, 1, 2], poisoned, methods={"trust": methods["trust"]}, budget=10, init=5, topk=5,
                      hit_frac=0.02, targets=[0], log=lambda m: None)
    assert r2["targets"]["a"]["codes"]["trust"] == codes["trust"]


def test_hand_over_level_keeps_the_search_on_the_start_prior_until_earned():
    from metanas.predictors.trust import earned, gate

    _, x, rng = _space()
    truth = (x @ rng.normal(size=x.shape[1])).astype(np.float32)
    noisy = truth + rng.normal(scale=2 * truth.std(), size=truth.shape).astype(np.float32)
    members = R.prior_members(np.stack([noisy, truth]))[1:]  # row 0 a weak prior (the start), row 1 perfect
    # a level no member can reach: the search is exactly the start prior's order
    s = R.TrustSearch(budget=10, init=5, topk=5, n_boot=20, start=0, level=1.01)
    tr = s.run(jax.random.PRNGKey(1), jnp.asarray(x), jnp.asarray(members), jnp.asarray(truth))
    np.testing.assert_array_equal(np.sort(np.asarray(tr.codes)), np.sort(np.argsort(-members[0])[:10]))
    assert np.allclose(np.asarray(tr.weights)[:, 0], 1.0)
    # the perfect member beats the weak start on 30 queried cells in every resample; a useless one never does
    codes = rng.choice(len(x), 30, replace=False)
    useless = rng.normal(size=len(x)).astype(np.float32)
    rows = jnp.asarray(np.stack([members[0], members[1], useless])[:, codes])
    ok = earned(jax.random.PRNGKey(0), rows, jnp.asarray(truth[codes]), jnp.ones(30, bool), 0, level=0.95)
    assert np.asarray(ok).tolist() == [True, True, False]
    w = gate(jnp.array([0.2, 0.3, 0.5]), ok, 0)
    np.testing.assert_allclose(np.asarray(w), [0.4, 0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(gate(jnp.ones(3) / 3, jnp.array([False] * 3), 2)), [0, 0, 1])


def test_study_run_makes_no_batched_lapack_call():
    """The study's seeds run (``search.transfer._seeds_run``) must not batch the GP's Cholesky / triangular solves:
    batched, jaxlib runs them through ParallelBatchMap on the XLA CPU pool they are called from, and on 2 cores the
    vmapped study deadlocked (every thread waiting, no error)."""
    import re

    from metanas.search.transfer import _seeds_run

    _, x, rng = _space()
    s = R.TrustSearch(budget=10, init=5, topk=5, n_boot=8)
    hlo = _seeds_run(s).lower(jax.random.split(jax.random.PRNGKey(0), 3), jnp.asarray(x),
                              jnp.zeros((3, 2, len(x))), jnp.zeros(len(x))).as_text()
    calls = [line for line in hlo.splitlines() if "custom_call @lapack_" in line]
    assert calls and all(re.search(r'num_batch_dims = "0"', line) for line in calls)


def test_host_loop_with_the_gp_equals_the_jitted_loop_and_takes_two_target_models():
    """``run_host`` with ``gp_fit`` is the jitted ``run`` (same queries, same weights); ``target_fit("gp+forest")``
    adds the forest as a second target member, each judged on its own out-of-fold scores (SYNTHETIC table)."""
    archs, x, rng = _space()
    v = (x @ rng.normal(size=x.shape[1])).astype(np.float32)
    members = R.prior_members(rng.normal(size=(2, len(x))))
    key = jax.random.PRNGKey(7)
    jit = SEARCH.run(key, jnp.asarray(x), jnp.asarray(members), jnp.asarray(v))
    host = SEARCH.run_host(key, x, members, v, R.target_fit("gp", 0))
    np.testing.assert_array_equal(np.asarray(host.codes), np.asarray(jit.codes))
    np.testing.assert_allclose(np.asarray(host.weights), np.asarray(jit.weights), atol=1e-5)
    both = SEARCH.run_host(key, x, members, v, R.target_fit("gp+forest", 0, trees=20))
    assert both.weights.shape == (2, members.shape[0] + 2)
    np.testing.assert_allclose(np.asarray(both.weights).sum(1), 1.0, atol=1e-5)
    assert len(set(np.asarray(both.codes).tolist())) == 15
    with pytest.raises(ValueError, match="join gp and/or forest"):
        R.target_fit("svm", 0)
