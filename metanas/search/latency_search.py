"""Latency-constrained and accuracy-latency Pareto search on a finite space (NB201) with a few-shot cost model.

Two budgets are counted apart: **accuracy queries** (a table lookup of the validation accuracy) and **cost
measurements** (a lookup of the device's true latency; NaN = the device never measured that cell: a failed
measurement, spent and never feasible).

``constrained_search`` (ours): measure ``design_k`` cells chosen by Bayesian D-optimal design under the meta-learnt
cost prior (``metanas.predictors.cost``), adapt the cost model, keep the cells whose posterior probability of
meeting the budget is at least ``p_feasible`` (relaxed to the 2 x budget most probable cells if fewer), and run the
predictor-guided accuracy search (``PredictorSearch``) inside them. ``verify`` (host) then turns the queried cells
into an answer that meets the budget **on the true table**: it measures the best-by-validation queried cells in order
with the measurements left until one meets the budget; if none does, the answer is a measured design cell that meets
it (``fallback``), else there is no answer (``infeasible``: never happens silently, it is counted).

``pareto_search`` (ours, Pareto mode): every query returns the validation accuracy and measures the latency; each
round fits the accuracy predictor and the cost model (prior + every measured latency) and queries, for ``topk``
weights spread over [0, 1], the unqueried cell best by the weighted sum of the two predicted ranks.
``mo_regularized_evolution`` is the Pareto baseline: aging evolution whose tournaments compare the members by a
weighted sum of the two normalised objectives with a weight drawn per tournament (ParEGO-style scalarisation).
``hypervolume`` (host) is the 2-D dominated area of (accuracy, latency) points with accuracy and log latency
normalised to [0, 1] over the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from metanas.predictors import cost as C
from metanas.search.table_search import (PredictorSearch, Trace, _excluded, _first_random, arch_codes, code_to_arch,
                                         unqueried_child)
from metanas.search_spaces.nb201 import NB201Space


class ConstrainedTrace(NamedTuple):
    trace: Trace  # the accuracy queries
    design: jax.Array  # int32 [design_k] measured design cells (-1: none found)
    failed: jax.Array  # int32 () failed design measurements
    p_feasible: jax.Array  # float32 [N] posterior probability of meeting the budget
    allowed: jax.Array  # bool [N] the cells the accuracy search was allowed to query


@dataclass(frozen=True)
class ConstrainedSearch:
    search: PredictorSearch  # the accuracy search (budget = accuracy queries)
    measurements: int = 10  # latency measurements in all (design + verification)
    design_k: int = 6
    p_feasible: float = 0.9
    pool: int = 2000

    def __post_init__(self):
        if not 1 <= self.design_k <= self.measurements:
            raise ValueError(f"design_k={self.design_k} must be in 1..measurements={self.measurements}")

    def run(self, key, val_table, latency, budget_ms, *, prior: C.CostPrior, x_cost, features, predictor,
            space: NB201Space, excluded=None) -> ConstrainedTrace:
        k_design, k_search = jax.random.split(key)
        excluded = _excluded(excluded, val_table.shape[0])
        measured_ok = jnp.isfinite(latency)
        design, failed = C.design(k_design, prior, x_cost, measured_ok, self.design_k, pool=self.pool)
        model = C.BayesLinearCost(prior)
        params = model.fit(k_design, x_cost[design], latency[design], jnp.sum(design >= 0))
        mu, sd = model.score_std(params, x_cost)
        p = norm.cdf((budget_ms - mu) / sd)
        # measured design cells: known
        known = jnp.zeros_like(p, bool).at[jnp.where(design >= 0, design, p.shape[0])].set(True, mode="drop")
        lat_known = jnp.where(known, jnp.nan_to_num(latency, nan=jnp.inf), jnp.inf)
        p = jnp.where(known, (lat_known <= budget_ms).astype(p.dtype), p)
        cand = jnp.where(excluded, -1.0, p)
        nth = jnp.sort(cand)[-min(2 * self.search.budget, cand.shape[0])]
        allowed = (cand >= jnp.minimum(self.p_feasible, nth)) & ~excluded
        tr = self.search.run(k_search, val_table, features, predictor=predictor, space=space, excluded=~allowed)
        return ConstrainedTrace(tr, design, failed, p, allowed)


def verify(codes: np.ndarray, values: np.ndarray, design: np.ndarray, latency: np.ndarray, budget_ms: float,
           measurements_left: int) -> tuple[int, int, str]:
    """(answer code or -1, measurements used, how) for one seed: the best-by-validation queried cell that meets the
    budget on the true table, measuring cells not yet measured in that order while measurements are left."""
    known = {int(c) for c in design if c >= 0}
    ok = lambda c: bool(np.isfinite(latency[c]) and latency[c] <= budget_ms)  # noqa: E731
    used = 0
    for i in np.argsort(-np.asarray(values), kind="stable"):
        c = int(codes[i])
        if c in known:
            if ok(c):
                return c, used, "verified"
            continue
        if used >= measurements_left:
            break
        used += 1
        known.add(c)
        if ok(c):
            return c, used, "verified"
    feas = [int(c) for c in design if c >= 0 and ok(int(c))]
    if feas:
        return feas[0], used, "fallback"
    return -1, used, "infeasible"


def verify_adaptive(codes: np.ndarray, values: np.ndarray, design: np.ndarray, latency: np.ndarray, budget_ms: float,
                    measurements_left: int, *, prior: C.CostPrior, x_cost, min_p: float = 0.2) -> tuple[int, int, str]:
    """As ``verify``, but each measurement updates the cost model: before every measurement the posterior (prior +
    every latency measured so far, failed ones left out) gives each unmeasured queried cell its probability of
    meeting the budget, and the best-by-validation cell still better than the best verified one with probability at
    least ``min_p`` is measured next (hopeless ones are skipped, not paid for). The answer is the best-by-validation
    queried cell measured feasible, else a measured design cell that meets the budget (``fallback``)."""
    ok = lambda c: bool(np.isfinite(latency[c]) and latency[c] <= budget_ms)  # noqa: E731
    known = {int(c) for c in design if c >= 0}
    codes, values = np.asarray(codes), np.asarray(values)
    model = C.BayesLinearCost(prior)
    x_cost = jnp.asarray(x_cost)
    used, best = 0, None
    order = np.argsort(-values, kind="stable")
    for i in order:  # design cells that were also queried: known already
        if int(codes[i]) in known and ok(int(codes[i])):
            best = i
            break
    while used < measurements_left:
        meas = [c for c in known if np.isfinite(latency[c])]
        if meas:
            params = model.fit(None, x_cost[np.asarray(meas)], jnp.asarray(latency[np.asarray(meas)]), len(meas))
            mu, sd = (np.asarray(v) for v in model.score_std(params, x_cost[codes]))
            p = norm.cdf((budget_ms - mu) / sd)
        else:
            p = np.ones(len(codes))
        cand = [i for i in order if int(codes[i]) not in known and p[i] >= min_p
                and (best is None or values[i] > values[best])]
        if not cand:
            break
        i = cand[0]
        used += 1
        known.add(int(codes[i]))
        if ok(int(codes[i])):
            best = i
    if best is not None:
        return int(codes[best]), used, "verified"
    feas = [int(c) for c in design if c >= 0 and ok(int(c))]
    if feas:
        return feas[0], used, "fallback"
    return -1, used, "infeasible"


def feasible_curve(codes: np.ndarray, values: np.ndarray, feasible: np.ndarray, report: np.ndarray,
                   floor: float) -> np.ndarray:
    """[..., B] report metric of the best-by-validation queried cell among those that meet the budget on the true
    table after each query (``floor`` before the first one); the curve assumes the answer is verified."""
    v = np.where(feasible[codes], values, -np.inf)
    best = np.maximum.accumulate(v, axis=-1)
    arg = np.zeros(v.shape, np.int64)
    cur = np.zeros(v.shape[:-1], np.int64)
    for t in range(v.shape[-1]):
        better = v[..., t] > np.take_along_axis(v, cur[..., None], -1)[..., 0]
        cur = np.where(better, t, cur)
        arg[..., t] = cur
    out = report[np.take_along_axis(codes, arg, -1)]
    return np.where(np.isfinite(best), out, floor)


class MeasuredTrace(NamedTuple):
    trace: Trace  # the accuracy queries (every one a cell measured feasible)
    measurements: jax.Array  # int32 () latency measurements spent (feasible and infeasible, initial ones included)


def constrained_regularized_evolution(key, val_table, latency, budget_ms, *, space: NB201Space, budget: int,
                                      population: int = 20, sample_size: int = 5, max_tries: int = 64,
                                      excluded=None) -> MeasuredTrace:
    """Regularized evolution under a latency budget that pays for every measurement: a candidate (initial or child)
    is measured before its accuracy is queried; one that misses the budget (or that the device never measured) is
    rejected without an accuracy query, and its measurement is counted. A cell measured once is known (no second
    measurement); a child already queried, ``excluded`` or known infeasible is mutated again for free. After
    ``max_tries`` proposals the candidate is a random cell not yet known. The initial population is the first
    ``population`` feasible cells of a random order; every cell before them in that order was measured."""
    n = val_table.shape[0]
    excluded = _excluded(excluded, n)
    ok = jnp.isfinite(latency) & (latency <= budget_ms)
    k_init, key = jax.random.split(key)
    g = jnp.where(excluded, -jnp.inf, jax.random.gumbel(k_init, (n,)))
    top, codes0 = jax.lax.top_k(jnp.where(ok, g, -jnp.inf), population)
    measured = jnp.isfinite(g) & (g >= top[-1])  # every non-excluded cell drawn up to the population-th feasible one
    codes = jnp.zeros(budget, jnp.int32).at[:population].set(codes0.astype(jnp.int32))
    queried = excluded.at[codes0].set(True)

    def step(carry, xs):
        codes, queried, measured = carry
        t, k = xs
        k_s, k_m = jax.random.split(k)
        pos = t - population + jax.random.randint(k_s, (sample_size,), 0, population)
        parent = code_to_arch(space, codes[pos[jnp.argmax(val_table[codes[pos]])]])

        def cond(c):
            return ~c[3]

        def body(c):
            i, kk, measured, _, _ = c
            kk, k1, k2 = jax.random.split(kk, 3)
            known_bad = queried | (measured & ~ok)
            child = arch_codes(space, space.mutate(k1, parent))
            rnd = jnp.argmax(jnp.where(known_bad, -jnp.inf, jax.random.gumbel(k2, (n,))))
            c = jnp.where(i < max_tries, child, rnd).astype(jnp.int32)
            fresh = ~known_bad[c]
            return i + 1, kk, measured.at[c].set(measured[c] | fresh), fresh & ok[c], c

        _, _, measured, _, c = jax.lax.while_loop(cond, body, (0, k_m, measured, False, jnp.int32(0)))
        return (codes.at[t].set(c), queried.at[c].set(True), measured), None

    ts = jnp.arange(population, budget)
    (codes, _, measured), _ = jax.lax.scan(step, (codes, queried, measured), (ts, jax.random.split(key, len(ts))))
    return MeasuredTrace(Trace(codes, val_table[codes]), measured.sum().astype(jnp.int32))


# ---- Pareto mode ------------------------------------------------------------------------------------------------

def _norm_rank(s):
    r = jnp.argsort(jnp.argsort(s)).astype(jnp.float32)
    return r / jnp.maximum(r.max(), 1.0)


@dataclass(frozen=True)
class ParetoSearch:
    budget: int = 100
    init: int = 10
    topk: int = 10

    def __post_init__(self):
        if self.budget < self.init or (self.budget - self.init) % self.topk:
            raise ValueError(f"ParetoSearch needs budget - init to be a multiple of topk, got budget={self.budget}, "
                             f"init={self.init}, topk={self.topk}")

    def run(self, key, val_table, latency, *, prior: C.CostPrior, x_cost, features, predictor,
            excluded=None) -> Trace:
        """Trace of accuracy queries; each queried cell's latency is measured (the same codes)."""
        n = val_table.shape[0]
        excluded = _excluded(excluded, n)
        k_init, key = jax.random.split(key)
        codes0 = _first_random(k_init, excluded, self.init)
        codes = jnp.zeros(self.budget, jnp.int32).at[: self.init].set(codes0)
        queried = excluded.at[codes0].set(True)
        weights = (jnp.arange(self.topk) + 0.5) / self.topk
        cost = C.BayesLinearCost(prior)

        def round_(carry, xs):
            codes, queried = carry
            r, k = xs
            m = self.init + r * self.topk
            params = predictor.fit(k, features[codes], val_table[codes], m)
            acc = predictor.score(params, features)
            lat = latency[codes]
            ok = (jnp.arange(self.budget) < m) & jnp.isfinite(lat)
            # rows that are not used go last, so the first sum(ok) rows are the fit set
            order = jnp.argsort(~ok, stable=True)
            cp = cost.fit(k, x_cost[codes[order]], jnp.where(ok, lat, 1.0)[order], ok.sum())
            pl = cost.score(cp, x_cost)
            a, l_ = _norm_rank(acc), _norm_rank(pl)

            def pick(q, w):
                s = jnp.where(q, -jnp.inf, w * a - (1 - w) * l_)
                c = jnp.argmax(s).astype(jnp.int32)
                return q.at[c].set(True), c

            queried, new = jax.lax.scan(pick, queried, weights)
            return (jax.lax.dynamic_update_slice(codes, new, (m,)), queried), None

        rounds = (self.budget - self.init) // self.topk
        (codes, _), _ = jax.lax.scan(round_, (codes, queried), (jnp.arange(rounds), jax.random.split(key, rounds)))
        return Trace(codes, val_table[codes])


def mo_regularized_evolution(key, val_table, latency, *, space: NB201Space, budget: int, population: int = 20,
                             sample_size: int = 5, max_tries: int = 32, excluded=None) -> Trace:
    """Aging evolution on two objectives: tournaments by ``w * acc_rank - (1 - w) * latency_rank`` among the
    measured members, ``w`` ~ U(0, 1) per tournament; a child already queried is mutated again (no wasted query).
    A member whose latency the device did not measure counts as the slowest."""
    n = val_table.shape[0]
    excluded = _excluded(excluded, n)
    k_init, key = jax.random.split(key)
    lat = jnp.where(jnp.isfinite(latency), latency, jnp.nanmax(latency) * 10)
    a_n, l_n = _norm_rank(val_table), _norm_rank(lat)
    codes0 = _first_random(k_init, excluded, population)
    codes = jnp.zeros(budget, jnp.int32).at[:population].set(codes0)
    queried = excluded.at[codes0].set(True)

    def step(carry, xs):
        codes, queried = carry
        t, k = xs
        k_s, k_m, k_r, k_w = jax.random.split(k, 4)
        pos = t - population + jax.random.randint(k_s, (sample_size,), 0, population)
        w = jax.random.uniform(k_w)
        fit = w * a_n[codes[pos]] - (1 - w) * l_n[codes[pos]]
        parent = code_to_arch(space, codes[pos[jnp.argmax(fit)]])

        c = unqueried_child(space, k_m, k_r, parent, queried, max_tries).astype(jnp.int32)
        return (codes.at[t].set(c), queried.at[c].set(True)), None

    ts = jnp.arange(population, budget)
    (codes, _), _ = jax.lax.scan(step, (codes, queried), (ts, jax.random.split(key, len(ts))))
    return Trace(codes, val_table[codes])


def hypervolume(acc: np.ndarray, lat: np.ndarray, acc_range: tuple[float, float],
                loglat_range: tuple[float, float]) -> float:
    """Area dominated by the points (accuracy up, latency down) in the unit square: accuracy and log latency scaled
    to [0, 1] by the given ranges, reference point (accuracy 0, latency 1). Points without a latency are left out."""
    ok = np.isfinite(lat) & np.isfinite(acc)
    a = (np.asarray(acc)[ok] - acc_range[0]) / (acc_range[1] - acc_range[0])
    lt = (np.log(np.asarray(lat)[ok]) - loglat_range[0]) / (loglat_range[1] - loglat_range[0])
    order = np.argsort(lt, kind="stable")
    hv, best = 0.0, 0.0
    for i in order:  # sweep from fast to slow: each point adds (1 - latency) x its accuracy gain
        if a[i] > best:
            hv += (1.0 - lt[i]) * (a[i] - best)
            best = a[i]
    return float(hv)


def pareto_front(acc: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """[F, 2] (latency, accuracy) of the non-dominated points, by latency."""
    ok = np.isfinite(lat) & np.isfinite(acc)
    a, lt = np.asarray(acc)[ok], np.asarray(lat)[ok]
    order = np.argsort(lt, kind="stable")
    front, best = [], -np.inf
    for i in order:
        if a[i] > best:
            front.append((lt[i], a[i]))
            best = a[i]
    return np.asarray(front)
