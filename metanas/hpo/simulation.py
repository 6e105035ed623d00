"""HPO on a recorded task x config table (TabRepo): objectives, warm starts, meta-learner, regret curves.

Every (task, config) of TabRepo has a recorded test error, so a search is *simulated*: evaluating config c on
task t returns its normalised regret (``normalized_regret``: 0 = best of the 104 configs, 1 = worst).
TabRepo records no learning curves, so for successive halving / Hyperband a lower fidelity is modelled as
**synthetic** noise: at fidelity r (fraction of the full budget) the observed loss is
``regret + noise * (1 - r) * eps`` with ``eps ~ N(0, 1)`` fixed per (seed, task, config, fidelity).
Only the full-fidelity value is real; the cost of an evaluation is r (full-evaluation equivalents).

Warm starts (all leave-tasks-out: the target task is never among the past tasks):
- ``knn_warm_configs``: best config of each of the k nearest past tasks by OpenML meta-features
  (Feurer et al. 2015).
- ``fit_meta_learner``: an RFF-ridge regression (task meta-features ++ config encoding -> per-task rank) over the
  past tasks; its prediction for the new task ranks configs zero-shot and is the GP prior mean for BO.
- ``autosklearn_warm_configs``: auto-sklearn's own meta-data as past tasks (the anchor): nearest
  auto-sklearn data sets by L1 distance on min-max-scaled meta-features that OpenML qualities determine,
  their incumbents mapped to LightGBM where mappable, then snapped to the nearest of the 104 configs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from metanas.hpo.schedulers import Trial, incumbent_curve
from metanas.hpo.surrogate import fit_rff_ridge, rff_predict
from metanas.hpo.warmstart import nearest_tasks, scale_features


def table_objective(regret_row: np.ndarray, *, noise: float, max_fidelity: float, seed: int,
                    task_index: int) -> Callable[[int, float], float]:
    """evaluate(config_index, fidelity) for one task: real regret at full fidelity, synthetic noise below."""

    def evaluate(c: int, fidelity: float) -> float:
        r = min(fidelity / max_fidelity, 1.0)
        if r >= 1.0 or noise == 0:
            return float(regret_row[c])
        eps = np.random.default_rng([seed, task_index, int(c), int(round(r * 1e6))]).standard_normal()
        return float(regret_row[c] + noise * (1 - r) * eps)

    return evaluate


def regret_at_budgets(history: Sequence[Trial], true_loss: Callable[[Any], float], budget: int) -> np.ndarray:
    """[budget]: true regret of the incumbent once 1, 2, ..., budget full-evaluation equivalents are spent
    (NaN before the first evaluation has finished)."""
    inc = incumbent_curve(history, true_loss)
    spent = np.cumsum([t.cost for t in history])
    out = np.full(budget, np.nan)
    for b in range(1, budget + 1):
        done = np.nonzero(spent <= b + 1e-9)[0]
        if len(done):
            out[b - 1] = inc[done[-1]]
    return out


def run_until(method: Any, propose: Any, evaluate: Callable, budget: float, seed: int) -> list[Trial]:
    """Repeat ``method.run`` (one random-search trial / SH bracket / Hyperband iteration) until ``budget``
    full-evaluation equivalents are spent or the candidates run out."""
    rng = np.random.default_rng(seed)
    history: list[Trial] = []
    while sum(t.cost for t in history) < budget:
        n = len(history)
        method.run(propose, evaluate, rng, history)
        if len(history) == n:
            break
    return history


def knn_warm_configs(task_features: np.ndarray, best_config: np.ndarray, target: int, past: Sequence[int],
                     k: int) -> list[int]:
    """Best configs of the k past tasks nearest to ``target`` (Euclidean on standardised meta-features)."""
    past = np.asarray(past)
    ps, qs = scale_features(task_features[past], task_features[target], "zscore")
    out: list[int] = []
    for i in nearest_tasks(qs, ps, len(past)):
        c = int(best_config[past[i]])
        if c not in out:
            out.append(c)
        if len(out) == k:
            break
    return out


def rank_targets(regret: np.ndarray) -> np.ndarray:
    """Per-task rank of each config scaled to [0, 1] (robust to the heavy tails of min-max regret)."""
    from scipy.stats import rankdata

    return np.stack([(rankdata(r) - 1) / max(len(r) - 1, 1) for r in regret])


def average_rank_configs(regret: np.ndarray, past: Sequence[int], k: int) -> list[int]:
    """The k configs of best mean rank over the past tasks (task-agnostic zero-shot portfolio)."""
    return [int(c) for c in np.argsort(rank_targets(regret[np.asarray(past)]).mean(0), kind="stable")[:k]]


def fit_meta_learner(task_features: np.ndarray, config_features: np.ndarray, target: np.ndarray,
                     past: Sequence[int], *, seed: int, num_features: int = 512, lengthscale: float = 4.0,
                     l2: float = 1e-3) -> Callable[[int | np.ndarray], np.ndarray]:
    """RFF ridge on rows (task, config) of the past tasks -> ``target`` [T, C] (lower = better; the study
    uses ``rank_targets``); returns ``predict(task_features_row) -> [C]``. Defaults chosen by 5-fold
    leave-tasks-out Spearman correlation on TabRepo among lengthscale {1, 2, 4, 8} x l2 {1e-4, 1e-3, 1e-2}."""
    past = np.asarray(past)
    t, c = len(past), config_features.shape[0]
    # meta-features z-scored with the PAST (training) tasks' statistics only: the query task never moves the scale
    # (an affine re-scaling, so raw or already-standardised ``task_features`` give the same model)
    feats = np.asarray(task_features, np.float64)
    mu, sd = feats[past].mean(0), feats[past].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    x = np.concatenate([np.repeat((feats[past] - mu) / sd, c, 0), np.tile(config_features, (t, 1))], 1)
    model = fit_rff_ridge(x, target[past].reshape(-1), seed=seed, num_features=num_features,
                          lengthscale=lengthscale, l2=l2)

    def predict(features_row: np.ndarray) -> np.ndarray:
        q = (np.asarray(features_row, np.float64) - mu) / sd
        xq = np.concatenate([np.repeat(q[None], c, 0), config_features], 1)
        return rff_predict(model, xq)

    return predict


def snap_to_configs(hp: dict, config_features: np.ndarray, encode: Callable[[dict], np.ndarray],
                    columns: slice = slice(0, 4)) -> int:
    """Index of the table config nearest to ``hp`` (Euclidean on standardised encoded ``columns``)."""
    sd = config_features[:, columns].std(0)
    sd = np.where(sd > 0, sd, 1.0)
    d = np.sum(((config_features[:, columns] - encode(hp)[columns][None]) / sd[None]) ** 2, 1)
    return int(np.argmin(d))


def autosklearn_warm_configs(query_mf: dict[str, float], askl_names: Sequence[str], askl_features: np.ndarray,
                             askl_feature_names: Sequence[str], mapped: Sequence[int | None], k: int, *,
                             exclude_names: Sequence[str] = ()) -> tuple[list[int], int]:
    """Up to k distinct table configs from the nearest auto-sklearn data sets whose incumbent is mappable.

    Distance: L1 on min-max-scaled meta-features (auto-sklearn's rescaling), over the features that
    ``query_mf`` defines and that are finite for the query. Returns (configs, data sets visited).
    """
    cols = [j for j, n in enumerate(askl_feature_names) if n in query_mf and math.isfinite(query_mf[n])]
    q = np.array([query_mf[askl_feature_names[j]] for j in cols])
    ps, qs = scale_features(askl_features[:, cols], q, "minmax")
    excl = [i for i, n in enumerate(askl_names) if n in set(exclude_names)]
    out, visited = [], 0
    for i in nearest_tasks(qs, ps, len(askl_names), p=1.0, exclude=excl):
        visited += 1
        c = mapped[i]
        if c is not None and c not in out:
            out.append(int(c))
        if len(out) == k:
            break
    return out, visited


STRATEGIES = ("random", "random+knn", "random+avg", "sh", "sh+knn", "bo", "bo+meta", "random+askl",
              "default+random")


def strategy_curves(strategy: str, *, regret: np.ndarray, config_features: np.ndarray, target: int,
                    seeds: Sequence[int], budget: int, knn: Sequence[int] = (), meta_prior: np.ndarray | None = None,
                    askl: Sequence[int] = (), avg: Sequence[int] = (), default: int = 0, sh: Any = None, noise: float = 0.1) -> np.ndarray:
    """[len(seeds), budget] regret curves of one strategy on task ``target``.

    random / sh / bo are cold starts (no meta-data); ``+knn`` puts the k-NN warm-start configs first,
    ``+avg`` the k configs of best mean rank over all past tasks (a task-agnostic portfolio),
    ``bo+meta`` is GP-EI with the meta-learner's prediction as prior mean (zero-shot ranking before the
    first result), ``random+askl`` the auto-sklearn anchor, ``default+random`` evaluates AutoGluon's default
    LightGBM (c1) first.
    """
    from metanas.hpo.samplers import CandidateSampler
    from metanas.hpo.schedulers import RandomSearch

    base, _, warm = strategy.partition("+")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    warm_list = {"knn": tuple(knn), "askl": tuple(askl), "avg": tuple(avg), "random": (default,)}.get(warm, ())
    if base == "default":
        base = "random"
    model = base == "bo"
    sampler = CandidateSampler(config_features, warm=warm_list if not model else (), model=model,
                               prior=meta_prior if warm == "meta" else None)
    method = sh if base == "sh" else RandomSearch(n_trials=1, max_fidelity=1.0)
    max_fid = sh.max_fidelity if base == "sh" else 1.0
    out = []
    for s in seeds:
        evaluate = table_objective(regret[target], noise=noise if base == "sh" else 0.0, max_fidelity=max_fid,
                                   seed=s, task_index=target)
        hist = run_until(method, sampler, evaluate, budget, seed=s)
        out.append(regret_at_budgets(hist, lambda c: float(regret[target, c]), budget))
    return np.stack(out)
