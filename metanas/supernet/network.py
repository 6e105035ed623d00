"""Networks around the cells: the NB201 macro skeleton (also used by the toy space) and the DARTS CNN networks.

Every network is a frozen dataclass with the same functional boundary (the rest of the framework sees only this):

- ``init(key, sample_x) -> (weights, alphas, batch_stats)``
- ``apply(weights, alphas, batch_stats, x, train=True, *, key=None) -> (logits, batch_stats)``: op weights
  ``softmax(alpha)`` per edge (DARTS).
- ``apply_mix(weights, mix, batch_stats, x, train=True, *, index=None, key=None)``: explicit op weights ``mix``
  (same pytree as ``alphas``), optionally GDAS ``index`` (one op per edge, same pytree with int ``[E]`` leaves).

Inputs are NHWC float32. Batch norm uses batch statistics in training and evaluation alike (the NB201/DARTS search
setting ``track_running_stats=False``), so ``batch_stats`` is an empty dict that is passed through unchanged; it is
kept in the signature for running statistics. Derived (discrete) networks have ``alphas = {}``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from metanas import initializers
from metanas.nn.types import Params
from metanas.search_spaces.ops import batch_norm, bn_init, conv, conv_init, factorized_reduce, relu_conv_bn
from metanas.supernet.cell import CellSpec, cell_apply, cell_init



def _dense_init(key, cin, cout):
    bound = 1.0 / jnp.sqrt(cin)
    return {"w": initializers.uniform(key, (cin, cout), -bound, bound), "b": jnp.zeros((cout,), jnp.float32)}


def _softmax(alphas):
    return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alphas)


def _resblock(C_in: int, C_out: int):
    """NB201 ``ResNetBasicblock(C_in, C_out, stride 2)``: two ReLU-Conv3x3-BN plus AvgPool2x2 -> Conv1x1 shortcut."""
    a = relu_conv_bn(C_in, C_out, 3, 2, affine=True, bias=False)
    b = relu_conv_bn(C_out, C_out, 3, 1, affine=True, bias=False)

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"a": a.init(k1), "b": b.init(k2), "down": conv_init(k3, 1, C_in, C_out)}

    def apply(p, x):
        pooled = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
        return b.apply(p["b"], a.apply(p["a"], x)) + conv(pooled, p["down"], padding=0)

    return init, apply


@dataclass(frozen=True)
class CellNetwork:
    """NB201 skeleton (Dong & Yang 2020, xautodl ``TinyNetworkDarts``): stem Conv3x3 -> BN; ``num_stages`` stages of
    ``N`` identical cells, a residual reduction block (stride 2, channels x2) between stages; BN -> ReLU -> global
    average pool -> linear. One ``alphas [E, K]`` is shared by all cells. The ``N`` cells of a stage have stacked
    parameters and run as a rolled ``lax.scan`` (see ``unroll``).
    """

    edges: tuple[tuple[int, int], ...]
    edge_ops: tuple[tuple[str, ...], ...]
    C: int = 16
    N: int = 5
    num_stages: int = 3
    num_classes: int = 10
    affine: bool = False  # cell BN affine (False in search, True for a derived network)
    # unroll the scan over a stage's cells (True) or run it rolled (False, default: one compiled cell body per stage,
    # a several times shorter compile). With lax.conv's own derivatives XLA:CPU ran the rolled backward pass ~10x
    # slower (a slow fallback for the loop's filter-gradient convolutions); ops.conv's default "gemm" impl avoids them
    unroll: bool = False

    def __post_init__(self):
        object.__setattr__(self, "edges", tuple(tuple(e) for e in self.edges))
        object.__setattr__(self, "edge_ops", tuple(tuple(o) for o in self.edge_ops))

    @property
    def searchable(self) -> bool:
        return any(len(o) > 1 for o in self.edge_ops)

    def cell_spec(self, stage: int) -> CellSpec:
        return CellSpec(C=self.C * 2**stage, edges=self.edges, edge_ops=self.edge_ops, affine=self.affine)

    def init(self, key: jax.Array, sample_x: jax.Array) -> tuple[Params, jax.Array | dict, dict]:
        k_stem, k_head, k_alpha, k_cells = jax.random.split(key, 4)
        cin = sample_x.shape[-1]
        w: Params = {"stem": {"w": conv_init(k_stem, 3, cin, self.C), "bn": bn_init(self.C, True)},
                     "stages": [], "res": []}
        for s in range(self.num_stages):
            ks = jax.random.fold_in(k_cells, s)
            if s > 0:
                init, _ = _resblock(self.C * 2 ** (s - 1), self.C * 2**s)
                w["res"].append(init(jax.random.fold_in(ks, 10_000)))
            cells = [cell_init(self.cell_spec(s), jax.random.fold_in(ks, i)) for i in range(self.N)]
            w["stages"].append(jax.tree.map(lambda *xs: jnp.stack(xs), *cells))
        C_last = self.C * 2 ** (self.num_stages - 1)
        w["head"] = {"bn": bn_init(C_last, True), **_dense_init(k_head, C_last, self.num_classes)}
        alphas = (initializers.normal(k_alpha, (len(self.edges), len(self.edge_ops[0])), 1e-3)
                  if self.searchable else {})
        return w, alphas, {}

    def apply(self, weights, alphas, batch_stats, x, train: bool = True, *, key=None):
        return self.apply_mix(weights, _softmax(alphas) if self.searchable else None, batch_stats, x, train, key=key)

    def apply_mix(self, weights, mix, batch_stats, x, train: bool = True, *, index=None, key=None):
        h = batch_norm(conv(x, weights["stem"]["w"]), weights["stem"]["bn"])
        for s in range(self.num_stages):
            if s > 0:
                _, res = _resblock(self.C * 2 ** (s - 1), self.C * 2**s)
                h = res(weights["res"][s - 1], h)
            spec = self.cell_spec(s)

            def body(h, p, spec=spec):
                return cell_apply(spec, p, mix, (h,), index=index), None

            h, _ = lax.scan(body, h, weights["stages"][s], length=self.N, unroll=self.unroll)
        hd = weights["head"]
        h = jnp.mean(jax.nn.relu(batch_norm(h, hd["bn"])), axis=(1, 2))
        return h @ hd["w"] + hd["b"][None, :], batch_stats


def _darts_cells(layers: int):
    """(reduction, reduction_prev, channel multiplier) per cell: reductions at layers//3 and 2*layers//3."""
    out, red_prev, mult = [], False, 1
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        mult = mult * 2 if red else mult
        out.append((red, red_prev, mult))
        red_prev = red
    return out


@dataclass(frozen=True)
class DartsNetwork:
    """DARTS CNN (Liu et al. 2019, ``model_search.Network`` / ``model.NetworkCIFAR`` without auxiliary head).

    Search (``normal``/``reduce`` empty): every cell has all 14 edges with all ``ops``; ``alphas = {"normal":
    [14, K], "reduce": [14, K]}``; affine-free BN, BN after pools. Derived: ``normal``/``reduce`` are the genotype's
    8 ``(op, input)`` pairs each; affine BN; drop-path with ``drop_path_prob`` when ``train`` and a ``key`` is given.
    """

    ops: tuple[str, ...] = ()
    normal: tuple[tuple[str, int], ...] = ()
    reduce: tuple[tuple[str, int], ...] = ()
    C: int = 16
    layers: int = 8
    num_classes: int = 10
    stem_multiplier: int = 3
    drop_path_prob: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        object.__setattr__(self, "normal", tuple((str(o), int(i)) for o, i in self.normal))
        object.__setattr__(self, "reduce", tuple((str(o), int(i)) for o, i in self.reduce))

    @property
    def searchable(self) -> bool:
        return not self.normal

    def _spec(self, C: int, reduction: bool) -> CellSpec:
        if self.searchable:
            from metanas.search_spaces.darts_cnn import DARTS_EDGES

            return CellSpec(C=C, edges=DARTS_EDGES, edge_ops=tuple(self.ops for _ in DARTS_EDGES), num_inputs=2,
                            concat=True, reduction=reduction, affine=False, pool_bn=True)
        pairs = self.reduce if reduction else self.normal
        edges = tuple((2 + k // 2, src) for k, (_, src) in enumerate(pairs))
        return CellSpec(C=C, edges=edges, edge_ops=tuple((op,) for op, _ in pairs), num_inputs=2, concat=True,
                        reduction=reduction, affine=True)

    def _layout(self):
        """Per cell: (spec, preprocess0, preprocess1) with the DARTS channel bookkeeping (multiplier 4)."""
        affine = not self.searchable
        C_curr = self.stem_multiplier * self.C
        C_pp, C_p = C_curr, C_curr
        out = []
        for red, red_prev, mult in _darts_cells(self.layers):
            C_curr = self.C * mult
            spec = self._spec(C_curr, red)
            pre0 = (factorized_reduce(C_pp, C_curr, affine) if red_prev
                    else relu_conv_bn(C_pp, C_curr, 1, 1, affine, bias=False))
            pre1 = relu_conv_bn(C_p, C_curr, 1, 1, affine, bias=False)
            out.append((spec, pre0, pre1))
            C_pp, C_p = C_p, len(spec.nodes) * C_curr
        return out, C_p

    def init(self, key, sample_x):
        k_stem, k_head, k_alpha, k_cells = jax.random.split(key, 4)
        C_stem = self.stem_multiplier * self.C
        layout, C_last = self._layout()
        cells = []
        for i, (spec, pre0, pre1) in enumerate(layout):
            k = jax.random.fold_in(k_cells, i)
            cells.append({"pre0": pre0.init(jax.random.fold_in(k, 0)), "pre1": pre1.init(jax.random.fold_in(k, 1)),
                          "cell": cell_init(spec, jax.random.fold_in(k, 2))})
        w = {"stem": {"w": conv_init(k_stem, 3, sample_x.shape[-1], C_stem), "bn": bn_init(C_stem, True)},
             "cells": cells, "head": _dense_init(k_head, C_last, self.num_classes)}
        if self.searchable:
            ka, kb = jax.random.split(k_alpha)
            shape = (14, len(self.ops))
            alphas = {"normal": initializers.normal(ka, shape, 1e-3), "reduce": initializers.normal(kb, shape, 1e-3)}
        else:
            alphas = {}
        return w, alphas, {}

    def apply(self, weights, alphas, batch_stats, x, train: bool = True, *, key=None):
        return self.apply_mix(weights, _softmax(alphas) if self.searchable else None, batch_stats, x, train, key=key)

    def apply_mix(self, weights, mix, batch_stats, x, train: bool = True, *, index=None, key=None):
        s0 = s1 = batch_norm(conv(x, weights["stem"]["w"]), weights["stem"]["bn"])
        layout, _ = self._layout()
        for i, ((spec, pre0, pre1), p) in enumerate(zip(layout, weights["cells"])):
            name = "reduce" if spec.reduction else "normal"
            m = None if mix is None else mix[name]
            idx = None if index is None else index[name]
            dk = jax.random.fold_in(key, i) if (key is not None and train and self.drop_path_prob > 0) else None
            out = cell_apply(spec, p["cell"], m, (pre0.apply(p["pre0"], s0), pre1.apply(p["pre1"], s1)), index=idx,
                             drop_key=dk, drop_prob=self.drop_path_prob)
            s0, s1 = s1, out
        h = jnp.mean(s1, axis=(1, 2))
        return h @ weights["head"]["w"] + weights["head"]["b"][None, :], batch_stats
