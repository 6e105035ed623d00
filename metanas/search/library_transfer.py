"""Syne Tune's transfer-learning HPO baselines run over a table: one adapter for every tabular transfer study.

A table is a set of configurations (``hyperparameters``: one dict per row, categorical values) with one value per row
and task; NaN marks a row a task does not hold. The target's values answer the queries; the sources' rows are the
library's ``transfer_learning_evaluations`` (each source with the rows it holds). The library sees the table's
configurations as a categorical ``config_space``; each proposal is mapped back to its row by value. A proposal the
target does not hold, or one already queried, is not charged as a query (a table search never pays twice for a row);
the adapter asks again, up to ``max_asks`` times in all.

Methods (Syne Tune 0.16, ``pip install metanas[curves]``):

* ``zero_shot``: ``ZeroShotTransfer`` (Wistuba, Schilling & Schmidt-Thieme 2015): the greedy portfolio of the
  sources' rows, in order; deterministic.
* ``bounding_box``: ``BoundingBox`` (Perrone et al. 2019): the search space shrunk to the values of each source's best
  row, random search inside it.
* ``quantile``: ``QuantileBasedSurrogateSearcher`` (Salinas, Shen & Perrone 2020, copula Thompson sampling): an
  XGBoost model of the sources' Gaussian-copula-normalised values, sampled with Thompson noise; in Syne Tune 0.16
  it does not update on the target's results.

The values are maximised (accuracy); the library is told to minimise their negation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

TRANSFER_METHODS = ("zero_shot", "bounding_box", "quantile")


def _space_and_rows(hyperparameters: Sequence[dict]):
    import pandas as pd
    from syne_tune.config_space import choice

    hp = pd.DataFrame(list(hyperparameters)).astype(str)  # categorical values as strings: one type per column
    if hp.duplicated().any():
        raise ValueError("library_transfer: two table rows have the same hyperparameters; proposals are mapped back "
                         "to rows by value, which must be unique")
    space = {c: choice(sorted(set(hp[c]))) for c in hp.columns}
    index = {tuple(r): i for i, r in enumerate(hp.itertuples(index=False, name=None))}
    return hp, space, index


def transfer_evaluations(hp, space, source_values: np.ndarray, names: Sequence[str] | None = None) -> dict:
    """``TransferLearningTaskEvaluations`` per source (rows it holds only), objective = −value (minimised)."""
    from syne_tune.optimizer.schedulers.transfer_learning.transfer_learning_task_evaluation import (
        TransferLearningTaskEvaluations)

    source_values = np.asarray(source_values, np.float64)
    names = [f"source{i}" for i in range(len(source_values))] if names is None else list(names)
    out = {}
    for name, v in zip(names, source_values):
        held = np.isfinite(v)
        if held.sum() < 2:
            continue
        out[str(name)] = TransferLearningTaskEvaluations(
            configuration_space=space, hyperparameters=hp[held].reset_index(drop=True), objectives_names=["loss"],
            objectives_evaluations=(-v[held]).reshape(-1, 1, 1, 1))
    if not out:
        raise ValueError("library_transfer: no source task holds two or more rows of the table")
    return out


def _scheduler(method: str, space: dict, evals: dict, seed: int):
    from syne_tune.optimizer.baselines import RandomSearch
    from syne_tune.optimizer.schedulers.single_objective_scheduler import SingleObjectiveScheduler
    from syne_tune.optimizer.schedulers.transfer_learning.bounding_box import BoundingBox
    from syne_tune.optimizer.schedulers.transfer_learning.quantile_based.quantile_based_searcher import (
        QuantileBasedSurrogateSearcher)
    from syne_tune.optimizer.schedulers.transfer_learning.zero_shot import ZeroShotTransfer

    if method == "zero_shot":
        return ZeroShotTransfer(config_space=space, metric="loss", transfer_learning_evaluations=evals,
                                do_minimize=True, sort_transfer_learning_evaluations=False, random_seed=seed)
    if method == "bounding_box":
        return BoundingBox(lambda cs, metric, do_minimize, random_seed: RandomSearch(
            cs, metrics=[metric], do_minimize=do_minimize, random_seed=random_seed),
            config_space=space, metric="loss", transfer_learning_evaluations=evals, do_minimize=True,
            random_seed=seed)
    if method == "quantile":
        searcher = QuantileBasedSurrogateSearcher(config_space=space, transfer_learning_evaluations=evals,
                                                  random_seed=seed)
        return SingleObjectiveScheduler(space, metric="loss", do_minimize=True, searcher=searcher,
                                        random_seed=seed)
    raise ValueError(f"library transfer method {method!r} is unknown; choose one of {', '.join(TRANSFER_METHODS)}")


class TableTransfer:
    """One target task of a table with its sources, for Syne Tune's transfer methods (see the module doc).

    ``hyperparameters``: one dict per row; ``target_values`` [N] (NaN: a row the target lacks); ``source_values``
    [S, N]; the target is never among the sources (the caller's leave-one-task-out). The quantile method's surrogate
    is fitted once per target (key 0) and reused for every seed, whose Thompson draws differ: the seeds vary the
    search, not the prior (the same convention as the pre-trained meta-learner of ``metanas.search.transfer``)."""

    def __init__(self, hyperparameters: Sequence[dict], target_values: np.ndarray, source_values: np.ndarray,
                 source_names: Sequence[str] | None = None):
        self.hp, self.space, self.index = _space_and_rows(hyperparameters)
        self.target = np.asarray(target_values, np.float64)
        if self.target.shape != (len(self.hp),):
            raise ValueError(f"library_transfer: target_values has shape {self.target.shape}; expected "
                             f"({len(self.hp)},)")
        self.evals = transfer_evaluations(self.hp, self.space, source_values, source_names)
        self._quantile = None
        for name in ("syne_tune", "syne_tune.optimizer"):
            logging.getLogger(name).setLevel(logging.ERROR)

    def _make(self, method: str, seed: int):
        import contextlib
        import io

        if method == "quantile" and self._quantile is not None:
            from syne_tune.optimizer.schedulers.single_objective_scheduler import SingleObjectiveScheduler

            self._quantile.random_state = np.random.RandomState(seed)
            return SingleObjectiveScheduler(self.space, metric="loss", do_minimize=True, searcher=self._quantile,
                                            random_seed=seed)
        with contextlib.redirect_stdout(io.StringIO()):  # BoundingBox prints its box
            sched = _scheduler(method, self.space, self.evals, 0 if method == "quantile" else int(seed))
        if method == "quantile":  # candidates: the target's own rows (the library samples 100,000 configs of the
            q = sched.searcher     # space, most of them repeats or rows the table lacks), predicted once
            held = self.hp[np.isfinite(self.target)].reset_index(drop=True)
            mu = np.asarray(q.model_pipeline.predict(held), np.float64).reshape(len(held), -1)
            q.X_candidates, q.mu_pred, q.sigma_pred = held, mu, np.full_like(mu, float(q.sigma_pred.flat[0]))
            q.random_state = np.random.RandomState(seed)
            self._quantile = q
        return sched

    def run(self, method: str, budget: int, seed: int, *, max_asks: int | None = None) -> list[int]:
        """The rows that ``method`` queries on the target, in order, at most ``budget``; fewer when the library
        stops proposing new rows within ``max_asks`` (default ``50 * budget``) asks."""
        # Syne Tune 0.16's RandomSearcher draws from numpy's global generator (it ignores its random_seed): seed
        # that generator for the run and give the caller's state back afterwards, so a seed gives one answer
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            return self._run(self._make(method, seed), method, budget, max_asks)
        finally:
            np.random.set_state(state)

    def _run(self, sched, method: str, budget: int, max_asks: int | None) -> list[int]:
        import datetime

        from syne_tune.backend.trial_status import Trial

        queried: list[int] = []
        seen: set[int] = set()
        asks, max_asks = 0, 50 * budget if max_asks is None else max_asks
        while len(queried) < budget and asks < max_asks:
            asks += 1
            if method == "zero_shot":
                cfg = sched.get_config()
            else:
                s = sched.suggest()
                cfg = None if s is None else s.config
            if cfg is None:
                break
            row = self.index.get(tuple(str(cfg[c]) for c in self.hp.columns))
            trial = Trial(trial_id=asks, config=cfg, creation_time=datetime.datetime.now())
            if row is None or row in seen or not np.isfinite(self.target[row]):
                if method != "zero_shot":  # nothing came back (no query charged)
                    sched.on_trial_error(trial)
                continue
            seen.add(row)
            queried.append(row)
            if method != "zero_shot":
                result = {"loss": float(-self.target[row])}
                sched.on_trial_result(trial, result)
                sched.on_trial_complete(trial, result)
        return queried


def queries_to_hit(order: Sequence[int], hit: np.ndarray, budget: int) -> int:
    """1-based position of the first row of ``order`` with ``hit`` true; ``budget + 1`` if none (censored)."""
    for q, row in enumerate(order[:budget], 1):
        if hit[row]:
            return q
    return budget + 1
