"""Derive a discrete architecture from alphas (host numpy, never traced)."""

from __future__ import annotations

import numpy as np

from metanas.search_spaces.darts_cnn import DARTS_EDGES, EDGES_PER_CELL


def softmax_np(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    e = np.exp(a - a.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def derive_argmax(alpha: np.ndarray) -> np.ndarray:
    """NB201 / toy: the strongest op on every edge (``none`` included, as xautodl ``genotype()``), int32 [E]."""
    return np.argmax(np.asarray(alpha), axis=-1).astype(np.int32)


def derive_darts(alphas: dict, ops: tuple[str, ...], k: int = 2) -> np.ndarray:
    """DARTS genotype rule (Liu et al. 2019, sec. 2.4): per node keep the ``k`` incoming edges with the largest
    strongest non-``none`` weight ``max_{o != none} softmax(alpha_e)_o`` and give each its strongest non-``none`` op.

    Returns the ``DartsCNNSpace`` arch ``[28]`` (normal then reduce; unkept edges hold the ``none`` index).
    """
    none = ops.index("none")
    arch = np.full((2 * EDGES_PER_CELL,), none, np.int32)
    for c, name in enumerate(("normal", "reduce")):
        w = softmax_np(alphas[name])
        w[:, none] = -np.inf
        for node in sorted({d for d, _ in DARTS_EDGES}):
            idx = [e for e, (d, _) in enumerate(DARTS_EDGES) if d == node]
            strength = np.array([w[e].max() for e in idx])
            for j in np.argsort(-strength, kind="stable")[:k]:
                e = idx[j]
                arch[c * EDGES_PER_CELL + e] = int(np.argmax(w[e]))
    return arch
