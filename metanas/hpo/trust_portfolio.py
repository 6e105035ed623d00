"""The trust-weighted warm start on a task x config regret matrix (TabRepo): every piece of prior knowledge is a
member of ``metanas.search.trust.TrustSearch`` (the same search as the NAS transfer's), weighted by how well it
ranks the target's evaluations.

Members for a held-out task, all built from the TRAINING tasks only (meta-features scaled with their statistics):

- ``greedy``: the greedy portfolio (uniform over the training tasks, complementary acquisition = the greedy
  portfolio continued from the evaluated set); ranking: mean per-task rank. The search starts as it: before two
  evaluations no pair can be judged, so its first two picks are exactly ``greedy_portfolio``'s.
- ``knn``: the same over the k nearest training tasks by meta-features (k by ``select_k``).
- ``kernel``: the kernel warm start's task weights and ranking (candidates by ``select_warm_start``).
- ``mean_rank``: the task-agnostic order by mean per-task rank (static acquisition: its own order).
- ``task:<i>``: each training task's own regret order (one-hot over the tasks, complementary).
- ``target``: a GP on the configs' features fitted on the target's evaluations (``rank_gp``; out-of-fold for its
  trust).

``trust_leave_tasks_out`` runs the folds x shuffles of ``portfolio.leave_tasks_out`` with the baselines on the same
held-out tasks, choosing the search's settings per outer fold by inner cross-validation over that fold's training
tasks only (``select_settings``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import kendalltau

from metanas.hpo.portfolio import (WARM_START_CANDIDATES, WarmStartCandidate, greedy_portfolio, kernel_warm_start,
                                   knn_portfolio, rank_matrix, regret_curve, select_k, select_warm_start,
                                   task_weights)
from metanas.hpo.warmstart import nearest_tasks
from metanas.hpo.warmstart import scale_features
from metanas.predictors.trust import standardise
from metanas.search.trust import Portfolio, TrustSearch

PRIOR_NAMES = ("greedy", "knn", "kernel", "mean_rank")


class PriorMembers(NamedTuple):
    """A held-out task's prior members: ``rank`` [P, C] what each is judged on (higher = better), ``mix`` [P, T] its
    distribution over the training tasks, ``complementary`` [P] its acquisition (``metanas.search.trust.Portfolio``)."""

    rank: np.ndarray
    mix: np.ndarray
    complementary: np.ndarray


class TrustSettings(NamedTuple):
    use_target: bool = True  # include the GP fitted on the target's evaluations as a member
    acquisition: str = "blend"  # "blend" | "mixture" | "prior" (no trust: the greedy portfolio throughout)
    n_boot: int = 200
    lengthscale: float = 1.0  # the target GP's RBF lengthscale on standardised config features
    noise: float = 0.1  # its noise variance (targets: standardised ranks of the evaluated values)


# the settings the inner cross-validation chooses among, per outer fold; index 0 is the prior alone (no trust):
# the search then IS the greedy portfolio, so the nested choice can always fall back to it
SETTINGS = (TrustSettings(acquisition="prior"),
            TrustSettings(acquisition="blend", use_target=True),
            TrustSettings(acquisition="blend", use_target=False),
            TrustSettings(acquisition="mixture", use_target=True),
            TrustSettings(acquisition="mixture", use_target=False))


def build_members(train_features: np.ndarray, train_regret: np.ndarray, features: np.ndarray, *, k: int,
                  kernel: tuple[WarmStartCandidate, WarmStartCandidate]) -> tuple[PriorMembers, list[str]]:
    """The prior members (module doc) for one new task with raw meta-features ``features`` [G]."""
    regret = np.asarray(train_regret, np.float64)
    n, c = regret.shape
    ranks = rank_matrix(regret)
    uniform = np.full(n, 1.0 / n)
    tr, q = scale_features(train_features, features)
    knn = np.zeros(n)
    knn[nearest_tasks(q, tr, k)] = 1.0
    knn /= knn.sum()
    w_port = task_weights(train_features, features, kernel[0].bandwidth, kernel[0].columns)
    _, kernel_rank = kernel_warm_start(train_features, regret, features, kernel[1], 1, ranks)
    mix = np.concatenate([np.stack([uniform, knn, w_port, uniform]), np.eye(n)])
    rank = np.concatenate([np.stack([-uniform @ ranks, -knn @ ranks, kernel_rank, -uniform @ ranks]), -ranks])
    comp = np.ones(len(mix), bool)
    comp[3] = False  # the mean-rank order: its own order
    names = [*PRIOR_NAMES, *(f"task:{i}" for i in range(n))]
    return PriorMembers(rank.astype(np.float32), mix.astype(np.float32), comp), names


def rank_gp(x: jax.Array, lengthscale: float = 1.0, noise: float = 0.1):
    """The target member on a table: a GP with an RBF kernel (fixed ``lengthscale`` on standardised config
    features ``x`` [C, F], noise variance ``noise``) fitted on the standardised ranks of the evaluated values, as a
    jittable ``TrustSearch`` fit ``(xq [B, F], y [B], mask [B]) -> (mean [C], leave-one-out means [B])``."""

    def fit(xq, y, valid):
        ranks = jnp.sum(valid[None, :] & (y[None, :] < y[:, None]), 1).astype(jnp.float32)
        cnt = jnp.maximum(valid.sum(), 1)
        mu = jnp.sum(jnp.where(valid, ranks, 0.0)) / cnt
        sd = jnp.sqrt(jnp.sum(jnp.where(valid, (ranks - mu) ** 2, 0.0)) / cnt)
        z = jnp.where(valid, (ranks - mu) / jnp.maximum(sd, 1e-6), 0.0)

        def k(a, b):
            return jnp.exp(-0.5 * jnp.sum((a[:, None] - b[None]) ** 2, -1) / lengthscale ** 2)

        vm = valid.astype(jnp.float32)
        kqq = k(xq, xq) * vm[:, None] * vm[None, :] + jnp.diag(jnp.where(valid, noise, 1.0))
        inv = jnp.linalg.inv(kqq)
        alpha = inv @ z
        return k(x, xq) @ (alpha * vm), z - alpha / jnp.diag(inv)

    return fit


def search_for(settings: TrustSettings, budget: int) -> TrustSearch:
    """The table search of a setting: one evaluation a round, the greedy portfolio (member 0) as the start; the
    ``prior`` setting never leaves it (hand-over level inf)."""
    return TrustSearch(budget=budget, init=1, topk=1, n_boot=settings.n_boot, start=0,
                       level=float("inf") if settings.acquisition == "prior" else 0.0,
                       mixture=settings.acquisition == "mixture", ranking=True)


@functools.lru_cache(maxsize=64)
def _searcher(settings: TrustSettings, budget: int):
    search = search_for(settings, budget)

    def one(key, members, regret, y, feats):
        fit = rank_gp(feats, settings.lengthscale, settings.noise) if settings.use_target else None
        tr = search.run(key, feats, members.rank, y, fit=fit,
                        portfolio=Portfolio(regret, members.mix, members.complementary))
        return tr.codes, tr.weights, tr.ranking

    # lax.map over the held-out tasks, not vmap: batched, the target GP's LAPACK calls go through jaxlib's
    # ParallelBatchMap on the XLA CPU pool they are called from (the TransNAS study's deadlock, search.transfer)
    return jax.jit(lambda keys, m, r, y, f: jax.lax.map(lambda a: one(a[0], a[1], a[2], a[3], f), (keys, m, r, y)))


def run_trust(settings: TrustSettings, members: Sequence[PriorMembers], train_regrets: Sequence[np.ndarray],
              target_values: np.ndarray, config_features: np.ndarray, *, budget: int, seed: int, batch: int = 16,
              ids: Sequence[int] | None = None):
    """The table search (``search_for``) on several held-out tasks, each with its own members and training tasks'
    regrets: one jitted program (``lax.map`` over the tasks) per (setting, number of training tasks), the held-out
    tasks padded to a multiple of ``batch`` by repeating the last (never by padding members: a member that ranks
    nothing still shares RGPE's votes in a resample where no pair is judged). Returns (picks [N, budget], weights:
    N arrays [budget, M_i] (the weights that chose each pick; M_i = 4 + the task's training tasks + 1, the target
    member last, 0 when the setting has none), rank scores [N, budget + 1, C] (the ensemble's ranking after 0..budget
    evaluations)) as numpy, in the order given. The i-th task's key is ``fold_in(PRNGKey(seed), ids[i])`` (default
    ``ids``: 0..N-1)."""
    feats = np.asarray(config_features, np.float64)
    feats = jnp.asarray((feats - feats.mean(0)) / np.where(feats.std(0) > 0, feats.std(0), 1.0), jnp.float32)
    target_values = np.asarray(target_values, np.float32)
    n = len(members)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    out: list = [None] * n
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(train_regrets):
        groups.setdefault(np.asarray(r).shape[0], []).append(i)
    for t, idx in groups.items():
        pad = idx + [idx[-1]] * (-len(idx) % batch)
        stacked = PriorMembers(*(jnp.asarray(np.stack([getattr(members[i], f) for i in pad]))
                                 for f in PriorMembers._fields))
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.asarray(ids[pad]))
        picks, weights, ranking = (np.asarray(x) for x in _searcher(settings, budget)(
            keys, stacked, jnp.asarray(np.stack([train_regrets[i] for i in pad]), jnp.float32),
            jnp.asarray(target_values[pad]), feats))
        p = weights.shape[-1] - settings.use_target  # prior members
        first = np.zeros((weights.shape[0], 1, p + 1), np.float32)
        first[:, :, 0] = 1.0  # the first pick is the greedy portfolio's
        weights = np.concatenate([first, np.pad(weights, ((0, 0), (0, 0), (0, 1 - settings.use_target)))], 1)
        zero_shot = np.asarray(standardise(stacked.rank[:, 0]))[:, None]  # the ranking before any evaluation
        ranking = np.concatenate([zero_shot, ranking], 1)
        for j, i in enumerate(idx):
            out[i] = (picks[j], weights[j], ranking[j])
    return np.stack([o[0] for o in out]), [o[1] for o in out], np.stack([o[2] for o in out])


def _fold_setup(features, regret, tr, k_candidates, size):
    kf = select_k(features[tr], regret[tr], k_candidates, size)
    ip, ir = select_warm_start(features[tr], regret[tr], WARM_START_CANDIDATES, size)
    return kf, (WARM_START_CANDIDATES[ip], WARM_START_CANDIDATES[ir]), (ip, ir)


def _members_for(features, regret, tr, te, kf, kern):
    return [build_members(features[tr], regret[tr], features[t], k=kf, kernel=kern)[0] for t in te]


def select_settings(features: np.ndarray, regret: np.ndarray, target_values: np.ndarray,
                    config_features: np.ndarray, *, k_candidates, budget: int, inner_folds: int = 5,
                    seed: int = 0, settings: Sequence[TrustSettings] = SETTINGS) -> tuple[int, np.ndarray]:
    """Inner cross-validation over the given (training) tasks only: (index of the setting with the lowest mean
    regret over 1..budget evaluations, that loss per setting). Ties: the earlier setting (the prior alone first)."""
    n = regret.shape[0]
    fold = np.random.default_rng(seed).permutation(n) % inner_folds
    members, regrets, order = [], [], []
    for f in range(inner_folds):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        kf, kern, _ = _fold_setup(features, regret, tr, k_candidates, budget)
        members += _members_for(features, regret, tr, te, kf, kern)
        regrets += [regret[tr]] * len(te)
        order += list(te)
    order = np.array(order)
    loss = np.zeros(len(settings))
    for i, s in enumerate(settings):
        picks = run_trust(s, members, regrets, target_values[order], config_features, budget=budget, seed=seed)[0]
        loss[i] = np.mean([regret_curve(regret[t], p).mean() for t, p in zip(order, picks)])
    return int(np.argmin(loss)), loss


def _tau(score, regret_row, keep, digits=10):
    """Kendall tau over the configs ``keep``, the scores rounded to ``digits`` first, so that equal mean ranks count
    as ties whatever the order of summation (float64 sums of the same ranks in another order differ by ~1e-17; the
    search's standardised float32 scores are rounded to 5 digits: their standardised steps are > 1e-4 on TabRepo)."""
    s = np.round(np.asarray(score, np.float64), digits)[keep]
    return float(np.nan_to_num(kendalltau(s, -np.asarray(regret_row)[keep])[0]))


def trust_leave_tasks_out(features: np.ndarray, regret: np.ndarray, target_values: np.ndarray,
                          config_features: np.ndarray, *, folds: int = 5, shuffles: int = 2, k=(4, 8, 16, 32, 10**6),
                          budget: int = 8, seed: int = 0, random_draws: int = 200,
                          settings: Sequence[TrustSettings] = SETTINGS, progress=None, cache_dir=None) -> dict:
    """Per held-out task (each of ``shuffles`` random partitions into ``folds``, the same partitions as
    ``portfolio.leave_tasks_out`` with the same ``seed``): regret curves [budget] of the trust search and of the
    baselines built on the other folds (greedy, k-NN and kernel portfolios, mean-rank order, random search as the
    mean over ``random_draws`` permutations), and Kendall tau of the rankings over the configs not yet evaluated.

    ``target_values`` [T, C]: what a query returns (higher = better, e.g. minus the recorded error); the regret
    curves use ``regret`` [T, C]. ``cache_dir``: each outer fold's rows are saved there and read back on a rerun
    (a killed study resumes fold by fold; delete the folder when the data or the settings change)."""
    features, regret = np.asarray(features, np.float64), np.asarray(regret, np.float64)
    n_tasks, c = regret.shape
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    fold_info: list[dict] = []
    for s in range(shuffles):
        fold = rng.permutation(n_tasks) % folds
        for f in range(folds):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            cached = None if cache_dir is None else Path(cache_dir) / f"fold_s{s}_f{f}.json"
            if cached is not None and cached.is_file():
                part = json.loads(cached.read_text())
                rows += part["rows"]
                fold_info.append(part["info"])
                continue
            n_rows = len(rows)
            chosen, inner_loss = select_settings(features[tr], regret[tr], target_values[tr], config_features,
                                                 k_candidates=list(k), budget=budget, seed=seed * 100 + s * 10 + f,
                                                 settings=settings)
            kf, kern, kern_idx = _fold_setup(features, regret, tr, list(k), budget)
            members = _members_for(features, regret, tr, te, kf, kern)
            per_setting = [run_trust(st, members, [regret[tr]] * len(te), target_values[te], config_features,
                                     budget=budget, seed=seed * 100 + s * 10 + f)
                           for st in settings]
            greedy = greedy_portfolio(regret[tr], budget)
            ranks = rank_matrix(regret[tr])
            mean_rank_score = -ranks.mean(0)
            mean_rank = np.argsort(-mean_rank_score, kind="stable")[:budget]
            fold_info.append(dict(shuffle=s, fold=f, chosen=chosen, inner_loss=inner_loss.tolist(), k=int(kf),
                                  kernel=list(kern_idx)))
            for j, t in enumerate(te):
                knn_order, _ = knn_portfolio(features[tr], regret[tr], features[t], k=kf, size=budget)
                kern_order, kern_score = kernel_warm_start(features[tr], regret[tr], features[t], kern[0], budget,
                                                           ranks)
                _, kern_rank = kernel_warm_start(features[tr], regret[tr], features[t], kern[1], 1, ranks)
                rr = np.random.default_rng([seed, s, f, int(t)])
                rand = np.mean([regret_curve(regret[t], rr.permutation(c)[:budget]) for _ in range(random_draws)], 0)
                row = dict(task=int(t), shuffle=s, fold=f,
                           curves={"greedy": regret_curve(regret[t], greedy).tolist(),
                                   "knn": regret_curve(regret[t], knn_order).tolist(),
                                   "kernel": regret_curve(regret[t], kern_order).tolist(),
                                   "mean_rank": regret_curve(regret[t], mean_rank).tolist(),
                                   "random": rand.tolist()},
                           setting_curves=[regret_curve(regret[t], ps[0][j]).tolist() for ps in per_setting],
                           setting_picks=[ps[0][j].tolist() for ps in per_setting])
                picks, weights, rscore = per_setting[chosen][0][j], per_setting[chosen][1][j], per_setting[chosen][2][j]
                row["curves"]["trust"] = row["setting_curves"][chosen]
                row["picks"] = picks.tolist()
                row["weights"] = {"prior_members": weights[:, :4].tolist(), "tasks": weights[:, 4:-1].sum(1).tolist(),
                                  "target": weights[:, -1].tolist()}
                taus = {}
                for kk in (0, budget // 2, budget):
                    keep = np.ones(c, bool)
                    keep[picks[:kk]] = False
                    taus[kk] = {"trust": _tau(rscore[kk], regret[t], keep, 5),
                                "mean_rank": _tau(mean_rank_score, regret[t], keep),
                                "best_on_average": _tau(-regret[tr].mean(0), regret[t], keep),
                                "kernel": _tau(kern_rank, regret[t], keep)}
                row["tau"] = taus
                rows.append(row)
                if progress:
                    progress(f"shuffle {s} fold {f} task {t}: trust {row['curves']['trust'][0]:.3f} / "
                             f"{row['curves']['trust'][3]:.3f} / {row['curves']['trust'][-1]:.3f}, greedy "
                             f"{row['curves']['greedy'][0]:.3f} / {row['curves']['greedy'][3]:.3f} / "
                             f"{row['curves']['greedy'][-1]:.3f}")
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps({"rows": rows[n_rows:], "info": fold_info[-1]}))
    return dict(rows=rows, folds_info=fold_info, folds=folds, shuffles=shuffles, budget=budget, k=list(k),
                settings=[s._asdict() for s in settings], member_names=list(PRIOR_NAMES) + ["task:*", "target"])

