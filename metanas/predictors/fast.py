"""Fast ranking with a fitted ``Pairwise`` ensemble: the same order as ``Pairwise.score`` in fewer, larger ops.

``Pairwise.score`` vmaps the K members' encoders (K small matmuls per layer) over a materialised encoding. Here:

- ``fuse`` folds the fitted parameters once: the K first layers and the mean linear skip become ONE [D, K*H + 1]
  matrix, and each member's head w is folded into its last layer (W_last @ w), so the head is a dot product;
- ``fused_utility`` scores a batch of encodings with one matmul for the first layer, a batched einsum per hidden
  layer and one contraction for the folded heads;
- ``candidate_table`` encodes a finite candidate set once and keeps its distinct encodings (NB201 with
  ``onehot_pruned``: 9,445 of 15,625), ``rank_table`` scores those and sorts all candidates (or ``lax.top_k``).

(A gather-based first layer for one-hot rows, skipping the encoding, was tried and was ~5x slower on XLA:CPU.)

Scores equal ``Pairwise.score`` plus a constant (``score`` centres each member over the batch), so rankings agree.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.encodings import encode_archs
from metanas.predictors.pairwise import Pairwise


class Fused(NamedTuple):
    first: jax.Array  # [D, K*H (+1 skip column)] or [D, 1] when the encoder has a single layer
    first_b: jax.Array  # [K*H (+1)]
    hidden: tuple  # ((W [K, H, H], b [K, H]), ...) the middle layers
    head: jax.Array  # [K, H] each member's last layer folded with its head (W_last @ w)
    const: jax.Array  # [] mean over members of b_last . w (constant in x; kept so values match utility's mean)


def fuse(pred: Pairwise, params: dict) -> Fused:
    """Fold fitted ``pred.fit`` parameters (leading member axis K) for ``fused_utility``. Host or jit."""
    enc = params["enc"]
    k = params["w"].shape[0]
    head = jnp.einsum("khe,ke->kh", enc[-1]["w"], params["w"])
    const = jnp.mean(jnp.einsum("ke,ke->k", enc[-1]["b"], params["w"]))
    skip = jnp.mean(params["v"], 0) if pred.linear_skip else jnp.zeros(params["v"].shape[1])
    if len(enc) == 1:  # linear encoder: u = x . (mean_k W_k w_k + v)
        return Fused((jnp.mean(head, 0) + skip)[:, None], jnp.zeros(1), (), jnp.zeros((k, 0)), const)
    w1 = enc[0]["w"]  # [K, D, H]
    d, h = w1.shape[1], w1.shape[2]
    first = jnp.concatenate([jnp.transpose(w1, (1, 0, 2)).reshape(d, k * h), skip[:, None]], 1)
    first_b = jnp.concatenate([enc[0]["b"].reshape(k * h), jnp.zeros(1)])
    hidden = tuple((layer["w"], layer["b"]) for layer in enc[1:-1])
    return Fused(first, first_b, hidden, head, const)


def _rest(f: Fused, z: jax.Array) -> jax.Array:
    """From first-layer pre-activations z [N, K*H + 1] to utilities [N] (mean over members)."""
    if f.head.shape[1] == 0:  # linear encoder
        return z[:, 0] + f.const
    k = f.head.shape[0]
    skip = z[:, -1]
    a = jax.nn.relu(z[:, :-1])  # [N, K*H], member k in columns [k*H, (k+1)*H)
    h = a.shape[1] // k
    total = skip + f.const
    for m in range(k):  # one [N, H] @ [H, H] matmul per member and layer (XLA:CPU's batched dot is slower here)
        am = a[:, m * h:(m + 1) * h]
        for w, b in f.hidden:
            am = jax.nn.relu(am @ w[m] + b[m][None])
        total = total + am @ f.head[m] / k
    return total


def fused_utility(f: Fused, x: jax.Array) -> jax.Array:
    """[N] utilities of encodings ``x`` [N, D]: ``Pairwise.score`` + a constant."""
    return _rest(f, x @ f.first + f.first_b[None])


class CandidateTable(NamedTuple):
    """A finite candidate set encoded once: its distinct encodings and, per candidate, the row of its encoding."""

    x: jax.Array  # float32 [U, D] distinct encodings (U = 9,445 of NB201's 15,625 cells with ``onehot_pruned``)
    inverse: jax.Array  # int32 [N] row of ``x`` of each candidate


def candidate_table(space, archs, kind: str = "onehot_pruned") -> CandidateTable:
    """Encode ``archs`` [N, E] once and keep the distinct rows (host; once per space, e.g. all NB201 cells)."""
    x = np.asarray(encode_archs(space, archs, kind))
    ux, inverse = np.unique(x, axis=0, return_inverse=True)
    return CandidateTable(jnp.asarray(ux), jnp.asarray(inverse.reshape(-1), jnp.int32))


def rank_table(f: Fused, table: CandidateTable, top: int | None = None) -> jax.Array:
    """int32 indices of the table's candidates, best first: all N (``top=None``, a full sort) or the best ``top``
    (``lax.top_k``, far cheaper than sorting everything when a search only needs the top few)."""
    u = fused_utility(f, table.x)[table.inverse]
    if top is None:
        return jnp.argsort(-u).astype(jnp.int32)
    return jax.lax.top_k(u, top)[1].astype(jnp.int32)
