"""Mixed op and generic cell (DAG of nodes; every edge holds one or more candidate ops from the op registry).

A cell is described by a hashable ``CellSpec`` and built as the NNX module ``Cell``; its params (a pure dict
``{"edges": {"e<edge>": {<op name>: op params}}}``) are stacked along a leading axis across the cells of one
stage, which runs as one ``nnx.scan`` (``metanas.supernet.network``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from metanas.search_spaces.ops import PoolBN, get_op, op_kind, relu_conv_bn_fused


def mixed_op(ops: list[nnx.Module], x: jax.Array, w: jax.Array | None, index: jax.Array | None = None) -> jax.Array:
    """DARTS mixed op, Liu et al. 2019 eq. (1): ``sum_k w_k op_k(x)`` with ``w = softmax(alpha)``.

    ``w=None`` (a single-op edge of a derived cell): just that op. ``index`` given (GDAS, Dong & Yang 2019): only
    op ``index`` runs (``lax.switch``) and its output is scaled by ``w[index]``, the straight-through one-hot weight.
    """
    if w is None:
        return ops[0](x)
    if index is not None:
        return w[index] * lax.switch(index, [lambda x, op=op: op(x) for op in ops], x)
    out = w[0] * ops[0](x)
    for k in range(1, len(ops)):
        out = out + w[k] * ops[k](x)
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


def drop_path(x: jax.Array, key: jax.Array, drop_prob: float) -> jax.Array:
    """Drop a whole sample's branch with probability ``drop_prob`` and rescale (DARTS ``drop_path``)."""
    keep = 1.0 - drop_prob
    mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, 1)).astype(x.dtype)
    return x * mask / keep


class Cell(nnx.Module):
    """The cell of ``spec``: ``edges["e<e>"][<op name>]`` is the op module of candidate ``<op name>`` on edge ``e``."""

    def __init__(self, spec: CellSpec, *, rngs: nnx.Rngs):
        self.spec = spec
        edges = {}
        for e, ((dst, src), names) in enumerate(zip(spec.edges, spec.edge_ops)):
            stride = 2 if spec.reduction and src < spec.num_inputs else 1
            ops = {}
            for name in names:
                op = get_op(name, spec.C, stride, spec.affine, rngs=rngs)
                ops[name] = PoolBN(op) if spec.pool_bn and "pool" in name else op
            edges[f"e{e}"] = nnx.Dict(ops)
        self.edges = nnx.Dict(edges)

    def ops(self, e: int) -> list[nnx.Module]:
        """The candidate op modules of edge ``e``, in ``spec.edge_ops[e]`` order."""
        return [self.edges[f"e{e}"][name] for name in self.spec.edge_ops[e]]

    def __call__(self, inputs: tuple[jax.Array, ...], mix: jax.Array | None = None, *,
                 index: jax.Array | None = None, drop_key: jax.Array | None = None,
                 drop_prob: float = 0.0) -> jax.Array:
        """Run the cell. ``mix``: op weights ``[E, K]`` (``None`` for single-op edges); ``index``: GDAS ops ``[E]``.

        ``drop_key`` with ``drop_prob > 0`` applies drop-path to every edge whose op is not an identity (DARTS eval).
        """
        spec = self.spec
        if spec.num_inputs == 1 and not spec.concat and not spec.reduction and index is None and drop_key is None:
            return self._apply_by_source(mix, inputs[0])
        states = list(inputs)
        for node in spec.nodes:
            acc = None
            for e, (dst, src) in enumerate(spec.edges):
                if dst != node:
                    continue
                h = mixed_op(self.ops(e), states[src], None if mix is None else mix[e],
                             None if index is None else index[e])
                identity = spec.edge_ops[e] == ("skip_connect",) and not (spec.reduction and src < spec.num_inputs)
                if drop_key is not None and drop_prob > 0 and not identity:
                    h = drop_path(h, jax.random.fold_in(drop_key, e), drop_prob)
                acc = h if acc is None else acc + h
            states.append(acc)
        if spec.concat:
            return jnp.concatenate(states[spec.num_inputs:], axis=-1)
        return states[-1]

    def _source_outputs(self, x: jax.Array, edges: list[int]) -> dict[tuple[int, int], jax.Array]:
        """``{(e, k): op_k of edge e applied to x}`` for the edges that read ``x``: a parameter-free op runs once for
        all of them, same-kind ReLU-Conv-BN ops run as one concatenated convolution; others run per edge."""
        by_name: dict[str, list[tuple[int, int]]] = {}
        for e in edges:
            for k, name in enumerate(self.spec.edge_ops[e]):
                by_name.setdefault(name, []).append((e, k))
        out = {}
        for pairs in by_name.values():
            mods = [self.ops(e)[k] for e, k in pairs]
            kind = op_kind(mods[0])
            if kind[:1] == ("stateless",):
                y = mods[0](x)
                out |= {pk: y for pk in pairs}
            elif kind[:1] == ("relu_conv_bn",) and len(pairs) > 1 and mods[0].bn.mean is None:  # no running stats
                out |= dict(zip(pairs, relu_conv_bn_fused(mods, x, kind[1])))
            else:
                out |= {pk: m(x) for pk, m in zip(pairs, mods)}
        return out

    def _apply_by_source(self, mix: jax.Array | None, x: jax.Array) -> jax.Array:
        """The cell for one-input cells (NB201 / toy), node by node in source order: once node ``s`` is known, every
        edge leaving it is computed together (``_source_outputs``) and added to its destination. Same function as
        the edge-by-edge loop, with fewer and wider ops (a third of the convolutions in an NB201 search cell)."""
        spec = self.spec
        acc: dict[int, jax.Array] = {0: x}
        for s in (0, *spec.nodes):
            edges = [e for e, (_, src) in enumerate(spec.edges) if src == s]
            if not edges:
                continue
            outs = self._source_outputs(acc[s], edges)
            for e in edges:
                dst = spec.edges[e][0]
                ops = self.ops(e)
                if mix is None:
                    h = outs[(e, 0)]
                else:  # a "zero" op (NB201 "none") adds w_k * 0: left out (same sum; its alpha keeps its gradient)
                    terms = [mix[e, k] * outs[(e, k)] for k in range(len(ops)) if op_kind(ops[k])[1:] != ("zero",)]
                    h = sum(terms[1:], terms[0]) if terms else outs[(e, 0)]
                acc[dst] = h if dst not in acc else acc[dst] + h
        return acc[spec.nodes[-1]]

