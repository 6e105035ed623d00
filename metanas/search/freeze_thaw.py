"""Freeze-thaw search over a curve table: at each step start or continue one run by a few checkpoints.

One search is a pure function of its key (vmapped over seeds by the runner): state = how many checkpoints of each
config were observed (``prog`` [N]), the budget spent and the incumbent. Every ``decisions_per_fit`` decisions the
curve model is trained ``finetune_steps`` more steps on the target's observed prefixes (continuing its parameters); each decision then picks

    argmax_i  EI_i(final) / cost_i(next ``step`` checkpoints)        over kept, unfinished configs,

EI at the LAST checkpoint under the model's ensemble mean / std (the DyHPO / DPL idea, here with the cost of the
next increment: epochs, or seconds where the table's cost is seconds; ``per_cost="final"`` divides by the cost of
finishing the run instead, for ``incumbent="final"`` where only finished runs count). The first ``init_random`` decisions start
random configs (models fitted from scratch have nothing to rank with; a pre-trained model ranks from the start).

``init_prior`` > 0 with a ``prior`` score [N] (e.g. the source tasks' plain z-score order of their final values): the
search starts exactly as that prior -- its ``init_prior`` best configs are run to the last checkpoint first, in
its order -- and only then hands over to the model's acquisition (the trust search's rule, ``metanas.search.trust``:
a search that knows a good prior should not do worse than it before the evidence says otherwise).

The search reads the target's table only through ``observed(y, prog)``: entries past a config's progress are NaN
before any model sees them. Incumbent: ``incumbent="any"`` = the best value observed at any checkpoint (DPL's
protocol on TaskSet); ``"final"`` = the best value among configs run to the last checkpoint (NB201: only 200-epoch
validation values are comparable), with the config index kept to report its test value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metanas.predictors.curves import Rows, data_scale


class Trace(NamedTuple):
    spent: jax.Array  # float32 [D] budget spent after each decision
    inc: jax.Array  # float32 [D] incumbent value after each decision (inf before one exists)
    inc_cfg: jax.Array  # int32 [D] incumbent config (-1 before one exists)
    pick: jax.Array  # int32 [D] config advanced at each decision (-1: budget exhausted, nothing done)


def observed(y: jax.Array, prog: jax.Array) -> jax.Array:
    """``y`` [N, L] with every entry at or past ``prog`` [N] replaced by NaN (what a searcher may see)."""
    return jnp.where(jnp.arange(y.shape[-1])[None, :] < prog[:, None], y, jnp.nan)


def expected_improvement(inc, mu, sd):
    """EI of a value below ``inc`` (lower is better) under N(mu, sd^2)."""
    sd = jnp.maximum(sd, 1e-9)
    z = (inc - mu) / sd
    return (inc - mu) * jax.scipy.stats.norm.cdf(z) + sd * jax.scipy.stats.norm.pdf(z)


def _advance(y, cost, prog, i, step):
    """(new progress of i, cost of the advance, best value newly observed) for advancing config i by ``step``."""
    L = y.shape[-1]
    idx = jnp.arange(L)
    new = jnp.minimum(prog[i] + step, L)
    seg = (idx >= prog[i]) & (idx < new)
    c = jnp.sum(jnp.where(seg, cost[i], 0.0))
    best = jnp.min(jnp.where(seg & jnp.isfinite(y[i]), y[i], jnp.inf))
    return new, c, best


@dataclass(frozen=True)
class FreezeThaw:
    budget: float = 1000.0  # in the table's cost unit
    decisions: int = 1000  # static number of decisions (enough to spend the budget)
    step: int = 1  # checkpoints per advance
    decisions_per_fit: int = 10
    finetune_steps: int = 50
    init_random: int = 1
    init_prior: int = 0  # the prior's best configs run to the last checkpoint first (``run(..., prior=score)``)
    incumbent: str = "any"  # any | final
    per_cost: str = "next"  # EI divided by the cost of the next step ("next") or of finishing the run ("final")

    def run(self, key: jax.Array, model: Any, params0: dict | None, x: jax.Array, y: jax.Array, cost: jax.Array,
            keep: jax.Array, source: Rows | None = None, prior: jax.Array | None = None) -> Trace:
        """One search. ``params0``: pre-trained parameters (None: a fresh model, scaled on the first observations).
        ``prior`` [N] (higher = better): the order whose ``init_prior`` best kept configs are run first."""
        n, L = y.shape
        if self.init_prior > 0 and prior is None:
            raise ValueError(f"FreezeThaw(init_prior={self.init_prior}) needs run(..., prior=[N] scores)")
        if self.init_prior > 0:
            first = jax.lax.top_k(jnp.where(keep, prior, -jnp.inf), self.init_prior)[1]
        else:
            first = jnp.zeros(1, jnp.int32)
        k_perm, k_init, k_loop = jax.random.split(key, 3)
        order = jax.random.permutation(k_perm, n)  # random starts: kept configs in this order
        order = order[jnp.argsort(~keep[order], stable=True)]
        scratch = params0 is None
        if scratch:
            params0 = model.init(k_init, x.shape[1], 0.0, 1.0)
        cfg = jnp.arange(n, dtype=jnp.int32)
        final_only = self.incumbent == "final"

        def decide(carry, j):
            params, prog, spent, inc, inc_cfg, n_rand, mu, sd = carry
            open_ = keep & (prog < L)
            inc_ei = jnp.where(jnp.isfinite(inc), inc, jnp.min(jnp.where(open_, mu, jnp.inf)))
            ei = expected_improvement(inc_ei, mu, sd)
            ahead = prog[:, None] + jnp.arange(self.step)[None, :]
            c_next = jnp.sum(jnp.where(ahead < L, jnp.take_along_axis(cost, jnp.clip(ahead, 0, L - 1), 1), 0.0), 1)
            if self.per_cost == "final":  # improvement only counts once the run is finished: cost of finishing it
                c_next = jnp.sum(jnp.where(jnp.arange(L)[None, :] >= prog[:, None], cost, 0.0), 1)
            acq = jnp.where(open_, ei / jnp.maximum(c_next, 1e-12), -jnp.inf)
            rand = n_rand < self.init_random
            fresh = jnp.where(keep[order] & (prog[order] == 0), jnp.arange(n), n)
            r_pick = order[jnp.minimum(jnp.min(fresh), n - 1)]
            i = jnp.where(rand, r_pick, jnp.argmax(acq)).astype(jnp.int32)
            if self.init_prior > 0:  # the prior's first configs, each to its last checkpoint, before anything else
                todo = prog[first] < L
                i = jnp.where(todo.any(), first[jnp.argmax(todo)], i).astype(jnp.int32)
            active = (spent < self.budget) & open_.any()
            new, c, best = _advance(y, cost, prog, i, self.step)
            prog2 = jnp.where(active, prog.at[i].set(new), prog)
            val = jnp.where(new == L, y[i, L - 1], jnp.inf) if final_only else best
            better = active & (val < inc)
            inc2 = jnp.where(better, val, inc)
            cfg2 = jnp.where(better, i, inc_cfg)
            spent2 = spent + jnp.where(active, c, 0.0)
            # only config i's evidence changed: re-predict that one row (same parameters within a round)
            yi = observed(y[i][None], prog2[i][None])
            mi, si = model.final(params, x[i][None], yi, prog2[i][None])
            mu2, sd2 = mu.at[i].set(mi[0]), sd.at[i].set(si[0])
            out = (spent2, inc2, cfg2, jnp.where(active, i, -1))
            return (params, prog2, spent2, inc2, cfg2, n_rand + rand.astype(jnp.int32), mu2, sd2), out

        def fit_round(carry, r):
            params, prog, spent, inc, inc_cfg, n_rand, k = carry
            k, kf = jax.random.split(k)
            rows = Rows(observed(y, prog), prog, cfg)
            if scratch:  # a fresh model is scaled on what is observed so far
                mu, sd = data_scale(rows.y, prog)
                params = {**params, "mu": jnp.full_like(params["mu"], mu), "sd": jnp.full_like(params["sd"], sd)}
            has = (prog > 0).any()  # nothing observed yet: keep the (pre-trained or fresh) parameters
            p_new = model.train(kf, params, x, rows, self.finetune_steps, source)
            params = jax.tree_util.tree_map(lambda a, b: jnp.where(has, a, b), p_new, params)
            mu, sd = model.final(params, x, observed(y, prog), prog)
            (params, prog, spent, inc, inc_cfg, n_rand, _, _), out = jax.lax.scan(
                decide, (params, prog, spent, inc, inc_cfg, n_rand, mu, sd), jnp.arange(self.decisions_per_fit))
            return (params, prog, spent, inc, inc_cfg, n_rand, k), out

        rounds = -(-self.decisions // self.decisions_per_fit)
        carry = (params0, jnp.zeros(n, jnp.int32), jnp.float32(0.0), jnp.float32(jnp.inf), jnp.int32(-1),
                 jnp.int32(0), k_loop)
        _, out = jax.lax.scan(fit_round, carry, jnp.arange(rounds))
        return Trace(*(o.reshape(-1) for o in out))


def random_search(key: jax.Array, y: jax.Array, cost: jax.Array, keep: jax.Array, budget: float,
                  incumbent: str = "any") -> Trace:
    """Random kept configs, each run to the last checkpoint, until ``budget`` is spent. One trace row per checkpoint
    (a full-budget run's intermediate values are observed as it trains), [N * L] rows."""
    n, L = y.shape
    order = jax.random.permutation(key, n)
    order = order[jnp.argsort(~keep[order], stable=True)]
    rows_i = jnp.repeat(order, L)
    rows_l = jnp.tile(jnp.arange(L), n)

    def body(carry, il):
        spent, inc, inc_cfg = carry
        i, l = il
        active = (spent < budget) & keep[i]
        v = y[i, l]
        v = jnp.where(l == L - 1, v, jnp.inf) if incumbent == "final" else jnp.where(jnp.isfinite(v), v, jnp.inf)
        better = active & (v < inc)
        inc = jnp.where(better, v, inc)
        inc_cfg = jnp.where(better, i, inc_cfg)
        spent = spent + jnp.where(active, cost[i, l], 0.0)
        return (spent, inc, inc_cfg), (spent, inc, inc_cfg, jnp.where(active & (l == 0), i, -1))

    _, out = jax.lax.scan(body, (jnp.float32(0.0), jnp.float32(jnp.inf), jnp.int32(-1)), (rows_i, rows_l))
    return Trace(*out)


def incumbent_at(trace_spent: Any, trace_inc: Any, budgets: Any) -> Any:
    """Host numpy: incumbent after the last decision whose spent <= each budget ([..., D] -> [..., len(budgets)]);
    inf where nothing was finished within the budget."""
    import numpy as np

    s = np.asarray(trace_spent, np.float64)
    v = np.asarray(trace_inc, np.float64)
    out = np.full(s.shape[:-1] + (len(budgets),), np.inf)
    for j, b in enumerate(budgets):
        ok = s <= b + 1e-9
        v_ok = np.where(ok, v, np.inf)
        out[..., j] = v_ok.min(-1)
    return out
