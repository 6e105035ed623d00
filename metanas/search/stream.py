"""Streaming top-k ranking of a space too large to table: the DARTS CNN space (about 1.08e18 genotypes).

``stream_topk`` runs ONE jitted ``lax.scan`` over chunks of candidates; each step generates a chunk of candidate ids,
scores them with the fused ensemble (``metanas.predictors.fusion.Fused``) and merges them into a running top-k with one
``lax.top_k`` over [k running + chunk]. Memory is O(chunk + k), independent of the number of candidates.

Candidate ids. A DARTS cell is numbered by its index ``h`` in [0, P) (P = 1,037,664,180 with the 8 DARTS ops): mixed
radix over its nodes 2..5 (node 2 most significant), one digit per node in [0, C(i, 2) * K'^2) for a node with i
inputs and K' non-``none`` ops: ``digit = (pair * K' + op_a) * K' + op_b`` where ``pair`` numbers the node's input
pairs (s1 < s2) in lexicographic order and ``op_a`` / ``op_b`` (among the non-``none`` ops) sit on s1 / s2. A genotype
is the pair (normal index, reduction index); its integer id is ``normal * P + reduce`` (``genotype_ids``), which
needs more than 32 bits, so on device an id is two uint32 halves and never a 64-bit integer (JAX's default).

- ``key=None``: enumerate the ids ``start, start + 1, ...`` in order (distinct by construction);
- a PRNG ``key``: sample WITHOUT replacement: the counter 0, 1, ... is mapped through a keyed pseudo-random
  permutation of all P^2 genotypes (a 4-round Feistel network on the two cell indices, x -> (R, (L + F(R)) mod P),
  a bijection for any round function F), so no genotype is drawn twice and no duplicate handling is needed.
  Each draw is (pseudo-)uniform over the space; the network is a fixed cheap mixing function, not a cryptographic one.

Scoring. The first layer of every member is linear in a categorical encoding (``onehot``, ``onehot_pruned``,
``adjacency``: each is a sum of per-node parts), so it is folded once (``fold_first_layer``) into one table per
member with a row per (cell, node, node choice): 2 x (49 + 147 + 294 + 490) = 1,960 rows. A candidate's first-layer
pre-activation is then the sum of the 8 rows its node digits pick (a gather-sum, the bias folded into the first
node's rows), instead of a [D=224] x [H] matmul on its one-hot encoding. The linear skip term and the constant are
folded the same way. Deeper layers and the folded heads are ``Fused``'s own. ``first_layer="dense"`` instead decodes
each candidate to its arch, encodes it (``encode_archs``) and scores it with ``fused.fused_utility`` (any encoding,
including the non-additive ``path`` ones): the reference the gather-sum is tested against.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.encodings import encode_archs
from metanas.predictors.fusion import Fused, fused_utility
from metanas.search_spaces.darts_cnn import EDGES_PER_CELL, NUM_INPUTS, NUM_NODES, DartsCNNSpace

ADDITIVE_ENCODINGS = ("onehot", "onehot_pruned", "adjacency")  # a sum of per-node parts: gather-sum first layer
_NODE_START = tuple(sum(NUM_INPUTS + j for j in range(i)) for i in range(NUM_NODES))  # first edge of each node
_ROUNDS = 4


class StreamResult(NamedTuple):
    scores: jax.Array  # float32 [k] best first: ``fused.fused_utility`` (= ``Pairwise.score`` + a constant)
    ids: jax.Array  # uint32 [k, 2] (normal-cell index, reduction-cell index); ``genotype_ids`` makes integers
    archs: jax.Array  # int32 [k, 28] the genotypes in the space's arch layout


class StreamScorer(NamedTuple):
    """The fused ensemble with its first layer folded into per-node-choice tables (``fold_first_layer``)."""

    first: jax.Array  # [K, R, H] first-layer pre-activation of member m, per node-choice row (bias in group 0)
    skip: jax.Array  # [R] linear skip term per node-choice row (the constant and base in group 0)
    layers: tuple  # ((W [K, H, H'], b [K, H']), ...) the members' later hidden layers
    head: jax.Array  # [K, H_last] the folded heads ([0, 0]: linear encoder, the skip term is everything)


# ---- ids <-> archs -------------------------------------------------------------------------------------------------
def _check_space(space) -> None:
    if not isinstance(space, DartsCNNSpace):
        raise ValueError(f"stream ranking needs a DartsCNNSpace, got {type(space).__name__}")


def node_radices(space: DartsCNNSpace) -> tuple[int, ...]:
    """Choices per node (nodes 2..5): C(inputs, 2) * K'^2 = (49, 147, 294, 490) with the 8 DARTS ops."""
    k = len(space.ops) - 1
    return tuple(math.comb(NUM_INPUTS + i, 2) * k * k for i in range(NUM_NODES))


def cell_count(space: DartsCNNSpace) -> int:
    """P: cells per cell type (the space holds P**2 genotypes)."""
    return math.prod(node_radices(space))


@functools.lru_cache(maxsize=None)
def _node_choices(space: DartsCNNSpace, i: int) -> np.ndarray:
    """int32 [R_i, inputs of node i]: the op on each incoming edge of node ``i`` (0-based) for each digit."""
    n_in, real = NUM_INPUTS + i, space._real_ops()
    rows = []
    for s1, s2 in itertools.combinations(range(n_in), 2):
        for a in real:
            for b in real:
                row = np.full(n_in, space.none_index, np.int32)
                row[s1], row[s2] = a, b
                rows.append(row)
    return np.stack(rows)


def _digits(space: DartsCNNSpace, h: jax.Array) -> list[jax.Array]:
    """uint32 node digits (nodes 2..5) of cell indices ``h`` uint32 [N]."""
    out = []
    for r in reversed(node_radices(space)[1:]):
        out.append(h % jnp.uint32(r))
        h = h // jnp.uint32(r)
    return [h] + out[::-1]


def decode_cells(space: DartsCNNSpace, h: jax.Array) -> jax.Array:
    """int32 [N, 14] cell edges (``DARTS_EDGES`` order) of cell indices ``h`` uint32 [N]. Jittable."""
    return jnp.concatenate([jnp.asarray(_node_choices(space, i))[d.astype(jnp.int32)]
                            for i, d in enumerate(_digits(space, h))], axis=1)


def decode(space: DartsCNNSpace, ids: jax.Array) -> jax.Array:
    """int32 [N, 28] archs of ids uint32 [N, 2] (normal index, reduction index). Jittable."""
    ids = jnp.asarray(ids, jnp.uint32)
    return jnp.concatenate([decode_cells(space, ids[:, 0]), decode_cells(space, ids[:, 1])], axis=1)


def arch_ids(space: DartsCNNSpace, archs) -> np.ndarray:
    """int64 [N, 2] (normal index, reduction index) of valid archs int [N, 28] (host; the inverse of ``decode``)."""
    _check_space(space)
    archs = np.atleast_2d(np.asarray(archs))
    code = {int(op): c for c, op in enumerate(space._real_ops())}
    k, radices = len(code), node_radices(space)
    out = np.zeros((len(archs), 2), np.int64)
    for n, arch in enumerate(archs):
        arch = space.validate(arch)
        for cell in range(2):
            h = 0
            for i in range(NUM_NODES):
                s = cell * EDGES_PER_CELL + _NODE_START[i]
                edges = arch[s:s + NUM_INPUTS + i]
                s1, s2 = np.flatnonzero(edges != space.none_index)
                pair = list(itertools.combinations(range(NUM_INPUTS + i), 2)).index((s1, s2))
                h = h * radices[i] + (pair * k + code[int(edges[s1])]) * k + code[int(edges[s2])]
            out[n, cell] = h
    return out


def genotype_ids(space: DartsCNNSpace, ids) -> list[int]:
    """Python ints ``normal * P + reduce`` in [0, P**2) of ids [N, 2] (host)."""
    p = cell_count(space)
    return [int(a) * p + int(b) for a, b in np.asarray(ids, np.int64)]


# ---- candidates ----------------------------------------------------------------------------------------------------
def _mix32(x: jax.Array) -> jax.Array:
    """uint32 -> uint32 integer hash (lowbias32 by C. Wellons)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def permute(round_keys: jax.Array, hi: jax.Array, lo: jax.Array, p: int) -> tuple[jax.Array, jax.Array]:
    """A keyed bijection of [0, p)^2 (uint32 halves): Feistel rounds (L, R) -> (R, (L + F_r(R)) mod p)."""
    pp = jnp.uint32(p)
    for r in range(round_keys.shape[0]):
        hi, lo = lo, (hi + _mix32(lo ^ round_keys[r]) % pp) % pp
    return hi, lo


def _advance(hi: jax.Array, lo: jax.Array, n, p: int) -> tuple[jax.Array, jax.Array]:
    """(hi, lo) + n in base p, for lo < p and 0 <= n <= p (uint32; lo + n < 2**32 since p < 2**31)."""
    lo = lo + jnp.uint32(n) if isinstance(n, int) else lo + n
    wrap = lo >= jnp.uint32(p)
    return hi + wrap.astype(jnp.uint32), jnp.where(wrap, lo - jnp.uint32(p), lo)


# ---- scoring -------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def node_encodings(space: DartsCNNSpace, kind: str = "onehot") -> tuple[np.ndarray, np.ndarray]:
    """(X [R, D], base [D]) with encode(arch) = base + sum of the 8 rows its node choices pick, for the additive
    encodings; rows in group order (normal node 2..5, reduction node 2..5), each group in digit order."""
    _check_space(space)
    if kind not in ADDITIVE_ENCODINGS:
        raise ValueError(f"gather-sum first layer needs an additive encoding ({', '.join(ADDITIVE_ENCODINGS)}), "
                         f"got {kind!r}; use first_layer='dense'")
    empty = np.full(space.num_edges, space.none_index, np.int32)
    archs = []
    for cell in range(2):
        for i in range(NUM_NODES):
            s = cell * EDGES_PER_CELL + _NODE_START[i]
            for row in _node_choices(space, i):
                a = empty.copy()
                a[s:s + len(row)] = row
                archs.append(a)
    with jax.ensure_compile_time_eval():  # host constants, also when first called inside a jit trace
        x = np.asarray(encode_archs(space, np.stack(archs + [empty]), kind), np.float64)
    return (x[:-1] - x[-1]).astype(np.float32), x[-1].astype(np.float32)


def _row_offsets(space: DartsCNNSpace) -> np.ndarray:
    r = node_radices(space)
    return np.cumsum([0] + list(r) * 2)[:-1].astype(np.int32)  # [8]


def fold_first_layer(fused: Fused, space: DartsCNNSpace, kind: str = "onehot") -> StreamScorer:
    """Fold ``fused``'s first layer, skip term and constant into per-node-choice rows (jittable; tiny matmuls)."""
    x, base = (jnp.asarray(a) for a in node_encodings(space, kind))
    first0 = jnp.arange(x.shape[0]) < node_radices(space)[0]  # group 0 (normal node 2): every candidate picks one
    skip = x @ fused.skip + jnp.where(first0, base @ fused.skip + fused.const, 0.0)
    if not fused.layers:
        return StreamScorer(jnp.zeros((0, x.shape[0], 0)), skip, (), fused.head)
    w1, b1 = fused.layers[0]
    bias = jnp.einsum("d,kdh->kh", base, w1) + b1  # [K, H]
    first = jnp.einsum("rd,kdh->krh", x, w1) + jnp.where(first0[None, :, None], bias[:, None, :], 0.0)
    return StreamScorer(first, skip, tuple(fused.layers[1:]), fused.head)


def gather_sum(table: jax.Array, idx: jax.Array) -> jax.Array:
    """[N, H] = sum_g table[idx[:, g]] for table [R, H], idx int [N, G]: the one-hot matmul sum_g onehot(idx_g) @ table
    as G row gathers (the first layer of a categorical encoding)."""
    out = table[idx[:, 0]]
    for g in range(1, idx.shape[1]):
        out = out + table[idx[:, g]]
    return out


def node_rows(space: DartsCNNSpace, ids: jax.Array) -> jax.Array:
    """int32 [N, 8] the table row of each node choice of ids uint32 [N, 2]."""
    digits = _digits(space, ids[:, 0]) + _digits(space, ids[:, 1])
    return jnp.stack(digits, 1).astype(jnp.int32) + jnp.asarray(_row_offsets(space))[None, :]


def stream_scores(s: StreamScorer, space: DartsCNNSpace, ids: jax.Array) -> jax.Array:
    """float32 [N] ``fused.fused_utility`` of the genotypes ``ids`` uint32 [N, 2], by gather-sums."""
    rows = node_rows(space, ids)
    total = jnp.sum(s.skip[rows], 1)
    k = s.head.shape[0]
    for m in range(k):
        a = jax.nn.relu(gather_sum(s.first[m], rows))
        for w, b in s.layers:
            a = jax.nn.relu(a @ w[m] + b[m][None])
        total = total + a @ s.head[m] / k
    return total


def dense_scores(f: Fused, space: DartsCNNSpace, ids: jax.Array, kind: str = "onehot") -> jax.Array:
    """The same scores the reference way: decode, encode (any encoding), ``fused.fused_utility`` (matmuls)."""
    return fused_utility(f, encode_archs(space, decode(space, ids), kind))


def flop_per_candidate(f: Fused, space: DartsCNNSpace, kind: str = "onehot", first_layer: str = "gather") -> int:
    """Arithmetic per candidate counted from the layer sizes (a multiply-add = 2; ReLU, gathers, id decoding and the
    top-k merge not counted). Gather-sum first layer: (G - 1) adds per hidden unit for G = 8 rows (bias folded);
    dense: 2 D H + H. Later layers 2 H_in H_out + H_out, folded head 2 H_last, mean over members K adds; skip term
    G - 1 adds (dense: 2 D + 1)."""
    g = 2 * NUM_NODES
    d = int(jax.eval_shape(lambda a: encode_archs(space, a, kind), jnp.zeros((1, space.num_edges), jnp.int32)).shape[1])
    k = int(f.head.shape[0])
    total = (g - 1) if first_layer == "gather" else 2 * d + 1
    for m in range(k):
        for j, (w, _) in enumerate(f.layers):
            h_in, h_out = int(w.shape[1]), int(w.shape[2])
            total += ((g - 1) * h_out if first_layer == "gather" else 2 * d * h_out + h_out) if j == 0 \
                else 2 * h_in * h_out + h_out
        total += 2 * int(f.head.shape[1]) + 1
    return total


# ---- the stream ----------------------------------------------------------------------------------------------------
def stream_topk(key: jax.Array | None, fused: Fused, space: DartsCNNSpace, n_candidates: int, chunk: int, k: int,
                *, kind: str = "onehot", first_layer: str = "gather", start: int = 0) -> StreamResult:
    """The ``k`` best of ``n_candidates`` DARTS genotypes by the fused ensemble's utility, best first.

    ``key=None``: the ids ``start .. start + n_candidates - 1`` in enumeration order; else ``n_candidates`` distinct
    genotypes drawn without replacement (keyed permutation; ``start`` must be 0). One jitted ``lax.scan`` over
    ceil(n / chunk) chunks; memory O(chunk * hidden + k). Ties keep the earlier candidate. ``first_layer``:
    ``gather`` (per-node tables; additive encodings) or ``dense`` (encode + matmul; any encoding).
    """
    _check_space(space)
    n, chunk, k, start = int(n_candidates), int(chunk), int(k), int(start)
    p = cell_count(space)
    if p >= 2**31:
        raise ValueError(f"stream ranking needs fewer than 2**31 cells per cell type, the space has {p}")
    if not 1 <= chunk <= p:
        raise ValueError(f"chunk must be in [1, {p}], got {chunk}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n_candidates={n}], got {k}")
    if start < 0 or start + n > p * p:
        raise ValueError(f"candidates start={start} .. start + n_candidates={start + n} must lie in [0, {p * p}] "
                         "(the number of genotypes)")
    if key is not None and start:
        raise ValueError("start is for enumeration (key=None); a sampled stream always starts at its first draw")
    if first_layer not in ("gather", "dense"):
        raise ValueError(f"first_layer must be 'gather' or 'dense', got {first_layer!r}")
    if first_layer == "gather" and kind not in ADDITIVE_ENCODINGS:
        raise ValueError(f"first_layer='gather' needs an additive encoding ({', '.join(ADDITIVE_ENCODINGS)}), got "
                         f"{kind!r}; use first_layer='dense'")
    round_keys = (jnp.zeros((0,), jnp.uint32) if key is None
                  else jax.random.bits(key, (_ROUNDS,), jnp.uint32))
    return _stream(round_keys, fused, space, n, chunk, k, kind, first_layer, start)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6, 7, 8))
def _stream(round_keys, fused, space, n, chunk, k, kind, first_layer, start) -> StreamResult:
    p = cell_count(space)
    steps = -(-n // chunk)
    last = n - (steps - 1) * chunk  # candidates in the last chunk
    scorer = fold_first_layer(fused, space, kind) if first_layer == "gather" else None
    offs = jnp.arange(chunk, dtype=jnp.uint32)
    sampled = round_keys.shape[0] > 0

    def body(carry, step):
        best_s, best_ids, base_hi, base_lo = carry
        hi, lo = _advance(base_hi, base_lo, offs, p)
        if sampled:
            hi, lo = permute(round_keys, hi, lo, p)
        ids = jnp.stack([hi, lo], 1)
        s = stream_scores(scorer, space, ids) if scorer is not None else dense_scores(fused, space, ids, kind)
        valid = (step < steps - 1) | (offs < jnp.uint32(last))
        s = jnp.where(valid, s, -jnp.inf)
        top_s, pos = jax.lax.top_k(jnp.concatenate([best_s, s]), k)
        best_ids = jnp.concatenate([best_ids, ids])[pos]
        return (top_s, best_ids, *_advance(base_hi, base_lo, chunk, p)), None

    init = (jnp.full((k,), -jnp.inf, jnp.float32), jnp.zeros((k, 2), jnp.uint32),
            jnp.uint32(start // p), jnp.uint32(start % p))
    (scores, ids, _, _), _ = jax.lax.scan(body, init, jnp.arange(steps, dtype=jnp.int32))
    return StreamResult(scores, ids, decode(space, ids))
