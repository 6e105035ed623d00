"""Portfolios and meta-learned warm starts on a task x config regret matrix (host numpy; e.g. TabRepo).

- ``greedy_portfolio``: Feurer et al. (2022, auto-sklearn 2.0, "portfolio building"): add configurations one by
  one, each time the one that minimises the mean over the training tasks of the best (lowest) normalised regret
  reached by the portfolio so far.
- ``best_on_average``: the configurations with the lowest mean normalised regret over the training tasks.
- ``knn_portfolio``: the meta-learned warm start -- the greedy portfolio built on the ``k`` training tasks nearest
  to the new task by meta-features, which are standardised with the TRAINING tasks' statistics only
  (``metanas.hpo.warmstart.scale_features``); its ranking of all configs is their mean regret over those tasks.
- ``kernel_warm_start``: the meta-learned warm start that combines the two: every training task is weighted by a
  Gaussian kernel of its meta-feature distance to the new task (training-task statistics only; bandwidth ``inf`` =
  uniform weights = the greedy portfolio), the portfolio is the weighted greedy portfolio, and the ranking is the
  weighted mean of the tasks' regrets or of their per-task ranks. ``select_warm_start`` chooses the bandwidth, the
  feature set and the target among ``WARM_START_CANDIDATES`` by leave-one-out over the TRAINING tasks only.
- ``leave_tasks_out``: folds x shuffles of held-out tasks; regret of each warm start after 1..n evaluations and
  Kendall tau of each learnt ranking with the held-out task's true regrets.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import kendalltau

from typing import NamedTuple, Sequence

from metanas.hpo.warmstart import nearest_tasks, scale_features


def greedy_portfolio(regret: np.ndarray, size: int, weights: np.ndarray | None = None,
                     start: Sequence[int] = ()) -> list[int]:
    """Greedy portfolio [size] of column indices of ``regret`` [T, C] (ties: lowest index).

    ``weights`` [T] (default uniform): minimise the weighted mean over tasks instead of the plain mean.
    ``start``: configs already chosen (the portfolio begins with them and continues greedily)."""
    regret = np.asarray(regret, np.float64)
    w = np.full(regret.shape[0], 1.0 / regret.shape[0]) if weights is None else np.asarray(weights, np.float64)
    out: list[int] = [int(j) for j in start][:size]
    best = regret[:, out].min(1) if out else np.full(regret.shape[0], np.inf)
    for _ in range(min(size, regret.shape[1]) - len(out)):
        cand = w @ np.minimum(best[:, None], regret)
        cand[out] = np.inf
        j = int(np.argmin(cand))
        out.append(j)
        best = np.minimum(best, regret[:, j])
    return out


def portfolio_loss(regret: np.ndarray, configs) -> float:
    """Mean over tasks of the best regret among ``configs``."""
    return float(np.asarray(regret)[:, list(configs)].min(1).mean())


def brute_force_portfolio(regret: np.ndarray, size: int) -> tuple[int, ...]:
    """The best set of ``size`` columns by exhaustive search (tiny matrices only; for tests)."""
    return min(itertools.combinations(range(np.asarray(regret).shape[1]), size),
               key=lambda s: portfolio_loss(regret, s))


def best_on_average(regret: np.ndarray, size: int) -> list[int]:
    return np.argsort(np.asarray(regret).mean(0), kind="stable")[:size].tolist()


def knn_portfolio(train_features: np.ndarray, train_regret: np.ndarray, features: np.ndarray, *, k: int,
                  size: int) -> tuple[list[int], np.ndarray]:
    """(greedy portfolio on the ``k`` nearest training tasks, ranking score [C] = -their mean regret).

    ``features`` [G] of the new task are scaled with the training tasks' statistics only."""
    tr, q = scale_features(train_features, features)
    nn = nearest_tasks(q, tr, k)
    sub = np.asarray(train_regret)[nn]
    return greedy_portfolio(sub, size), -sub.mean(0)


def regret_curve(regret_row: np.ndarray, order) -> np.ndarray:
    """Best regret after 1..len(order) evaluations in ``order``."""
    return np.minimum.accumulate(np.asarray(regret_row)[list(order)])


def select_k(features: np.ndarray, regret: np.ndarray, candidates, size: int) -> int:
    """Nested choice of the k-NN warm start's k on TRAINING tasks only: leave each training task out, build the
    k-NN portfolio on the others, and keep the k with the lowest mean regret averaged over 1..size evaluations."""
    n = regret.shape[0]
    cands = [min(int(k), n - 1) for k in candidates]
    loss = np.zeros(len(cands))
    for t in range(n):
        rest = np.delete(np.arange(n), t)
        for i, k in enumerate(cands):
            order, _ = knn_portfolio(features[rest], regret[rest], features[t], k=k, size=size)
            loss[i] += regret_curve(regret[t], order).mean()
    return cands[int(np.argmin(loss))]


def rank_matrix(regret: np.ndarray) -> np.ndarray:
    """Per-task rank of each config scaled to [0, 1] (0 = best; ties averaged)."""
    from scipy.stats import rankdata

    regret = np.asarray(regret, np.float64)
    return np.stack([(rankdata(r) - 1) / max(len(r) - 1, 1) for r in regret])


class WarmStartCandidate(NamedTuple):
    """One setting of ``kernel_warm_start``: Gaussian ``bandwidth`` on the mean squared z-scored distance over
    ``columns`` of the meta-features (None: all; bandwidth inf: uniform = task-agnostic), and the ranking's
    ``target``: "regret" (weighted mean normalised regret) or "rank" (weighted mean per-task rank)."""
    bandwidth: float
    columns: tuple[int, ...] | None = None
    target: str = "regret"


# log_instances, log_features, log1p_classes, log_instances_per_feature: the size-like TabRepo meta-features
TABREPO_SIZE_COLUMNS = (0, 1, 2, 9)
WARM_START_CANDIDATES = tuple(WarmStartCandidate(h, c, t) for t in ("regret", "rank")
                              for c in (None, TABREPO_SIZE_COLUMNS) for h in (0.5, 1.0, 2.0, 4.0)) + (
    WarmStartCandidate(np.inf, None, "regret"), WarmStartCandidate(np.inf, None, "rank"))


def task_weights(train_features: np.ndarray, features: np.ndarray, bandwidth: float,
                 columns: Sequence[int] | None = None) -> np.ndarray:
    """Weights [n] (sum 1) of the training tasks for a new task: exp(-(d2 - min d2) / (2 bandwidth^2)), d2 = mean
    squared difference of the meta-features z-scored with the TRAINING tasks' statistics only."""
    n = np.asarray(train_features).shape[0]
    if not np.isfinite(bandwidth):
        return np.full(n, 1.0 / n)
    tr, q = scale_features(train_features, features)
    if columns is not None:
        tr, q = tr[:, list(columns)], q[list(columns)]
    d2 = ((tr - q[None]) ** 2).mean(1)
    w = np.exp(-(d2 - d2.min()) / (2.0 * bandwidth ** 2))
    return w / w.sum()


def kernel_warm_start(train_features: np.ndarray, train_regret: np.ndarray, features: np.ndarray,
                      cand: WarmStartCandidate, size: int, train_ranks: np.ndarray | None = None
                      ) -> tuple[list[int], np.ndarray]:
    """(weighted greedy portfolio [size], ranking score [C], higher = better) for a new task's ``features``."""
    w = task_weights(train_features, features, cand.bandwidth, cand.columns)
    regret = np.asarray(train_regret, np.float64)
    m = regret if cand.target == "regret" else (rank_matrix(regret) if train_ranks is None else train_ranks)
    return greedy_portfolio(regret, size, w), -(w @ m)


def select_warm_start(features: np.ndarray, regret: np.ndarray, candidates: Sequence[WarmStartCandidate],
                      size: int) -> tuple[int, int]:
    """Nested choice on TRAINING tasks only (leave each one out, build on the others): (index of the candidate
    whose portfolio has the lowest mean regret over 1..size evaluations, index of the candidate whose ranking has
    the highest mean Kendall tau). Ties: the earlier candidate."""
    features, regret = np.asarray(features, np.float64), np.asarray(regret, np.float64)
    n, ranks = regret.shape[0], rank_matrix(regret)
    loss, tau = np.zeros(len(candidates)), np.zeros(len(candidates))
    for t in range(n):
        rest = np.delete(np.arange(n), t)
        for i, c in enumerate(candidates):
            order, score = kernel_warm_start(features[rest], regret[rest], features[t], c, size, ranks[rest])
            loss[i] += regret_curve(regret[t], order).mean()
            tau[i] += np.nan_to_num(kendalltau(score, -regret[t])[0])
    return int(np.argmin(loss)), int(np.argmax(tau))


def leave_tasks_out(features: np.ndarray, regret: np.ndarray, *, folds: int = 5, shuffles: int = 2, k=16,
                    size: int = 8, seed: int = 0, candidates: Sequence[WarmStartCandidate] | None = None) -> dict:
    """Per held-out task (each of ``shuffles`` random partitions into ``folds``): regret curves [size] of the
    greedy portfolio, best-on-average and the k-NN warm start, built on the other folds; Kendall tau of the
    best-on-average ranking (mean regret; and, as a second task-agnostic baseline, mean per-task rank) and the
    k-NN ranking with the task's true regrets. Means over tasks and shuffles.

    ``k``: an int, or a list of candidates chosen per outer fold by ``select_k`` on that fold's training tasks
    (a candidate >= the number of training tasks is the greedy portfolio of all of them).
    ``candidates``: also the ``kernel`` warm start, its portfolio and its ranking each chosen per outer fold among
    ``candidates`` by ``select_warm_start`` on that fold's training tasks; every candidate's own curve and tau
    are reported too (``per_candidate``: for transparency, never used to choose)."""
    features, regret = np.asarray(features, np.float64), np.asarray(regret, np.float64)
    n_tasks = regret.shape[0]
    curves = {"greedy": [], "best_on_average": [], "knn": []}
    taus = {"best_on_average": [], "average_rank": [], "knn": []}
    cand_curves = [[] for _ in candidates or ()]
    cand_taus = [[] for _ in candidates or ()]
    if candidates:
        curves["kernel"], taus["kernel"] = [], []
    rng = np.random.default_rng(seed)
    chosen, chosen_kernel = [], []
    for _ in range(shuffles):
        fold = rng.permutation(n_tasks) % folds
        for f in range(folds):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            greedy, avg = greedy_portfolio(regret[tr], size), best_on_average(regret[tr], size)
            avg_score, ranks = -regret[tr].mean(0), rank_matrix(regret[tr])
            kf = select_k(features[tr], regret[tr], k, size) if isinstance(k, (list, tuple)) else k
            chosen.append(kf)
            if candidates:
                ip, ir = select_warm_start(features[tr], regret[tr], candidates, size)
                chosen_kernel.append((ip, ir))
            for t in te:
                knn, knn_score = knn_portfolio(features[tr], regret[tr], features[t], k=kf, size=size)
                curves["greedy"].append(regret_curve(regret[t], greedy))
                curves["best_on_average"].append(regret_curve(regret[t], avg))
                curves["knn"].append(regret_curve(regret[t], knn))
                taus["best_on_average"].append(kendalltau(avg_score, -regret[t])[0])
                taus["average_rank"].append(kendalltau(-ranks.mean(0), -regret[t])[0])
                taus["knn"].append(kendalltau(knn_score, -regret[t])[0])
                if candidates:
                    for i, c in enumerate(candidates):
                        order, score = kernel_warm_start(features[tr], regret[tr], features[t], c, size, ranks)
                        cand_curves[i].append(regret_curve(regret[t], order))
                        cand_taus[i].append(kendalltau(score, -regret[t])[0])
                    curves["kernel"].append(cand_curves[ip][-1])
                    taus["kernel"].append(cand_taus[ir][-1])
    out = {"mean_regret": {m: np.mean(c, 0).tolist() for m, c in curves.items()},
           "mean_tau": {m: float(np.nanmean(v)) for m, v in taus.items()},
           "n_task_evals": len(curves["greedy"]), "k": k, "k_chosen": chosen, "folds": folds, "shuffles": shuffles}
    if candidates:
        out["candidates"] = [{"bandwidth": float(c.bandwidth), "columns": c.columns, "target": c.target}
                             for c in candidates]
        out["kernel_chosen"] = chosen_kernel
        out["per_candidate"] = [{"mean_regret": np.mean(cc, 0).tolist(), "mean_tau": float(np.nanmean(ct))}
                                for cc, ct in zip(cand_curves, cand_taus)]
    return out
