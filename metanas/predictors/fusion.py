"""Fast ranking with a fitted ``Pairwise`` ensemble: the same order as ``Pairwise.score`` in fewer, cheaper ops.

``Pairwise.score`` vmaps the K members' encoders over a materialised encoding and centres each member. Here:

- ``fuse`` folds the fitted parameters once: each member's head w into its last layer (W_last @ w, so the head is a
  dot product) and the members' linear skips into one mean vector;
- ``fused_utility`` scores a batch of encodings member by member, one plain 2-D matmul per layer on contiguous
  [N, H] activations, and sums the folded heads;
- ``candidate_table`` encodes a finite candidate set once and keeps its distinct encodings (NB201 with
  ``onehot_pruned``: 9,445 of 15,625), ``rank_table`` scores those and sorts all candidates (``argsort_desc``,
  which sorts only the distinct rows' utilities) or takes the top few (``lax.top_k``).

Tried and slower on XLA:CPU: a gather-based first layer for one-hot rows, skipping the encoding (~5x); one
[D, K*H] first-layer matmul for all members, sliced per member (~1.5x: the column slices are strided copies); a
batched einsum over the members; features-major (transposed) activations.

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
    layers: tuple  # ((W [K, in, H], b [K, H]), ...) each member's encoder up to its last layer; () if linear
    head: jax.Array  # [K, H] each member's last layer folded with its head (W_last @ w); [0, 0] if linear
    skip: jax.Array  # [D] the members' mean linear term (for a linear encoder, its folded heads too)
    const: jax.Array  # [] mean over members of b_last . w (constant in x; kept so values match utility's mean)


def fuse(pred: Pairwise, params: dict) -> Fused:
    """Fold fitted ``pred.fit`` parameters (leading member axis K) for ``fused_utility``. Host or jit."""
    enc = params["enc"]
    head = jnp.einsum("khe,ke->kh", enc[-1]["kernel"], params["w"])
    const = jnp.mean(jnp.einsum("ke,ke->k", enc[-1]["bias"], params["w"]))
    skip = jnp.mean(params["v"], 0) if pred.linear_skip else jnp.zeros(params["v"].shape[1])
    if len(enc) == 1:  # linear encoder: u = x . (mean_k W_k w_k + v)
        return Fused((), jnp.zeros((0, 0)), jnp.mean(head, 0) + skip, const)
    return Fused(tuple((layer["kernel"], layer["bias"]) for layer in enc[:-1]), head, skip, const)


def fused_utility(f: Fused, x: jax.Array) -> jax.Array:
    """[N] utilities of encodings ``x`` [N, D]: ``Pairwise.score`` + a constant."""
    total = x @ f.skip + f.const
    k = f.head.shape[0]
    for m in range(k):
        a = x
        for w, b in f.layers:
            a = jax.nn.relu(a @ w[m] + b[m][None])
        total = total + a @ f.head[m] / k
    return total


class CandidateTable(NamedTuple):
    """A finite candidate set encoded once: its distinct encodings and, per candidate, the row of its encoding."""

    x: jax.Array  # float32 [U, D] distinct encodings (U = 9,445 of NB201's 15,625 cells with ``onehot_pruned``)
    inverse: jax.Array  # int32 [N] row of ``x`` of each candidate
    count: jax.Array  # int32 [U] candidates per distinct encoding
    within: jax.Array  # int32 [N] place of each candidate among those sharing its encoding (by candidate index)


def candidate_table(space, archs, kind: str = "onehot_pruned") -> CandidateTable:
    """Encode ``archs`` [N, E] once and keep the distinct rows (host; once per space, e.g. all NB201 cells)."""
    x = np.asarray(encode_archs(space, archs, kind))
    ux, inverse, count = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    by_row = np.argsort(inverse, kind="stable")  # candidates grouped by row, each group in index order
    within = np.empty(len(inverse), np.int64)
    within[by_row] = np.arange(len(inverse)) - np.repeat(np.cumsum(count) - count, count)
    return CandidateTable(*(jnp.asarray(a, d) for a, d in ((ux, jnp.float32), (inverse, jnp.int32),
                                                           (count, jnp.int32), (within, jnp.int32))))


def _int_key(u: jax.Array) -> jax.Array:
    """int32 keys in the order of the floats ``u`` (-0.0 = 0.0; NaN below -inf, so it ranks last)."""
    bits = jax.lax.bitcast_convert_type(jnp.where(u == 0, 0.0, u), jnp.int32)
    key = jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)
    return jnp.where(jnp.isnan(u), jnp.iinfo(jnp.int32).min, key)


def argsort_desc(table: CandidateTable, row_u: jax.Array) -> jax.Array:
    """Indices of all candidates by decreasing utility, from the U distinct rows' utilities ``row_u``.

    Candidates sharing an encoding come in index order; distinct encodings with equal utility in row order. The
    same order as a stable ``jnp.argsort(-row_u[table.inverse])`` up to the order within such ties, but XLA:CPU sorts
    one int32 array several times faster than floats and far faster than (value, index) pairs, so: sort the rows'
    order-preserving int32 keys, pack (rank of the key, row) into one int32 and sort that, then lay each row's
    candidates out in index order. Needs U**2 < 2**31 (U <= 46,340); larger tables take the pair sort.
    """
    u_count, n = row_u.shape[0], table.inverse.shape[0]
    if u_count * u_count >= 2**31:
        return jnp.argsort(-row_u[table.inverse]).astype(jnp.int32)
    key = _int_key(row_u)
    better = u_count - jnp.searchsorted(jnp.sort(key), key, side="right").astype(jnp.int32)  # rows above it
    rows = jnp.sort(better * u_count + jnp.arange(u_count, dtype=jnp.int32)) % u_count  # best row first
    start = jnp.zeros(u_count, jnp.int32).at[rows].set(jnp.cumsum(table.count[rows]) - table.count[rows])
    slot = start[table.inverse] + table.within
    return jnp.zeros(n, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32), unique_indices=True)


def rank_table(f: Fused, table: CandidateTable, top: int | None = None) -> jax.Array:
    """int32 indices of the table's candidates, best first: all N (``top=None``, a full sort, ``argsort_desc``) or
    the best ``top`` (``lax.top_k``, cheaper still when a search only needs the top few)."""
    row_u = fused_utility(f, table.x)
    if top is None:
        return argsort_desc(table, row_u)
    return jax.lax.top_k(row_u[table.inverse], top)[1].astype(jnp.int32)
