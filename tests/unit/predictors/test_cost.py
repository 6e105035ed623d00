"""Few-shot cost model: prior meta-training, the design rule, adaptation; the held-out device is never read."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import synthetic_cost_devices

from metanas.predictors import cost as C
from metanas.search_spaces.nb201 import NB201Space

X = jnp.asarray(C.cost_features(NB201Space()))


def _synthetic_devices(n_dev, seed=0):
    """SYNTHETIC devices: additive costs w_d = base + low-rank device variation, plus 2 % noise."""
    return synthetic_cost_devices(X, n_dev, seed)


def test_meta_learnt_prior_adapts_to_a_new_synthetic_device_from_10_cells():
    ys = _synthetic_devices(7)
    prior = C.meta_train_prior(X, jnp.asarray(ys[:6]))
    y = jnp.asarray(ys[6])
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
    rank = jnp.asarray(np.argsort(np.argsort(ys[6])).astype(np.float32))
    rho = C.few_shot_run(prior, X, y, rank, keys, k=10, pool=500)[0]
    flat = C.few_shot_run(C.isotropic_prior(prior, 1e-4), X, y, rank, keys, k=10, pool=500)[0]
    assert float(rho.min()) > 0.9 and float(rho.mean()) > float(flat.mean())


def test_design_skips_failed_measurements_and_counts_them():
    prior = C.meta_train_prior(X, jnp.asarray(_synthetic_devices(4)))
    avail = jnp.asarray(np.random.default_rng(1).random(X.shape[0]) > 0.5)
    codes, failed = C.design(jax.random.PRNGKey(0), prior, X, avail, 10, pool=400)
    codes = np.asarray(codes)
    assert len(set(codes.tolist())) == 10 and np.asarray(avail)[codes].all()
    assert int(failed) >= 0
    never = jnp.zeros(X.shape[0], bool)
    codes, failed = C.design(jax.random.PRNGKey(0), prior, X, never, 5, pool=400, max_tries=12)
    assert (np.asarray(codes) == -1).all() and int(failed) == 12
    rc, rf = C.random_cells(jax.random.PRNGKey(3), avail, 10)
    assert len(set(np.asarray(rc).tolist())) == 10 and np.asarray(avail)[np.asarray(rc)].all() and int(rf) >= 0


def test_fit_ignores_rows_past_n_and_scores_in_target_units():
    prior = C.meta_train_prior(X, jnp.asarray(_synthetic_devices(5)))
    y = jnp.asarray(_synthetic_devices(1, seed=3)[0]) * 1000.0  # another unit: predictions follow it
    m = C.BayesLinearCost(prior)
    codes = jnp.arange(0, 400, 20)
    p1 = m.fit(None, X[codes], y[codes], 10)
    yy = y[codes].at[10:].set(1e9)
    p2 = m.fit(None, X[codes], yy, 10)
    np.testing.assert_allclose(m.score(p1, X), m.score(p2, X), rtol=1e-5)
    assert float(jnp.median(m.score(p1, X)) / jnp.median(y)) > 0.5


def test_held_out_device_table_is_never_read_during_meta_training(data_dir):
    """Replace the held-out device's column (every input size) with garbage: the prior and the nested choice are
    bit-identical, because the runner drops the column (HardwareTable.without) before anything is fitted."""
    from metanas.benchmarks.hardware import HW_DEVICES, HardwareTable, load_hw_bench
    from metanas.runners.hardware import HWLatencyTrain, nested_choice, source_stack

    tabs = {"cifar10": load_hw_bench(str(data_dir), "cifar10")}
    col = "eyeriss_latency"
    poisoned = {}
    for ds, t in tabs.items():
        v = t.values.copy()
        v[:, t.names.index(col)] = np.random.default_rng(0).random(len(v)) * 1e6
        poisoned[ds] = HardwareTable(t.names, v, "poisoned")
    sources = [d for d in HW_DEVICES if d != "eyeriss"]
    t = HWLatencyTrain(select_seeds=1, pool=100, prior_grid=((3.0, 1e-3),), ridge_grid=(1.0,), finetune_grid=(1e-2,),
                       families=("additive", "maml_mlp"), maml_meta_steps=3)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(1))
    out = []
    for tables in (tabs, poisoned):
        src = source_stack({ds: tb.without(col) for ds, tb in tables.items()}, sources, "latency")
        prior = C.meta_train_prior(X, jnp.asarray(np.concatenate(list(src.values()), 0)))
        choice = nested_choice(X, X[:, 1:31], src, keys, 5, t)
        out.append((np.asarray(prior.mean), np.asarray(prior.cov), choice["grid"], choice["family_scores"]))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][2] == out[1][2]
    assert set(out[0][3]) == {"additive", "maml_mlp"} and out[0][3] == out[1][3]  # the meta-learnt MLP's score too
    import pytest

    with pytest.raises(Exception, match="no column"):
        source_stack({ds: tb.without(col) for ds, tb in tabs.items()}, ["eyeriss"], "latency")


def test_with_sources_family_reduces_to_the_additive_model_and_learns_a_source_like_target():
    ys = _synthetic_devices(4, seed=3)
    prior = C.meta_train_prior(X, jnp.asarray(ys[:3]))
    xs = jnp.concatenate([X, jnp.asarray(C.source_features(ys[:3]))], 1)
    codes = jnp.arange(0, 15625, 997)[:12]
    y = jnp.asarray(ys[3])
    add = C.BayesLinearCost(prior)
    p_add = add.score(add.fit(None, X[codes], y[codes], len(codes)), X)
    tiny = C.BayesLinearCost(C.with_sources(prior, 3, 0.0))  # beta pinned at 0: the additive model
    p_tiny = tiny.score(tiny.fit(None, xs[codes], y[codes], len(codes)), xs)
    np.testing.assert_allclose(np.asarray(p_tiny), np.asarray(p_add), rtol=1e-3, atol=1e-3)
    # a target that IS a source (up to scale): the source column explains it from 12 cells
    wide = C.BayesLinearCost(C.with_sources(prior, 3, 1.0))
    y2 = jnp.asarray(ys[1] * 2.5)
    p_src = wide.score(wide.fit(None, xs[codes], y2[codes], len(codes)), xs)
    p_one = add.score(add.fit(None, X[codes], y2[codes], len(codes)), X)
    r_src, r_one = (np.corrcoef(np.asarray(p), np.asarray(y2))[0, 1] for p in (p_src, p_one))
    # 0.989 (source fits mapped) / 0.990 (vmapped): the float32 source fits move it in the third decimal
    assert r_src > 0.985 and r_src > r_one + 0.01, (r_src, r_one)  # the per-op model alone: 0.975


def _ensemble_setup(seed=0):
    ys = _synthetic_devices(7, seed=seed)
    prior = C.meta_train_prior(X, jnp.asarray(ys[:6]))
    xs = jnp.concatenate([X, jnp.asarray(C.source_features(ys[:6]))], 1)
    return ys, prior, C.with_sources(prior, 6, 0.1), xs


def test_ensemble_adapts_only_to_the_measured_cells():
    """Poison every cell the design did not measure (finite garbage: the same cells stay measurable): the chosen
    cells and the ensemble's predictions are bit-identical, so the target is read only at the k measured cells."""
    ys, prior, pb, xs = _ensemble_setup()
    y = jnp.asarray(ys[6])
    rank = jnp.asarray(np.argsort(np.argsort(ys[6])).astype(np.float32))
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(2))
    for s in range(2):  # one key per call: the same batch shape, so the same float operations
        _, pred, codes, _ = C.ensemble_run(prior, X, pb, xs, y, rank, keys[s:s + 1], k=10, pool=400)
        poisoned = np.random.default_rng(s).random(X.shape[0]).astype(np.float32) * 1e6
        c = np.asarray(codes[0])
        poisoned[c] = ys[6][c]
        _, p2, c2, _ = C.ensemble_run(prior, X, pb, xs, jnp.asarray(poisoned), rank, keys[s:s + 1], k=10, pool=400)
        np.testing.assert_array_equal(np.asarray(c2[0]), c)
        np.testing.assert_array_equal(np.asarray(p2[0]), np.asarray(pred[0]))
    # and it is the mean of the two parts' standardised predictions on those cells
    ma, mb = C.BayesLinearCost(prior), C.BayesLinearCost(pb)
    c = codes[0]
    pa = ma.score(ma.fit(None, X[c], y[c], 10), X)
    pbb = mb.score(mb.fit(None, xs[c], y[c], 10), xs)
    np.testing.assert_allclose(np.asarray(pred[0]), np.asarray(0.5 * (C.standardise(pa) + C.standardise(pbb))),
                               rtol=1e-4, atol=1e-4)


def test_ensemble_is_at_least_as_good_as_the_worse_of_its_parts_on_synthetic_devices():
    """SYNTHETIC devices (tests/conftest.py): the ensemble's mean Spearman at k = 10 is >= the worse of additive's
    and with_sources' (each part on its own family's cells, as in the study)."""
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(4))
    for seed in (0, 1):
        ys, prior, pb, xs = _ensemble_setup(seed)
        y = jnp.asarray(ys[6])
        rank = jnp.asarray(np.argsort(np.argsort(ys[6])).astype(np.float32))
        ens = float(C.ensemble_run(prior, X, pb, xs, y, rank, keys, k=10, pool=400)[0].mean())
        add = float(C.few_shot_run(prior, X, y, rank, keys, k=10, pool=400)[0].mean())
        ws = float(C.few_shot_run(pb, xs, y, rank, keys, k=10, pool=400)[0].mean())
        assert ens >= min(add, ws) - 1e-6 and ens > 0.9, (seed, ens, add, ws)


def test_few_shot_runs_make_no_batched_lapack_call():
    """The seeds are mapped, not batched: batched, the posterior's Cholesky / SVD run through jaxlib's
    ParallelBatchMap on the XLA CPU pool that calls them (the seed-300 hw_latency run deadlocked on 2 cores)."""
    import re

    ys, prior, pb, xs = _ensemble_setup()
    y = jnp.asarray(ys[6])
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
    for fn, args in ((C._few_shot_fn(5, 100, "design"), (prior, X, y, y, keys)),
                     (C._few_shot_fn(5, 100, "random"), (prior, X, y, y, keys)),
                     (C._ensemble_fn(5, 100), (prior, X, pb, xs, y, y, keys))):
        hlo = fn.lower(*args).as_text()
        calls = [line for line in hlo.splitlines() if "custom_call @lapack_" in line]
        assert calls and all(re.search(r'num_batch_dims = "0"', line) for line in calls)
