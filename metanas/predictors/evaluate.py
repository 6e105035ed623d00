"""Predictor quality: fit on ``n`` random training rows, rank the held-out rows (all the others).

One ``jax.jit(jax.vmap(fit))`` program per model fits every (seed, n) pair at once: the training rows of a seed are
the first ``max(n)`` of a permutation and the fit sees the first ``n`` of them (``fit(..., n)`` masks the rest), so
the n's of one seed are nested. Ranking metrics are host scipy (``metrics.ranking_metrics``) on the held-out rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.metrics import ranking_metrics


def train_splits(seeds: Sequence[int], n_rows: int, n_max: int) -> np.ndarray:
    """int [S, n_rows] permutation per seed; the first ``n`` entries are the training rows at size ``n``."""
    if n_max >= n_rows:
        raise ValueError(f"n_train up to {n_max} leaves no held-out rows out of {n_rows}")
    return np.stack([np.random.default_rng([int(s), 7]).permutation(n_rows) for s in seeds])


def fit_and_score(model, key: jax.Array, x: jax.Array, y: jax.Array, perms: np.ndarray,
                  n_train: Sequence[int]) -> np.ndarray:
    """float32 [S, len(n_train), N] scores of every row by ``model`` fitted on each seed's first ``n`` rows."""
    n_max = max(n_train)
    idx = jnp.asarray(perms[:, :n_max])
    ns = jnp.asarray(n_train, jnp.int32)
    keys = jax.random.split(key, perms.shape[0])

    def one(k, rows, n):
        params = model.fit(k, x[rows], y[rows], n)
        return model.score(params, x)

    per_n = jax.vmap(one, in_axes=(None, None, 0))  # the n's of one seed share its key and rows
    return np.asarray(jax.jit(jax.vmap(per_n, in_axes=(0, 0, None)))(keys, idx, ns))


def held_out_metrics(scores: np.ndarray, true: np.ndarray, perms: np.ndarray, n_train: Sequence[int],
                     top: int = 10) -> dict[int, dict[str, np.ndarray]]:
    """{n: {metric: [S] per seed}} on each seed's held-out rows (everything not in its first ``n``).

    ``scores`` is [S, len(n_train), N] (a fitted model) or [N] (a proxy, the same for every seed and n)."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for a, n in enumerate(n_train):
        per_seed: dict[str, list[float]] = {}
        for s in range(perms.shape[0]):
            test = perms[s, n:]
            sc = scores[test] if scores.ndim == 1 else scores[s, a, test]
            for k, v in ranking_metrics(sc, true[test], top=top).items():
                per_seed.setdefault(k, []).append(v)
        out[int(n)] = {k: np.asarray(v) for k, v in per_seed.items()}
    return out


def quality_table(models: Mapping[str, object], key: jax.Array, x, y, *, seeds: Sequence[int],
                  n_train: Sequence[int], proxies: Mapping[str, np.ndarray] | None = None,
                  top: int = 10) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """{model or proxy name: {n: {metric: [S]}}} for every model in ``models`` and every fixed ``proxies`` score."""
    y_np = np.asarray(y)
    perms = train_splits(seeds, len(y_np), max(n_train))
    x, yj = jnp.asarray(x), jnp.asarray(y_np)
    out = {}
    for i, (name, model) in enumerate(models.items()):
        scores = fit_and_score(model, jax.random.fold_in(key, i), x, yj, perms, n_train)
        out[name] = held_out_metrics(scores, y_np, perms, n_train, top)
    for name, score in (proxies or {}).items():
        out[name] = held_out_metrics(np.asarray(score), y_np, perms, n_train, top)
    return out
