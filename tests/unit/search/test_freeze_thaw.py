"""Freeze-thaw search over a curve table (metanas.search.freeze_thaw); SYNTHETIC curves."""

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.curves import CurveModel
from metanas.search.freeze_thaw import FreezeThaw, incumbent_at, random_search


def _table(n=24, L=8, seed=0):
    rng = np.random.default_rng(seed)
    drop = rng.uniform(0, 0.4, n) * (rng.uniform(size=n) < 0.4)
    y = 0.7 - drop[:, None] * (1 - np.exp(-np.arange(L)[None, :] / 3)) + 0.005 * rng.normal(size=(n, L))
    y[3, 5:] = np.nan  # a diverged run (unkept)
    keep = ~np.isnan(y).any(1)
    return jnp.asarray(y, jnp.float32), jnp.ones((n, L), jnp.float32), jnp.asarray(keep)


def test_search_spends_the_budget_and_never_reads_unobserved_entries():
    y, cost, keep = _table()
    m = CurveModel(hidden=8, ensemble=2)
    ft = FreezeThaw(budget=30, decisions=32, step=2, decisions_per_fit=8, finetune_steps=5, init_random=1)
    run = jax.jit(jax.vmap(lambda k, y: ft.run(k, m, None, jnp.ones((24, 2)) * jnp.arange(24)[:, None] / 24,
                                                y, cost, keep)))
    keys = jax.random.split(jax.random.key(0), 2)
    tr = run(keys, jnp.stack([y, y]))
    spent = np.asarray(tr.spent)
    assert spent.max() <= 30 + 2 and spent[:, -1].min() >= 30  # stops once the budget is spent
    picks = np.asarray(tr.pick)
    assert not np.isin(picks, [3]).any()  # the unkept (NaN) config is never run
    prog = np.zeros((2, 24), int)  # what each seed observed: its picks advanced 2 checkpoints each
    for s in range(2):
        for i in picks[s][picks[s] >= 0]:
            prog[s, i] = min(prog[s, i] + 2, 8)
    seen = np.arange(8)[None, None, :] < prog[:, :, None]
    poisoned = jnp.where(jnp.asarray(seen), y[None], 123.0)  # every entry a seed never observed: same decisions
    np.testing.assert_array_equal(np.asarray(run(keys, poisoned).pick), picks)
    inc = np.asarray(tr.inc)
    assert (np.diff(inc, axis=1) <= 0).all()  # the incumbent never gets worse


def test_random_search_runs_full_curves():
    y, cost, keep = _table()
    tr = jax.jit(lambda k: random_search(k, y, cost, keep, 20.0))(jax.random.key(1))
    spent = np.asarray(tr.spent)
    started = np.asarray(tr.pick)[np.asarray(tr.pick) >= 0]
    assert spent.max() == 20.0 and len(started) == 3  # 2 full curves of 8 checkpoints, the third stopped at 20
    inc = incumbent_at(spent, np.asarray(tr.inc), [4.0, 24.0])
    assert inc[1] == np.nanmin(np.asarray(y)[started])


def test_prior_start_runs_the_prior_best_configs_to_the_end_first():
    """``init_prior``: the prior's best kept configs are run to the last checkpoint, in its order, before the
    model's acquisition takes over; an unkept config the prior likes best is skipped."""
    y, cost, keep = _table()
    m = CurveModel(hidden=8, ensemble=2)
    prior = -jnp.arange(24, dtype=jnp.float32).at[3].set(100.0)  # config 3 (unkept) first, then 0, 1, 2, ...
    ft = FreezeThaw(budget=40, decisions=24, step=2, decisions_per_fit=8, finetune_steps=5, init_random=0,
                    init_prior=2)
    tr = jax.jit(lambda k: ft.run(k, m, None, jnp.ones((24, 2)), y, cost, keep, prior=prior))(jax.random.key(2))
    picks = np.asarray(tr.pick)
    assert picks[:8].tolist() == [0] * 4 + [1] * 4  # 8 checkpoints = 4 advances of 2 each, then the next one
    assert 3 not in picks.tolist()
    try:
        ft.run(jax.random.key(0), m, None, jnp.ones((24, 2)), y, cost, keep)
    except ValueError as e:
        assert "needs run(..., prior=" in str(e)
    else:
        raise AssertionError("init_prior without a prior must be refused")
