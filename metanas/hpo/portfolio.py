"""Portfolios and meta-learned warm starts on a task x config regret matrix (host numpy; e.g. TabRepo).

- ``greedy_portfolio``: Feurer et al. (2022, auto-sklearn 2.0, "portfolio building"): add configurations one by
  one, each time the one that minimises the mean over the training tasks of the best (lowest) normalised regret
  reached by the portfolio so far.
- ``best_on_average``: the configurations with the lowest mean normalised regret over the training tasks.
- ``knn_portfolio``: the meta-learned warm start -- the greedy portfolio built on the ``k`` training tasks nearest
  to the new task by meta-features, which are standardised with the TRAINING tasks' statistics only
  (``metanas.hpo.warmstart.scale_features``); its ranking of all configs is their mean regret over those tasks.
- ``leave_tasks_out``: folds x shuffles of held-out tasks; regret of each warm start after 1..n evaluations and
  Kendall tau of each learnt ranking with the held-out task's true regrets.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.stats import kendalltau

from metanas.hpo.warmstart import nearest_tasks, scale_features


def greedy_portfolio(regret: np.ndarray, size: int) -> list[int]:
    """Greedy portfolio [size] of column indices of ``regret`` [T, C] (ties: lowest index)."""
    regret = np.asarray(regret, np.float64)
    best = np.full(regret.shape[0], np.inf)
    out: list[int] = []
    for _ in range(min(size, regret.shape[1])):
        cand = np.minimum(best[:, None], regret).mean(0)
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


def leave_tasks_out(features: np.ndarray, regret: np.ndarray, *, folds: int = 5, shuffles: int = 2, k=16,
                    size: int = 8, seed: int = 0) -> dict:
    """Per held-out task (each of ``shuffles`` random partitions into ``folds``): regret curves [size] of the
    greedy portfolio, best-on-average and the k-NN warm start, built on the other folds; Kendall tau of the
    best-on-average ranking and the k-NN ranking with the task's true regrets. Means over tasks and shuffles.

    ``k``: an int, or a list of candidates chosen per outer fold by ``select_k`` on that fold's training tasks
    (a candidate >= the number of training tasks is the greedy portfolio of all of them)."""
    features, regret = np.asarray(features, np.float64), np.asarray(regret, np.float64)
    n_tasks = regret.shape[0]
    curves = {"greedy": [], "best_on_average": [], "knn": []}
    taus = {"best_on_average": [], "knn": []}
    rng = np.random.default_rng(seed)
    chosen = []
    for _ in range(shuffles):
        fold = rng.permutation(n_tasks) % folds
        for f in range(folds):
            tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            greedy, avg = greedy_portfolio(regret[tr], size), best_on_average(regret[tr], size)
            avg_score = -regret[tr].mean(0)
            kf = select_k(features[tr], regret[tr], k, size) if isinstance(k, (list, tuple)) else k
            chosen.append(kf)
            for t in te:
                knn, knn_score = knn_portfolio(features[tr], regret[tr], features[t], k=kf, size=size)
                curves["greedy"].append(regret_curve(regret[t], greedy))
                curves["best_on_average"].append(regret_curve(regret[t], avg))
                curves["knn"].append(regret_curve(regret[t], knn))
                taus["best_on_average"].append(kendalltau(avg_score, -regret[t])[0])
                taus["knn"].append(kendalltau(knn_score, -regret[t])[0])
    return {"mean_regret": {m: np.mean(c, 0).tolist() for m, c in curves.items()},
            "mean_tau": {m: float(np.nanmean(v)) for m, v in taus.items()},
            "n_task_evals": len(curves["greedy"]), "k": k, "k_chosen": chosen, "folds": folds, "shuffles": shuffles}
