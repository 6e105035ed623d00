"""Predictor quality: fit on ``n`` random training rows, rank the held-out rows (the others, optionally canonical).

One ``jax.jit(jax.vmap(fit))`` program per model fits every (seed, n) pair at once: the training rows of a seed are
the first ``max(n)`` of a permutation and the fit sees the first ``n`` of them (``fit(..., n)`` masks the rest), so
the n's of one seed are nested. Host models (``jittable = False``, e.g. ``trees.RandomForest``) get the same rows,
keys and n's, fitted one (seed, n) at a time on the host. Ranking metrics are host scipy
(``metrics.ranking_metrics``) on the held-out rows.

Canonical held-out rows (``groups``): rows with the same group id are the same function (e.g. NB201 cells whose
pruned encoding is equal, ``canonical_groups``); a held-out row is dropped when its group has a training row or
another held-out row, so no held-out row is scored twice under one prediction or was seen in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.metrics import ranking_metrics
from metanas.predictors.trees import is_jittable


def train_splits(seeds: Sequence[int], n_rows: int, n_max: int) -> np.ndarray:
    """int [S, n_rows] permutation per seed; the first ``n`` entries are the training rows at size ``n``."""
    if n_max >= n_rows:
        raise ValueError(f"n_train up to {n_max} leaves no held-out rows out of {n_rows}")
    return np.stack([np.random.default_rng([int(s), 7]).permutation(n_rows) for s in seeds])


def canonical_groups(codes) -> np.ndarray:
    """int [N] group id per row: rows with equal ``codes`` (e.g. pruned encodings [N, D]) share an id."""
    codes = np.asarray(codes)
    return np.unique(codes.reshape(len(codes), -1), axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def canonical_held_out(train: np.ndarray, held: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The rows of ``held`` whose group occurs in no row of ``train`` and in no other row of ``held`` (order kept)."""
    groups = np.asarray(groups)
    size = int(groups.max()) + 1
    g = groups[np.asarray(held)]
    seen_in_train = np.zeros(size, bool)
    seen_in_train[groups[np.asarray(train)]] = True
    keep = (np.bincount(g, minlength=size)[g] == 1) & ~seen_in_train[g]
    return np.asarray(held)[keep]


def fit_and_score(model, key: jax.Array, x: jax.Array, y: jax.Array, perms: np.ndarray,
                  n_train: Sequence[int], on_fit=None) -> np.ndarray:
    """float32 [S, len(n_train), N] scores of every row by ``model`` fitted on each seed's first ``n`` rows.

    ``on_fit(seed_index, n, params)``: called after each host fit (e.g. to keep a CV model's choices)."""
    n_max = max(n_train)
    keys = jax.random.split(key, perms.shape[0])
    if not is_jittable(model):  # host model: the same rows, seed keys and n's, one fit at a time
        xh, yh = np.asarray(x), np.asarray(y)
        out = np.empty((perms.shape[0], len(n_train), len(yh)), np.float32)
        for s in range(perms.shape[0]):
            for a, n in enumerate(n_train):
                rows = perms[s, :n_max]
                params = model.fit(keys[s], xh[rows], yh[rows], int(n))
                out[s, a] = model.score(params, xh)
                if on_fit is not None:
                    on_fit(s, int(n), params)
        return out
    idx = jnp.asarray(perms[:, :n_max])
    ns = jnp.asarray(n_train, jnp.int32)

    def one(k, rows, n):
        params = model.fit(k, x[rows], y[rows], n)
        return model.score(params, x)

    per_n = jax.vmap(one, in_axes=(None, None, 0))  # the n's of one seed share its key and rows
    return np.asarray(jax.jit(jax.vmap(per_n, in_axes=(0, 0, None)))(keys, idx, ns))


def held_out_metrics(scores: np.ndarray, true: np.ndarray, perms: np.ndarray, n_train: Sequence[int],
                     top: int = 10, groups: np.ndarray | None = None) -> dict[int, dict[str, np.ndarray]]:
    """{n: {metric: [S] per seed}} on each seed's held-out rows (everything not in its first ``n``; with ``groups``
    only the canonical ones, ``canonical_held_out``). ``n_held_out`` [S] counts the rows scored.

    ``scores`` is [S, len(n_train), N] (a fitted model) or [N] (a proxy, the same for every seed and n)."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for a, n in enumerate(n_train):
        per_seed: dict[str, list[float]] = {}
        for s in range(perms.shape[0]):
            test = perms[s, n:]
            if groups is not None:
                test = canonical_held_out(perms[s, :n], test, groups)
            per_seed.setdefault("n_held_out", []).append(float(len(test)))
            sc = scores[test] if scores.ndim == 1 else scores[s, a, test]
            for k, v in ranking_metrics(sc, true[test], top=top).items():
                per_seed.setdefault(k, []).append(v)
        out[int(n)] = {k: np.asarray(v) for k, v in per_seed.items()}
    return out


def quality_table(models: Mapping[str, object], key: jax.Array, x, y, *, seeds: Sequence[int],
                  n_train: Sequence[int], proxies: Mapping[str, np.ndarray] | None = None,
                  top: int = 10, groups: np.ndarray | None = None) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """{model or proxy name: {n: {metric: [S]}}} for every model in ``models`` (JAX or host) and every fixed
    ``proxies`` score; ``groups``: evaluate on canonical held-out rows only (see the module docstring)."""
    y_np = np.asarray(y)
    perms = train_splits(seeds, len(y_np), max(n_train))
    x, yj = jnp.asarray(x), jnp.asarray(y_np)
    out = {}
    for i, (name, model) in enumerate(models.items()):
        scores = fit_and_score(model, jax.random.fold_in(key, i), x, yj, perms, n_train)
        out[name] = held_out_metrics(scores, y_np, perms, n_train, top, groups)
    for name, score in (proxies or {}).items():
        out[name] = held_out_metrics(np.asarray(score), y_np, perms, n_train, top, groups)
    return out
