"""Transfer search: search a NEW task with a pairwise meta-learner pre-trained on other tasks' records.

One search (pure function of its key, vmapped over seeds by the callers):

1. pre-train the pairwise meta-learner M(a, b) = expm1(u(a) - u(b)) on the SOURCE tasks' records (pairs only
   within one task: ``group`` = task). ``run`` receives the source tasks' table and the target's table as separate
   arrays, and ``leave_one_out`` builds them with the target removed from the sources, so a target's records can
   never enter its own pre-training;
2. zero-shot: rank every cell of the target by the pre-trained u (no target query at all);
3. query the ``init`` best cells of that ranking (transfer) -- or ``init`` random cells (from scratch, ``source=
   False``) -- then repeat {fine-tune on the target's queried cells, starting from the pre-trained parameters
   (``finetune``, ``finetune_steps`` steps; ``mix`` > 0 keeps a share of source pairs in every batch, weighted by
   ``source_similarity`` when ``similarity_temp`` > 0); rank all cells; query the ``topk`` best unqueried} until
   ``budget`` queries. From scratch fits from a random init for ``predictor.steps`` steps instead.
   (``Pairwise.fit(init=...)`` is the plain warm-started fit, i.e. ``mix`` = 0 without the source pairs.)

Targets: each task's values are turned into the pairwise target by ``rank_target`` (exp(scale * normal score of the
rank among the KNOWN values: all cells of a source task, only the queried cells of the target); see
``metanas.benchmarks.transnas`` for why).

The search returns ``TransferTrace(codes [B], values [B], scores [rounds + 1, N])``: the query order, the queried
(raw) values, and the ranking scores of the model before each round (row 0 = the pre-trained zero-shot model; row r
= the model fitted on ``init + (r - 1) * topk`` target queries), from which Kendall tau after 0 / 10 / 20 target
evaluations is read (``scores_after``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import ndtri
from scipy.stats import kendalltau

from metanas.benchmarks.transnas import top_cells
from metanas.predictors.fit import fit_steps
from metanas.predictors.pairwise import Pairwise


class TransferTrace(NamedTuple):
    codes: jax.Array  # int32 [B] queried cells in query order
    values: jax.Array  # float32 [B] their raw metric (higher is better)
    scores: jax.Array  # float32 [rounds + 1, N] model scores before each round (row 0: zero-shot / none)


def rank_target(values: jax.Array, known: jax.Array, scale: float = 0.1) -> jax.Array:
    """exp(scale * Phi^-1((rank - 0.5) / m)) with the (tie-averaged) rank among the m ``known`` entries; 1 elsewhere.

    Jittable twin of ``metanas.benchmarks.transnas.pairwise_target`` for one task [N]."""
    known = known.astype(bool)
    srt = jnp.sort(jnp.where(known, values, jnp.inf))  # O(N log N): also for 15,625 NB201 cells
    less = jnp.searchsorted(srt, values, side="left").astype(jnp.float32)  # known entries < v
    equal = jnp.searchsorted(srt, values, side="right").astype(jnp.float32) - less  # known entries == v (self incl.)
    rank = less + (equal + 1.0) / 2.0  # 1-based average rank among the known entries
    m = jnp.maximum(known.sum().astype(jnp.float32), 1.0)
    z = ndtri(jnp.clip((rank - 0.5) / m, 1e-6, 1 - 1e-6))
    return jnp.where(known, jnp.exp(scale * z), 1.0)


def leave_one_out(values, target: int, sources=None):
    """(source table [S, N], target row [N]) with the target never among the sources.

    ``sources``: task indices to pre-train on (default: every task but ``target``); naming the target raises."""
    values = np.asarray(values)
    sources = [t for t in range(values.shape[0]) if t != target] if sources is None else list(sources)
    if target in sources:
        raise ValueError(f"leave-one-task-out: target task {target} cannot be among its own source tasks {sources}")
    if not sources:
        raise ValueError("transfer needs at least one source task")
    return values[np.asarray(sources)], values[target]


def zscore_order(source_values) -> np.ndarray:
    """Baseline zero-shot score [N]: mean over source tasks of the z-scored validation metric (over the sources that
    hold each cell; 0 where none does)."""
    v = np.asarray(source_values, np.float64)
    z = (v - np.nanmean(v, 1, keepdims=True)) / np.nanstd(v, 1, keepdims=True)
    known = np.isfinite(z)
    return np.where(known, z, 0.0).sum(0) / np.maximum(known.sum(0), 1)


def pretrain(key: jax.Array, predictor: Pairwise, x: jax.Array, source_values: jax.Array, *, steps: int,
             scale: float = 0.1) -> dict:
    """Fit ``predictor`` on every cell of every source task ([S, N] raw values; NaN where a source lacks a cell:
    such rows get a group of their own, so they never form a pair); pairs within a task only."""
    s, n = source_values.shape
    known = jnp.isfinite(source_values)
    y = jax.vmap(lambda v, k: rank_target(jnp.where(k, v, 0.0), k, scale))(source_values, known).reshape(-1)
    group = jnp.where(known.reshape(-1), jnp.repeat(jnp.arange(s, dtype=jnp.int32), n), s + jnp.arange(s * n))
    xs = jnp.tile(x, (s, 1))
    return dataclasses.replace(predictor, steps=steps).fit(key, xs, y, s * n, group)


def finetune(key: jax.Array, predictor: Pairwise, params0: dict, x_src: jax.Array, y_src: jax.Array,
             x_tgt: jax.Array, y_tgt: jax.Array, n, *, steps: int, mix: float,
             source_weights: jax.Array | None = None) -> dict:
    """Fine-tune every ensemble member of ``params0`` for ``steps`` Adam steps on
    ``(1 - mix) * target pair loss + mix * source pair loss``.

    Target pairs: (i, j) among the first ``n`` rows of ``x_tgt`` / ``y_tgt``; source pairs: (i, j) within one
    source task (``x_src`` [N, D] shared cells, ``y_src`` [S, N] pre-training targets). ``mix`` = 0 is plain
    fine-tuning; ``mix`` > 0 keeps rehearsing the source tasks so that a few target queries refine the pre-trained
    ranking instead of overwriting it. ``source_weights`` [S] (default uniform): how often each source task's pairs
    are drawn (see ``source_similarity``)."""
    tx = optax.adamw(predictor.lr, weight_decay=predictor.weight_decay)
    b = predictor.batch
    s, n_cells = y_src.shape
    hi = jnp.maximum(n, 1)

    def loss(params, k):
        k1, k2, k3, k4, k5 = jax.random.split(k, 5)
        i = jax.random.randint(k1, (b,), 0, hi)
        j = jax.random.randint(k2, (b,), 0, hi)
        lt = predictor.pair_loss(params, x_tgt[i], x_tgt[j], (y_tgt[i] - y_tgt[j]) / y_tgt[j],
                                 (i != j).astype(jnp.float32))
        if mix <= 0:
            return lt
        t = (jax.random.randint(k3, (b,), 0, s) if source_weights is None
             else jax.random.categorical(k3, jnp.log(source_weights + 1e-12), shape=(b,)))
        a = jax.random.randint(k4, (b,), 0, n_cells)
        c = jax.random.randint(k5, (b,), 0, n_cells)
        ya, yc = y_src[t, a], y_src[t, c]
        ok = (a != c) & jnp.isfinite(ya) & jnp.isfinite(yc)  # NaN: a cell that source task lacks
        ya, yc = jnp.where(ok, ya, 1.0), jnp.where(ok, yc, 1.0)
        ls = predictor.pair_loss(params, x_src[a], x_src[c], (ya - yc) / yc, ok.astype(jnp.float32))
        return (1.0 - mix) * lt + mix * ls

    def one(k, p0):
        return fit_steps(loss, p0, k, steps=steps, tx=tx)

    members = jax.tree_util.tree_leaves(params0)[0].shape[0]
    return jax.vmap(one)(jax.random.split(key, members), params0)


def source_similarity(source_values: jax.Array, codes: jax.Array, target_y: jax.Array, n, temp: float) -> jax.Array:
    """Weights [S] = softmax(tau_s / temp) of each source task's Kendall tau-a with the target on the first ``n``
    queried cells (the ranking agreement RGPE / TST-R weight sources by; Feurer et al. 2018, Wistuba et al. 2016)."""
    b = codes.shape[0]
    m = (jnp.arange(b) < n).astype(jnp.float32)
    pair = m[:, None] * m[None, :] * (1.0 - jnp.eye(b))
    dt = jnp.sign(target_y[:, None] - target_y[None, :])
    sv = source_values[:, codes]  # [S, B]
    ds = jnp.nan_to_num(jnp.sign(sv[:, :, None] - sv[:, None, :]))  # a cell a source lacks: no vote
    tau = jnp.sum(ds * dt * pair, (1, 2)) / jnp.maximum(pair.sum(), 1.0)
    return jax.nn.softmax(tau / temp)


@dataclass(frozen=True)
class TransferSearch:
    """See the module docstring. ``source=False``: the same loop from scratch (random init queries, random-init
    fits of ``predictor.steps`` steps)."""

    budget: int = 60
    init: int = 5
    topk: int = 5
    source: bool = True
    pretrain_steps: int = 1000
    finetune_steps: int = 200
    mix: float = 0.5
    similarity_temp: float = 0.0  # > 0: draw source pairs by source_similarity(temp); 0: uniformly
    scale: float = 0.1
    # ensemble with the zero-shot z-score order of the sources: every ranking (the first queries included) is
    # standardise(model score) + w_n * standardise(z-score order), w_n = prior_weight * 0.5 ** (n / prior_halflife)
    # after n target queries (prior_halflife 0: constant); prior_weight 0 = the model alone
    prior_weight: float = 0.0
    prior_halflife: float = 0.0
    zscore_init: bool = False  # True: the first ``init`` queries are the sources' z-score order's best cells

    def __post_init__(self):
        if self.budget < self.init or (self.budget - self.init) % self.topk or self.init < 1:
            raise ValueError(f"TransferSearch needs init >= 1 and budget - init a multiple of topk, got "
                             f"budget={self.budget}, init={self.init}, topk={self.topk}")

    @property
    def rounds(self) -> int:
        return (self.budget - self.init) // self.topk

    def blend(self, score: jax.Array, prior: jax.Array | None, n) -> jax.Array:
        """The ranking after ``n`` target queries: the model's ``score`` alone, or its ensemble with ``prior``."""
        if prior is None or self.prior_weight <= 0:
            return score
        w = self.prior_weight * (0.5 ** (n / self.prior_halflife) if self.prior_halflife > 0 else 1.0)
        return _standardise(score) + w * prior

    def zero_shot(self, key: jax.Array, x: jax.Array, source_values: jax.Array, *, predictor: Pairwise) -> tuple:
        """(pre-trained params, scores [N]) -- ranks the target without any target query (the ensemble with the
        sources' z-score order when ``prior_weight`` > 0)."""
        params = pretrain(key, predictor, x, source_values, steps=self.pretrain_steps, scale=self.scale)
        return params, self.blend(predictor.score(params, x), _prior(source_values), 0)

    def run(self, key: jax.Array, x: jax.Array, source_values: jax.Array | None, target_values: jax.Array, *,
            predictor: Pairwise) -> TransferTrace:
        """One search on the target (``target_values`` [N] is only read at queried cells)."""
        n_cells = x.shape[0]
        k_pre, k_init, k_rounds = jax.random.split(key, 3)
        if self.source:
            params0, u0 = self.zero_shot(k_pre, x, source_values, predictor=predictor)
            first = _prior(source_values) if self.zscore_init else u0
            codes0 = jax.lax.top_k(first, self.init)[1].astype(jnp.int32)
        else:
            params0, u0 = None, jnp.zeros(n_cells)
            codes0 = jax.random.permutation(k_init, n_cells)[: self.init].astype(jnp.int32)
        codes = jnp.zeros(self.budget, jnp.int32).at[: self.init].set(codes0)
        values = jnp.zeros(self.budget, jnp.float32).at[: self.init].set(target_values[codes0])
        queried = jnp.zeros(n_cells, bool).at[codes0].set(True)
        prior = _prior(source_values) if self.source else None
        if self.source:
            known = jnp.isfinite(source_values)
            y_src = jnp.where(known, jax.vmap(lambda v, k: rank_target(jnp.where(k, v, 0.0), k, self.scale))(
                source_values, known), jnp.nan)

        def round_(state, xs):
            codes, values, queried = state
            r, k = xs
            n = self.init + r * self.topk
            y = rank_target(values, jnp.arange(self.budget) < n, self.scale)
            if self.source:
                w = (source_similarity(source_values, codes, y, n, self.similarity_temp)
                     if self.similarity_temp > 0 else None)
                params = finetune(k, predictor, params0, x, y_src, x[codes], y, n, steps=self.finetune_steps,
                                  mix=self.mix, source_weights=w)
            else:
                params = predictor.fit(k, x[codes], y, n)
            score = self.blend(predictor.score(params, x), prior, n)
            _, new = jax.lax.top_k(jnp.where(queried, -jnp.inf, score), self.topk)
            new = new.astype(jnp.int32)
            codes = jax.lax.dynamic_update_slice(codes, new, (n,))
            values = jax.lax.dynamic_update_slice(values, target_values[new], (n,))
            return (codes, values, queried.at[new].set(True)), score

        (codes, values, _), scores = jax.lax.scan(
            round_, (codes, values, queried), (jnp.arange(self.rounds), jax.random.split(k_rounds, self.rounds)))
        return TransferTrace(codes, values, jnp.concatenate([u0[None], scores], 0))

    def scores_after(self, scores: np.ndarray, n_evals: int) -> np.ndarray | None:
        """Scores [..., N] of the model fitted on ``n_evals`` target evaluations (0 = zero-shot), or None when no
        round fits on exactly that many."""
        if n_evals == 0:
            return scores[..., 0, :] if self.source else None
        r, rem = divmod(n_evals - self.init, self.topk)
        if rem or r < 0 or r >= self.rounds:
            return None
        return scores[..., r + 1, :]


def _standardise(v: jax.Array) -> jax.Array:
    return (v - v.mean()) / jnp.maximum(v.std(), 1e-12)


def _prior(source_values: jax.Array | None) -> jax.Array | None:
    """The sources' zero-shot z-score order (``zscore_order``), standardised; jittable."""
    if source_values is None:
        return None
    v = jnp.asarray(source_values, jnp.float32)
    z = (v - jnp.nanmean(v, 1, keepdims=True)) / jnp.maximum(jnp.nanstd(v, 1, keepdims=True), 1e-12)
    known = jnp.isfinite(z)
    return _standardise(jnp.where(known, z, 0.0).sum(0) / jnp.maximum(known.sum(0), 1))


def random_codes(key: jax.Array, n_cells: int, budget: int) -> jax.Array:
    return jax.random.permutation(key, n_cells)[:budget].astype(jnp.int32)


def queries_to_hit(codes: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """[...] 1-based query index of the first queried cell in ``hit`` (bool [N]); budget + 1 when never."""
    h = np.asarray(hit)[np.asarray(codes)]
    return np.where(h.any(-1), h.argmax(-1) + 1, h.shape[-1] + 1)


def order_queries_to_hit(score: np.ndarray, hit: np.ndarray) -> int:
    """Queries a fixed ranking (query in descending ``score``) needs to reach a ``hit`` cell."""
    order = np.argsort(-np.asarray(score), kind="stable")
    return int(np.argmax(np.asarray(hit)[order]) + 1)


def kendall(score, truth) -> float:
    return float(kendalltau(np.asarray(score), np.asarray(truth))[0])


# ---------------------------------------------------------------------------------------------------------------
# Leave-one-task-out studies (used by experiments/transfer_study.py and metanas.runners.transfer)


def batched_runs(key: jax.Array, x, values, problems, search: TransferSearch, predictor: Pairwise,
                 seeds: int) -> TransferTrace:
    """Run ``search`` on each problem (target, sources) with ``seeds`` seeds (same keys for every problem).

    One jitted program vmapped over problems x seeds. Returns a TransferTrace with leading axes [P, seeds]."""
    x = jnp.asarray(x)
    if search.source:
        pairs = [leave_one_out(values, t, s) for t, s in problems]
        src = jnp.asarray(np.stack([p[0] for p in pairs]))
    else:
        src = jnp.zeros((len(problems), 1, x.shape[0]), jnp.float32)  # unused: from scratch sees no source
    tgt = jnp.asarray(np.stack([np.asarray(values)[t] for t, _ in problems]))
    keys = jax.random.split(key, seeds)
    one = lambda k, s, v: search.run(k, x, s if search.source else None, v, predictor=predictor)  # noqa: E731
    return jax.jit(jax.vmap(jax.vmap(one, (0, None, None)), (None, 0, 0)))(keys, src, tgt)


def nested_select(key: jax.Array, x, values, configs: list[dict], search: TransferSearch, predictor: Pairwise,
                  seeds: int, hit: np.ndarray, targets=None) -> tuple[dict, np.ndarray]:
    """Choose a fine-tuning config per outer target on leave-one-out over its SOURCE tasks only.

    For every ordered pair (t excluded, s inner target), ``search.replace(**config)`` is pre-trained on the tasks
    other than t and s and searches s. Outer target t gets the config with the lowest mean over s != t of the median
    queries to a ``hit`` cell of s. The outer target's values are never read by its own selection (its rows of
    ``values`` enter only problems excluded from its score, as sources of other outer targets' inner problems).
    Returns ({t: config index}, inner [C, T, T] median queries (NaN on the diagonal))."""
    n_tasks = np.asarray(values).shape[0]
    targets = range(n_tasks) if targets is None else targets
    pairs = [(t, s) for t in range(n_tasks) for s in range(n_tasks) if s != t]
    problems = [(s, [u for u in range(n_tasks) if u not in (t, s)]) for t, s in pairs]
    inner = np.full((len(configs), n_tasks, n_tasks), np.nan)
    for c, cfg in enumerate(configs):
        tr = batched_runs(key, x, values, problems, dataclasses.replace(search, **cfg), predictor, seeds)
        codes = np.asarray(tr.codes)
        for p, (t, s) in enumerate(pairs):
            inner[c, t, s] = np.median(queries_to_hit(codes[p], hit[s]))
    choice = {t: int(np.argmin(np.nanmean(inner[:, t, :], 1))) for t in targets}
    return choice, inner


def transnas_study(key: jax.Array, x, values, *, search: TransferSearch, predictor: Pairwise, seeds: int,
                   configs: list[dict], nested_seeds: int, nested_budget: int, hit_frac: float = 0.01,
                   tau_at=(0, 10, 20), log=print) -> dict:
    """Leave-one-task-out on every task of ``values`` [T, N] (raw metric, higher is better).

    Per target: nested selection of the fine-tuning config on its sources (``nested_select``), then with the same
    ``seeds`` keys: the transfer search (chosen config), the same search from scratch, random search; plus the
    zero-shot orders (mean z-score of the sources; the pre-trained meta-learner's own ranking) and Kendall tau of
    the target ranking after ``tau_at`` target evaluations. Returns a JSON-able dict of per-seed figures."""
    values = np.asarray(values, np.float32)
    n_tasks = values.shape[0]
    hit = top_cells(values, hit_frac)
    k_nest, k_run = jax.random.split(key)
    inner_search = dataclasses.replace(search, budget=nested_budget)
    choice, inner = nested_select(k_nest, x, values, configs, inner_search, predictor, nested_seeds, hit)
    log(f"nested choice per target: {choice}")
    out = {"choice": choice, "configs": configs, "inner_median_queries": inner.tolist(), "targets": {}}
    transfer = {}
    for c in sorted(set(choice.values())):
        ts = [t for t in range(n_tasks) if choice[t] == c]
        tr = batched_runs(k_run, x, values, [(t, None) for t in ts], dataclasses.replace(search, **configs[c]),
                          predictor, seeds)
        for i, t in enumerate(ts):
            transfer[t] = jax.tree_util.tree_map(lambda a: np.asarray(a[i]), tr)
        log(f"transfer config {c} done for targets {ts}")
    scratch_search = dataclasses.replace(search, source=False)
    sc = batched_runs(k_run, x, values, [(t, None) for t in range(n_tasks)], scratch_search, predictor, seeds)
    sc = jax.tree_util.tree_map(np.asarray, sc)
    log("scratch done")
    rnd = np.asarray(jax.vmap(lambda k: random_codes(k, x.shape[0], x.shape[0]))(jax.random.split(k_run, seeds)))
    for t in range(n_tasks):
        src, tv = leave_one_out(values, t)
        z = zscore_order(src)
        tr = transfer[t]
        res = {
            "transfer": queries_to_hit(tr.codes, hit[t]).tolist(),
            "transfer_codes": tr.codes.tolist(), "scratch_codes": sc.codes[t].tolist(),
            "scratch": queries_to_hit(sc.codes[t], hit[t]).tolist(),
            "random": queries_to_hit(rnd, hit[t]).tolist(),
            "zero_shot_zscore": order_queries_to_hit(z, hit[t]),
            "zero_shot_pairwise": [order_queries_to_hit(s, hit[t]) for s in tr.scores[:, 0, :]],
            "tau_zscore": kendall(z, tv),
            "tau_transfer": {}, "tau_scratch": {},
        }
        for n in tau_at:
            a = search.scores_after(tr.scores, n)
            b = scratch_search.scores_after(sc.scores[t], n)
            res["tau_transfer"][n] = None if a is None else [kendall(s, tv) for s in a]
            res["tau_scratch"][n] = None if b is None else [kendall(s, tv) for s in b]
        out["targets"][t] = res
    return out


def fixed_config_study(key: jax.Array, x, values, report, *, search: TransferSearch, predictor: Pairwise,
                       seeds: int, top: int, log=print) -> dict:
    """Leave-one-task-out with a fixed config (no nested selection; e.g. the NB201 sanity check): per target,
    queries to one of its ``top`` best cells by the QUERIED metric ``values`` [T, N] for transfer / from scratch /
    random / the zero-shot z-score order, and the ``report`` [T, N] metric (e.g. test accuracy) of the best cell
    by the queried metric after the whole budget (median over seeds)."""
    values, report = np.asarray(values, np.float32), np.asarray(report, np.float32)
    n_tasks = values.shape[0]
    hit = top_cells(values, top / values.shape[1])
    problems = [(t, None) for t in range(n_tasks)]
    out = {"targets": {}}
    runs = {}
    for name, s in (("transfer", search), ("scratch", dataclasses.replace(search, source=False))):
        runs[name] = jax.tree_util.tree_map(np.asarray, batched_runs(key, x, values, problems, s, predictor, seeds))
        log(f"{name} done")
    rnd = np.asarray(jax.vmap(lambda k: random_codes(k, x.shape[0], search.budget))(jax.random.split(key, seeds)))
    for t in range(n_tasks):
        src, tv = leave_one_out(values, t)
        z = zscore_order(src)
        res = {"zero_shot_zscore": order_queries_to_hit(z, hit[t]),
               "zero_shot_zscore_report": float(report[t, int(np.argmax(z))]),
               "random": queries_to_hit(rnd, hit[t]).tolist(),
               "random_report": [float(report[t, c[np.argmax(tv[c])]]) for c in rnd]}
        for name, r in runs.items():
            res[name] = queries_to_hit(r.codes[t], hit[t]).tolist()
            res[f"{name}_report"] = [float(report[t, c[np.argmax(tv[c])]]) for c in r.codes[t]]
        res["zero_shot_pairwise"] = [order_queries_to_hit(s, hit[t]) for s in runs["transfer"].scores[t, :, 0, :]]
        res["optimum_report"] = float(report[t, int(np.argmax(tv))])
        out["targets"][t] = res
    return out


# ---------------------------------------------------------------------------------------------------------------
# The paired study: every method on the same seeds with common random numbers, censored alike


MEMBER_PARTS = ("mean", "orders", "pairwise", "proxies")


def check_members(spec: str) -> list[str]:
    """The parts of a members spec such as ``orders+pairwise``; an unknown part raises one line naming the valid."""
    parts = str(spec).split("+")
    bad = [p for p in parts if p not in MEMBER_PARTS]
    if bad or not parts:
        raise ValueError(f"members {spec!r}: unknown part(s) {bad}; join some of {list(MEMBER_PARTS)} with '+'")
    return parts


@functools.lru_cache(maxsize=None)
def _seeds_run(search):
    """``search.run`` jitted once per search config, mapped over seeds (keys [K], members [K, M, N]) one after the
    other: batched over seeds, its Cholesky factorisations went to jaxlib's ParallelBatchMap, whose sub-tasks wait
    on the same XLA CPU thread pool that runs them -- on 2 cores every pool thread ended up waiting (a deadlock,
    no error: the study's "hangs")."""
    return jax.jit(lambda keys, x, members, values: jax.lax.map(
        lambda a: search.run(a[0], x, a[1], values), (keys, members)))


def paired_study(seeds, data, *, methods: dict, budget: int = 50, init: int = 5, topk: int = 5,
                 hit_frac: float = 0.01, predictor: Pairwise | None = None, pretrain_steps: int = 500,
                 pretrain_seed: int = 0, forest_trees: int = 100, targets=None, sources=None,
                 log=print, on_target=None, cache_dir=None, seed_chunk: int | None = None) -> dict:
    """Leave-one-task-out on every task of a ``TransNASData``-shaped ``data`` (``load_transnas``), each task's
    candidates its own cells (``task_view``), every method on the same ``seeds`` (ints; key = PRNGKey(seed)).

    ``methods``: name -> spec, one of
      ``{"kind": "trust", "members": "orders" | "orders+pairwise" | "mean+pairwise" ..., "weighting": "rgpe"}``
      (the trust search with the GP target member; members named by parts joined with "+": ``mean`` the mean
      z-score order, ``orders`` mean + each source's order, ``pairwise`` the meta-learner's zero-shot ranking
      (pre-trained once per target on its sources, key ``pretrain_seed``), ``proxies`` the target's zero-cost proxies where the file has them),
      ``{"kind": "trust_rf", "members": ..., "target": "forest"}`` (the same loop on the host with a random
      forest target member: the plain RGPE version; ``"target": "gp+forest"`` the GP and the forest side by
      side), ``{"kind": "scratch"}`` (trust search with no prior member: GP from random first cells), ``{"kind": "random"}``, ``{"kind": "zero_shot"}`` (the mean z-score order, capped at the budget),
      ``{"kind": "zero_shot_ls"}`` (that order's first ``init`` cells, then local search),
    Queries to a top-``hit_frac`` cell (among the target's own cells) per seed, censored at ``budget + 1`` for
    every method alike (``metanas.stats.censor``). ``sources``: source task indices (default: every other task;
    the target among them raises: leave-one-task-out). ``cache_dir``: keep each target's pre-trained zero-shot
    scores there (a deterministic function of the target, its sources and ``pretrain_seed``) for later calls.
    Within a seed: one key; random first cells (``initial_cells``) shared by every method that starts at random;
    methods that start from the prior share its first cells. ``seed_chunk``: vmap the GP searches over at most this
    many seeds per call (each seed's search is the same; smaller batches for a loaded CPU)."""
    from metanas.benchmarks.transnas import task_view
    from metanas.search import trust as R
    from metanas.stats import censor

    n_tasks = len(data.tasks)
    targets = range(n_tasks) if targets is None else targets
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    trust_search = R.TrustSearch(budget=budget, init=init, topk=topk)
    out = {"tasks": list(data.tasks), "seeds": [int(s) for s in seeds], "budget": budget, "init": init,
           "topk": topk, "hit_frac": hit_frac, "methods": methods, "targets": {}}
    need_pw = any("pairwise" in str(m.get("members", "")) for m in methods.values())
    for t in targets:
        name = data.tasks[t]
        src_t = [u for u in range(n_tasks) if u != t] if sources is None else list(sources)
        cells, x, sv, tv, px = task_view(data, t, src_t)
        hit = top_cells(tv, hit_frac)
        n = x.shape[0]
        res = {"n_cells": int(n), "n_hit": int(hit.sum()), "queries": {}, "codes": {}}
        zs = None
        cached = None if cache_dir is None else Path(cache_dir) / (
            f"zero_shot.{name}.{'-'.join(map(str, src_t))}.{pretrain_seed}.{pretrain_steps}.npy")
        if need_pw and cached is not None and cached.exists():
            zs = np.load(cached)
        elif need_pw:
            ts = dataclasses.replace(TransferSearch(), pretrain_steps=pretrain_steps)
            # pre-trained once per target (a prior like the z-score order: the seeds vary the search, not it)
            zs = np.asarray(jax.jit(lambda x_, s_: ts.zero_shot(jax.random.PRNGKey(pretrain_seed), x_, s_,
                                                                predictor=predictor)[1])(jnp.asarray(x),
                                                                                         jnp.asarray(sv)))
            log(f"{name}: pre-trained the meta-learner on {len(src_t)} sources")
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, zs)

        def members(spec, i):
            parts = check_members(spec)
            base = R.prior_members(sv)
            rows = [base[:1] if "mean" in parts else base[:0]]
            if "orders" in parts:
                rows = [base]
            if "pairwise" in parts:
                rows.append(R.prior_members(zs[None])[:1])
            if "proxies" in parts:
                p = px.T[np.isfinite(px.T).all(1) & (np.nanstd(px.T, 1) > 0)]
                if len(p):
                    rows.append(R.prior_members(p)[1:])
            return np.concatenate(rows, 0)

        for mname, spec in methods.items():
            kind = spec["kind"]
            if kind == "zero_shot":
                q = np.full(len(seeds), order_queries_to_hit(R.prior_members(sv)[0], hit), np.float64)
                codes = None
            elif kind == "zero_shot_ls":
                c = R.prior_local_search(data.archs[cells], tv, R.prior_members(sv)[0], init, budget)
                codes = np.repeat(c[None], len(seeds), 0)
            elif kind == "random":
                codes = np.asarray(jax.vmap(lambda k: R.random_order(jax.random.split(k)[0], n)[:budget])(keys))
            elif kind in ("trust", "scratch"):
                s = dataclasses.replace(trust_search, weighting=spec.get("weighting", "rgpe"),
                                        level=float(spec.get("level", 0.0)))
                mem = (np.zeros((len(seeds), 0, n), np.float32) if kind == "scratch"
                       else np.stack([members(spec["members"], i) for i in range(len(seeds))]))
                run, step = _seeds_run(s), seed_chunk or len(seeds)
                trs = [run(keys[i:i + step], jnp.asarray(x), jnp.asarray(mem[i:i + step]), jnp.asarray(tv))
                       for i in range(0, len(seeds), step)]
                codes = np.concatenate([np.asarray(tr.codes) for tr in trs])
                if kind == "trust":
                    w = np.concatenate([np.asarray(tr.weights) for tr in trs])
                    res.setdefault("weights", {})[mname] = w.mean(0).round(4).tolist()
            elif kind == "trust_rf":
                s = dataclasses.replace(trust_search, weighting=spec.get("weighting", "rgpe"),
                                        level=float(spec.get("level", 0.0)))
                codes, w = [], []
                for i, k in enumerate(keys):
                    fit = R.target_fit(spec.get("target", "forest"), int(seeds[i]), forest_trees)
                    tr = s.run_host(k, x, members(spec["members"], i), tv, fit)
                    codes.append(np.asarray(tr.codes))
                    w.append(np.asarray(tr.weights))
                codes = np.stack(codes)
                res.setdefault("weights", {})[mname] = np.mean(w, 0).round(4).tolist()
            else:
                raise ValueError(f"unknown method kind {kind!r}")
            if codes is not None:
                q = queries_to_hit(codes, hit).astype(np.float64)
                res["codes"][mname] = codes[:, :init].tolist()  # the first cells, for the common-random-numbers check
            res["queries"][mname] = censor(q, budget).tolist()
            log(f"{name}: {mname} mean {np.mean(res['queries'][mname]):.2f}")
        out["targets"][name] = res
        if on_target is not None:  # e.g. save the study so far (a long run keeps every finished target)
            on_target(out)
    return out
