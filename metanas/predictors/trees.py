"""Tree-ensemble baselines on the host: random forest (scikit-learn) and gradient-boosted trees (LightGBM).

The strongest simple predictors a reviewer compares a NAS predictor against (White et al. 2021, "How powerful are
performance predictors in NAS?": boosted trees and random forests are among the best at small n). Same interface as
every predictor (``fit(key, x, y, n) -> params``: the first ``n`` rows; ``score(params, x)``; ``score_std``), but
host numpy and NOT jittable: ``jittable = False`` tells ``evaluate`` (and any caller) to fit them per (seed, n) on
the host instead of inside ``jax.jit(jax.vmap(...))``. The seed of the fit comes from ``key``.

Both need the optional ``studies`` extra (``pip install -e ".[studies]"``: scikit-learn, lightgbm). When LightGBM
is missing, ``BoostedTrees`` falls back to scikit-learn's ``HistGradientBoostingRegressor`` and says so in
``params["impl"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np


def host_seed(key: jax.Array) -> int:
    """A non-negative int32 seed drawn from a JAX key (so host models follow the caller's PRNG key)."""
    return int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))


def _rows(x, y, n) -> tuple[np.ndarray, np.ndarray]:
    n = int(n)
    if n < 2:
        raise ValueError(f"a tree model needs at least 2 training rows, got n={n}")
    return np.asarray(x, np.float64)[:n], np.asarray(y, np.float64)[:n]


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # one line that names the fix
        raise ImportError(f"{module} is not installed; install the studies extra: pip install -e '.[studies]'") from e


@dataclass(frozen=True)
class RandomForest:
    """scikit-learn ``RandomForestRegressor`` with ``trees`` trees, library defaults otherwise (no tuning).

    ``score_std`` is the spread of the per-tree predictions (the usual RF uncertainty)."""

    trees: int = 300
    n_jobs: int = 1
    jittable: ClassVar[bool] = False

    def fit(self, key: jax.Array, x, y, n) -> dict:
        ensemble = _need("sklearn.ensemble")
        xs, ys = _rows(x, y, n)
        rf = ensemble.RandomForestRegressor(n_estimators=self.trees, random_state=host_seed(key), n_jobs=self.n_jobs)
        return {"model": rf.fit(xs, ys)}

    def score(self, params: dict, x) -> np.ndarray:
        return params["model"].predict(np.asarray(x, np.float64))

    def score_std(self, params: dict, x) -> tuple[np.ndarray, np.ndarray]:
        xs = np.asarray(x, np.float64)
        per_tree = np.stack([t.predict(xs) for t in params["model"].estimators_])
        return per_tree.mean(0), per_tree.std(0)


@dataclass(frozen=True)
class BoostedTrees:
    """Gradient-boosted trees: LightGBM ``LGBMRegressor`` with its defaults (100 trees, learning rate 0.1, 31
    leaves) except ``min_child_samples`` (default 20: with 20-50 training rows no split would be possible).

    Without LightGBM: scikit-learn's ``HistGradientBoostingRegressor`` (same defaults, ``min_samples_leaf`` as
    ``min_child_samples``); ``params["impl"]`` names which one was fitted."""

    min_child_samples: int = 5
    n_jobs: int = 1
    jittable: ClassVar[bool] = False

    def fit(self, key: jax.Array, x, y, n) -> dict:
        xs, ys = _rows(x, y, n)
        seed = host_seed(key)
        try:
            import lightgbm
        except ImportError:
            ensemble = _need("sklearn.ensemble")
            m = ensemble.HistGradientBoostingRegressor(min_samples_leaf=self.min_child_samples, random_state=seed)
            return {"model": m.fit(xs, ys), "impl": "sklearn.HistGradientBoostingRegressor"}
        m = lightgbm.LGBMRegressor(min_child_samples=self.min_child_samples, random_state=seed, n_jobs=self.n_jobs,
                                   verbose=-1)
        return {"model": m.fit(xs, ys), "impl": "lightgbm.LGBMRegressor"}

    def score(self, params: dict, x) -> np.ndarray:
        return np.asarray(params["model"].predict(np.asarray(x, np.float64)), np.float64)

    def score_std(self, params: dict, x) -> tuple[np.ndarray, np.ndarray]:
        s = self.score(params, x)
        return s, np.zeros_like(s)


def is_jittable(model) -> bool:
    """False for host models (``jittable = False``); every JAX predictor is jittable."""
    return bool(getattr(model, "jittable", True))


__all__ = ["BoostedTrees", "RandomForest", "host_seed", "is_jittable"]
