"""Mixed op and generic cell (DAG of nodes; every edge holds one or more candidate ops from the op registry).

A cell is described by a hashable ``CellSpec``; its parameters are ``{"edges": [[op params per candidate] per
edge]}``, so cells of the same spec can be stacked along a leading axis and run with ``lax.scan``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from metanas.nn.types import Params
from metanas.search_spaces.ops import Op, batch_norm, get_op, relu_conv_bn_fused



def mixed_op(ops: list[Op], params: list, x: jax.Array, w: jax.Array | None,
             index: jax.Array | None = None) -> jax.Array:
    """DARTS mixed op, Liu et al. 2019 eq. (1): ``sum_k w_k op_k(x)`` with ``w = softmax(alpha)``.

    ``w=None`` (a single-op edge of a derived cell): just that op. ``index`` given (GDAS, Dong & Yang 2019): only
    op ``index`` runs (``lax.switch``) and its output is scaled by ``w[index]``, the straight-through one-hot weight.
    """
    if w is None:
        return ops[0].apply(params[0], x)
    if index is not None:
        branches = [lambda p, x, k=k: ops[k].apply(p[k], x) for k in range(len(ops))]
        return w[index] * lax.switch(index, branches, params, x)
    out = w[0] * ops[0].apply(params[0], x)
    for k in range(1, len(ops)):
        out = out + w[k] * ops[k].apply(params[k], x)
    return out


@dataclass(frozen=True)
class CellSpec:
    """A cell: input nodes ``0..num_inputs-1``, then one node per distinct ``dst`` of ``edges`` (ascending).

    Node ``i`` = sum over edges ``(i, j)`` of ``mixed_op(edge)(node j)``. Output: the last node, or (``concat``) the
    channel concatenation of all non-input nodes (DARTS). In a ``reduction`` cell, edges leaving an input node have
    stride 2 (DARTS). ``pool_bn`` appends a non-affine BN to pooling ops (DARTS search ``MixedOp``).
    """

    C: int
    edges: tuple[tuple[int, int], ...]  # (dst, src)
    edge_ops: tuple[tuple[str, ...], ...]  # candidate op names per edge
    num_inputs: int = 1
    concat: bool = False
    reduction: bool = False
    affine: bool = False
    pool_bn: bool = False

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted({d for d, _ in self.edges}))

    def ops(self) -> list[list[Op]]:
        out = []
        for (dst, src), names in zip(self.edges, self.edge_ops):
            stride = 2 if self.reduction and src < self.num_inputs else 1
            ops = []
            for name in names:
                op = get_op(name, self.C, stride, self.affine)
                if self.pool_bn and "pool" in name:
                    op = Op(op.init, lambda p, x, f=op.apply: batch_norm(f(p, x)))
                ops.append(op)
            out.append(ops)
        return out


def cell_init(spec: CellSpec, key: jax.Array) -> Params:
    ops = spec.ops()
    keys = jax.random.split(key, len(ops))
    return {"edges": [[op.init(k) for op, k in zip(edge, jax.random.split(ke, len(edge)))]
                      for edge, ke in zip(ops, keys)]}


def drop_path(x: jax.Array, key: jax.Array, drop_prob: float) -> jax.Array:
    """Drop a whole sample's branch with probability ``drop_prob`` and rescale (DARTS ``drop_path``)."""
    keep = 1.0 - drop_prob
    mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, 1)).astype(x.dtype)
    return x * mask / keep


def cell_apply(spec: CellSpec, params: Params, mix: jax.Array | None, inputs: tuple[jax.Array, ...], *,
               index: jax.Array | None = None, drop_key: jax.Array | None = None,
               drop_prob: float = 0.0) -> jax.Array:
    """Run one cell. ``mix``: op weights ``[E, K]`` (``None`` for single-op edges); ``index``: GDAS ops ``[E]``.

    ``drop_key`` with ``drop_prob > 0`` applies drop-path to every edge whose op is not an identity (DARTS eval).
    """
    ops = spec.ops()
    if spec.num_inputs == 1 and not spec.concat and not spec.reduction and index is None and drop_key is None:
        return _cell_apply_by_source(spec, ops, params, mix, inputs[0])
    states = list(inputs)
    for node in spec.nodes:
        acc = None
        for e, (dst, src) in enumerate(spec.edges):
            if dst != node:
                continue
            h = mixed_op(ops[e], params["edges"][e], states[src], None if mix is None else mix[e],
                         None if index is None else index[e])
            identity = spec.edge_ops[e] == ("skip_connect",) and not (spec.reduction and src < spec.num_inputs)
            if drop_key is not None and drop_prob > 0 and not identity:
                h = drop_path(h, jax.random.fold_in(drop_key, e), drop_prob)
            acc = h if acc is None else acc + h
        states.append(acc)
    if spec.concat:
        return jnp.concatenate(states[spec.num_inputs:], axis=-1)
    return states[-1]


def _source_outputs(spec: CellSpec, ops: list[list[Op]], params: Params, x: jax.Array,
                    edges: list[int]) -> dict[tuple[int, int], jax.Array]:
    """``{(e, k): op_k of edge e applied to x}`` for the edges that read ``x``: a parameter-free op runs once for all
    of them, same-kind ReLU-Conv-BN ops run as one concatenated convolution; others run per edge."""
    by_name: dict[str, list[tuple[int, int]]] = {}
    for e in edges:
        for k, name in enumerate(spec.edge_ops[e]):
            by_name.setdefault(name, []).append((e, k))
    out = {}
    for pairs in by_name.values():
        kind = ops[pairs[0][0]][pairs[0][1]].kind
        if kind[:1] == ("stateless",):
            y = ops[pairs[0][0]][pairs[0][1]].apply({}, x)
            out |= {pk: y for pk in pairs}
        elif kind[:1] == ("relu_conv_bn",) and len(pairs) > 1:
            ys = relu_conv_bn_fused([params["edges"][e][k] for e, k in pairs], x, kind[1])
            out |= dict(zip(pairs, ys))
        else:
            out |= {(e, k): ops[e][k].apply(params["edges"][e][k], x) for e, k in pairs}
    return out


def _cell_apply_by_source(spec: CellSpec, ops: list[list[Op]], params: Params, mix: jax.Array | None,
                          x: jax.Array) -> jax.Array:
    """``cell_apply`` for one-input cells (NB201 / toy), node by node in source order: once node ``s`` is known,
    every edge leaving it is computed together (``_source_outputs``) and added to its destination. Same function as
    the edge-by-edge loop, with fewer and wider ops (a third of the convolutions in an NB201 search cell)."""
    acc: dict[int, jax.Array] = {0: x}
    for s in (0, *spec.nodes):
        edges = [e for e, (_, src) in enumerate(spec.edges) if src == s]
        if not edges:
            continue
        outs = _source_outputs(spec, ops, params, acc[s], edges)
        for e in edges:
            dst = spec.edges[e][0]
            K = len(spec.edge_ops[e])
            if mix is None:
                h = outs[(e, 0)]
            else:  # a "zero" op (NB201 "none") adds w_k * 0: left out (same sum; its alpha keeps its softmax gradient)
                terms = [mix[e, k] * outs[(e, k)] for k in range(K) if ops[e][k].kind[1:] != ("zero",)]
                h = sum(terms[1:], terms[0]) if terms else outs[(e, 0)]
            acc[dst] = h if dst not in acc else acc[dst] + h
    return acc[spec.nodes[-1]]
