"""Model selection on the training rows only: ``CVSelect`` picks one of several predictors by k-fold CV.

The candidate set is the hyperparameter grid (e.g. ``Pairwise`` weight decays) and, through ``Columns``, feature
subsets. Selection sees only the first ``n`` rows passed to ``fit`` (the training architectures), never the rows it
will later rank, and is a pure, jittable and vmappable function of ``(key, x, y, n)`` like every other predictor, so
``evaluate.quality_table`` runs it per (seed, n) like any model. ``CVBlend`` is the host counterpart: CV over blends
of JAX predictors and host models (random forest, boosted trees), fitted per (seed, n) on the host.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from metanas.predictors.trees import is_jittable


def masked_kendall_tau(score: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Kendall tau-a of ``score`` against ``y`` over the rows where ``mask`` (pairs of masked rows only)."""
    ds = jnp.sign(score[:, None] - score[None, :])
    dy = jnp.sign(y[:, None] - y[None, :])
    pm = (mask[:, None] & mask[None, :]).astype(jnp.float32)
    pairs = jnp.maximum(pm.sum() - mask.sum(), 1.0)  # ordered pairs, diagonal excluded (its sign product is 0)
    return jnp.sum(ds * dy * pm) / pairs


@dataclass(frozen=True)
class Columns:
    """``model`` on a subset of the feature columns: ``keep`` (bool tuple, one per column; others set to 0).

    Zeroed columns carry no signal, so for the MLP-based predictors this is the model on the kept columns alone,
    with the same input width for every candidate (which keeps one jitted program)."""

    model: object
    keep: tuple[bool, ...]

    def _x(self, x: jax.Array) -> jax.Array:
        return x * jnp.asarray(self.keep, x.dtype).reshape((1,) * (x.ndim - 1) + (-1,))

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n) -> dict:
        return self.model.fit(key, self._x(x), y, n)

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.model.score_std(params, self._x(x))

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return self.score_std(params, x)[0]


@dataclass(frozen=True)
class CVSelect:
    """Choose among ``candidates`` by mean ``folds``-fold CV Kendall tau on the first ``n`` rows, then use the chosen
    one fitted on all ``n`` rows. Costs ``len(candidates) * (folds + 1)`` fits.

    ``final`` (optional, one per candidate): the model fitted on all ``n`` rows for the chosen candidate, e.g. an
    ensemble of the single model that was cross-validated (CV with single members is cheaper).

    The rows are split into folds by position (row i in fold i % folds): the training rows ``evaluate`` passes are a
    random permutation, so this is a random split. ``params["cv_tau"]`` keeps every candidate's CV score.
    """

    candidates: tuple
    folds: int = 3
    final: tuple | None = None

    def _final(self) -> tuple:
        if self.final is not None and len(self.final) != len(self.candidates):
            raise ValueError(f"CVSelect: {len(self.final)} final models for {len(self.candidates)} candidates")
        return self.candidates if self.final is None else self.final

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n) -> dict:
        pos = jnp.arange(x.shape[0])
        inside = pos < n
        fold = pos % self.folds

        def cv_tau(model, k):
            taus = []
            for f in range(self.folds):
                test = inside & (fold == f)
                train = inside & ~test
                order = jnp.argsort(jnp.where(train, 0, 1), stable=True)  # this fold's training rows first
                params = model.fit(jax.random.fold_in(k, f), x[order], y[order], train.sum())
                taus.append(masked_kendall_tau(model.score(params, x), y, test))
            return jnp.mean(jnp.stack(taus))

        keys = jax.random.split(key, 2)
        cv = jnp.stack([cv_tau(m, jax.random.fold_in(keys[0], c)) for c, m in enumerate(self.candidates)])
        members = tuple(m.fit(jax.random.fold_in(keys[1], c), x, y, n) for c, m in enumerate(self._final()))
        return {"members": members, "best": jnp.argmax(cv), "cv_tau": cv}

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        pick = jax.nn.one_hot(params["best"], len(self.candidates))
        outs = [m.score_std(p, x) for m, p in zip(self._final(), params["members"])]
        return (sum(pick[c] * mean for c, (mean, _) in enumerate(outs)),
                sum(pick[c] * std for c, (_, std) in enumerate(outs)))

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return self.score_std(params, x)[0]


@dataclass(frozen=True)
class Blend:
    """Weighted sum of ``models``' scores, each standardised by its mean and sd over the n training rows (so the
    blend of a pairwise utility and a ridge prediction is on one scale). Uncertainty: the weighted member spreads."""

    models: tuple
    weights: tuple[float, ...] | None = None  # None: equal weights

    def _w(self) -> tuple[float, ...]:
        return self.weights if self.weights is not None else tuple(1.0 / len(self.models) for _ in self.models)

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n) -> dict:
        m = (jnp.arange(x.shape[0]) < n).astype(jnp.float32)
        cnt = jnp.maximum(m.sum(), 1.0)
        out = []
        for i, model in enumerate(self.models):
            p = model.fit(jax.random.fold_in(key, i), x, y, n)
            s = model.score(p, x)
            mu = (m @ s) / cnt
            sd = jnp.sqrt((m @ (s - mu) ** 2) / cnt) + 1e-8
            out.append({"params": p, "mu": mu, "sd": sd})
        return {"members": tuple(out)}

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = std = 0.0
        for w, model, p in zip(self._w(), self.models, params["members"]):
            s, sd = model.score_std(p["params"], x)
            mean = mean + w * (s - p["mu"]) / p["sd"]
            std = std + w * sd / p["sd"]
        return mean, std

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return self.score_std(params, x)[0]


@functools.lru_cache(maxsize=None)
def _jitted(model, method: str):
    """One ``jax.jit`` per (frozen, hashable) model and method, so host loops reuse the compiled program."""
    return jax.jit(getattr(model, method))


def fit_any(model, key: jax.Array, x, y, n):
    """``model.fit`` jitted for a JAX predictor (``n`` traced: one program for every n), plain for a host one."""
    if is_jittable(model):
        return _jitted(model, "fit")(key, jnp.asarray(x), jnp.asarray(y), jnp.asarray(n, jnp.int32))
    return model.fit(key, np.asarray(x), np.asarray(y), int(n))


def score_any(model, params, x) -> np.ndarray:
    """float64 [N] host scores of ``model`` (jitted for a JAX predictor)."""
    if is_jittable(model):
        return np.asarray(_jitted(model, "score")(params, jnp.asarray(x)), np.float64)
    return np.asarray(model.score(params, np.asarray(x)), np.float64)


@dataclass(frozen=True)
class CVBlend:
    """Host model: choose among equal-weight blends of ``bases`` by ``folds``-fold CV Kendall tau on the first ``n``
    rows, then fit the chosen blend's bases on all ``n`` rows. Bases may be JAX predictors or host models (e.g.
    ``trees.RandomForest``), so this is how a pairwise model is blended with trees; ``jittable = False``.

    ``combos``: the candidates, each a tuple of base indices; a blend is the mean of its bases' scores, each
    standardised by its mean / sd over the rows that base was fitted on (as ``Blend``). Every base is fitted once per
    fold (``len(bases) * folds`` fits) and the blends are scored from those fits, so adding candidates costs no fits.
    ``final`` (optional, one per base): the model fitted on all ``n`` rows in place of the base (e.g. an ensemble).
    Folds by position (row i in fold i % folds) of the training rows, a random split when the rows are a random
    permutation (as ``evaluate`` passes them). ``params["cv_tau"]`` keeps every candidate's mean CV tau.
    """

    bases: tuple
    combos: tuple[tuple[int, ...], ...]
    folds: int = 3
    final: tuple | None = None
    jittable: ClassVar[bool] = False

    def __post_init__(self):  # a config gives lists: keep the frozen model hashable
        object.__setattr__(self, "bases", tuple(self.bases))
        object.__setattr__(self, "combos", tuple(tuple(int(b) for b in c) for c in self.combos))
        if self.final is not None:
            object.__setattr__(self, "final", tuple(self.final))
        bad = [c for c in self.combos if not c or not all(0 <= b < len(self.bases) for b in c)]
        if bad:
            raise ValueError(f"CVBlend combos {bad} name no base or a base outside 0..{len(self.bases) - 1}")

    def _final(self) -> tuple:
        if self.final is not None and len(self.final) != len(self.bases):
            raise ValueError(f"CVBlend: {len(self.final)} final models for {len(self.bases)} bases")
        return self.bases if self.final is None else self.final

    def cv_scores(self, key: jax.Array, x, y, n) -> np.ndarray:
        """float64 [len(combos), folds] Kendall tau of every candidate on every fold (training rows only)."""
        x, y, n = np.asarray(x), np.asarray(y), int(n)
        pos = np.arange(x.shape[0])
        fold = pos % self.folds
        std = np.zeros((len(self.bases), self.folds, x.shape[0]))  # each base's standardised scores per fold
        for f in range(self.folds):
            test = (pos < n) & (fold == f)
            train = (pos < n) & ~test
            order = np.argsort(~train, kind="stable")  # this fold's training rows first; the array keeps its shape
            for b, model in enumerate(self.bases):
                k = jax.random.fold_in(jax.random.fold_in(key, b), f)
                s = score_any(model, fit_any(model, k, x[order], y[order], train.sum()), x)
                std[b, f] = (s - s[train].mean()) / (s[train].std() + 1e-12)
        out = np.zeros((len(self.combos), self.folds))
        for c, combo in enumerate(self.combos):
            for f in range(self.folds):
                test = (pos < n) & (fold == f)
                out[c, f] = stats.kendalltau(std[list(combo), f][:, test].mean(0), y[test]).statistic
        return np.nan_to_num(out, nan=-1.0)  # a constant blend (tau undefined) is never chosen

    def fit(self, key: jax.Array, x, y, n) -> dict:
        k_cv, k_fit = jax.random.split(key)
        # one candidate: nothing to choose, so no CV fits (cv_tau NaN)
        cv = self.cv_scores(k_cv, x, y, n).mean(1) if len(self.combos) > 1 else np.full(1, np.nan)
        best = int(np.argmax(cv)) if len(self.combos) > 1 else 0
        members = {}
        for b in self.combos[best]:
            model = self._final()[b]
            p = fit_any(model, jax.random.fold_in(k_fit, b), x, y, n)
            s = score_any(model, p, x)[: int(n)]
            members[b] = {"params": p, "mu": float(s.mean()), "sd": float(s.std()) + 1e-12}
        return {"best": best, "cv_tau": cv, "members": members}

    def score(self, params: dict, x) -> np.ndarray:
        return np.mean([(score_any(self._final()[b], m["params"], x) - m["mu"]) / m["sd"]
                        for b, m in params["members"].items()], 0)

    def score_std(self, params: dict, x) -> tuple[np.ndarray, np.ndarray]:
        s = self.score(params, x)
        return s, np.zeros_like(s)
