"""Networks around the cells: the NB201 macro skeleton (also used by the toy space) and the DARTS CNN networks.

Every network is a frozen dataclass with the same functional boundary (the rest of the framework sees only this):

- ``init(key, sample_x) -> (weights, alphas, batch_stats)``
- ``apply(weights, alphas, batch_stats, x, train=True, *, key=None) -> (logits, batch_stats)``: op weights
  ``softmax(alpha)`` per edge (DARTS).
- ``apply_mix(weights, mix, batch_stats, x, train=True, *, index=None, key=None)``: explicit op weights ``mix``
  (same pytree as ``alphas``), optionally GDAS ``index`` (one op per edge, same pytree with int ``[E]`` leaves).

Inputs are NHWC float32. Batch norm uses batch statistics in training and evaluation alike (the NB201/DARTS search
setting ``track_running_stats=False``), so ``batch_stats`` is an empty dict that is passed through unchanged. A
network built with ``running_stats=True`` (a derived network, as the papers' retraining code) holds running
statistics instead: ``batch_stats`` is their pure dict, ``apply(..., train=True)`` returns it updated and
``train=False`` normalises with it. Derived (discrete) networks have ``alphas = {}``.

Each config holds the graph definitions of its own NNX module (``_Boundary.pure``: one ``metanas.nn.boundary.Pure`` per
input channel count, captured by ``init``), so ``apply`` merges pure dicts without rebuilding the module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from metanas import initializers
from metanas.nn.modules import BatchNorm, Conv, Dense
from metanas.nn.boundary import Pure
from metanas.nn.types import Params
from metanas.search_spaces.ops import FactorizedReduce, ReLUConvBN
from metanas.supernet.cell import Cell, CellSpec


class Alpha(nnx.Variable):
    """Architecture weights: their own variable type, so ``nnx.split(model, nnx.Param, Alpha, nnx.BatchStat)`` gives
    (weights, alphas, batch statistics)."""


def _softmax(alphas):
    return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alphas)


def _stacked(cells: list[nnx.Module]) -> nnx.Module:
    """The first of ``cells`` holding all cells' parameters stacked on a new leading axis (for ``nnx.scan``). The
    cells are built one after the other (not ``nnx.vmap``-ed) so that their parameters are the draws of the
    sequential key stream."""
    nnx.update(cells[0], jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(c) for c in cells]))
    return cells[0]


def _track(module: nnx.Module) -> nnx.Module:
    """Give every batch norm of ``module`` that has none running statistics (``BatchNorm.track``)."""
    for _, m in nnx.iter_graph(module):
        if isinstance(m, BatchNorm) and m.mean is None:
            m.track()
    return module


class _Boundary:
    """``init`` / ``apply`` / ``apply_mix`` of a network config (see the module doc): its module class ``module``
    built as ``module(self, cin, rngs=...)``, split into (weights, alphas, batch statistics) by a ``Pure`` per input
    channel count, held in ``self.pures`` (the config's own graph definitions, no process-wide cache)."""

    module: type
    pures: dict
    running_stats: bool

    def pure(self, cin: int) -> Pure:
        if cin not in self.pures:
            self.pures[cin] = Pure(lambda rngs: self.module(self, cin, rngs=rngs), (nnx.Param, Alpha, nnx.BatchStat))
        return self.pures[cin]

    def init(self, key: jax.Array, sample_x: jax.Array) -> tuple[Params, jax.Array | dict, dict]:
        weights, alphas, batch_stats = self.pure(int(sample_x.shape[-1])).init(key)
        return weights, alphas.get("alpha", {}), batch_stats

    def apply(self, weights, alphas, batch_stats, x, train: bool = True, *, key=None):
        return self.apply_mix(weights, _softmax(alphas) if self.searchable else None, batch_stats, x, train, key=key)

    def apply_mix(self, weights, mix, batch_stats, x, train: bool = True, *, index=None, key=None):
        model = self.pure(int(x.shape[-1])).merge(weights, {"alpha": mix} if self.searchable else {}, batch_stats)
        if not self.running_stats:
            return model(x, mix, index=index, key=key if train else None), batch_stats
        model.set_attributes(use_running_average=not train)
        logits = model(x, mix, index=index, key=key if train else None)
        return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


class ResBlock(nnx.Module):
    """NB201 ``ResNetBasicblock(C_in, C_out, stride 2)``: two ReLU-Conv3x3-BN plus AvgPool2x2 -> Conv1x1 shortcut."""

    def __init__(self, C_in: int, C_out: int, *, rngs: nnx.Rngs):
        self.a = ReLUConvBN(C_in, C_out, 3, 2, affine=True, bias=False, rngs=rngs)
        self.b = ReLUConvBN(C_out, C_out, 3, 1, affine=True, bias=False, rngs=rngs)
        self.down = Conv(C_in, C_out, 1, padding=0, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = lax.reduce_window(x, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
        return self.b(self.a(x)) + self.down(pooled)


class CellNetModule(nnx.Module):
    """The NNX module of a ``CellNetwork`` (see there): ``stages[s]`` holds the stage's N cells stacked, ``res[s-1]``
    the reduction block before stage ``s``."""

    def __init__(self, cfg: "CellNetwork", cin: int, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.stem = Conv(cin, cfg.C, 3, rngs=rngs)
        self.stem_bn = BatchNorm(cfg.C)
        res, stages = [], []
        for s in range(cfg.num_stages):
            if s > 0:
                res.append(ResBlock(cfg.C * 2 ** (s - 1), cfg.C * 2**s, rngs=rngs))
            cells = [Cell(cfg.cell_spec(s), rngs=rngs) for _ in range(cfg.N)]
            stages.append(_stacked([_track(c) for c in cells] if cfg.running_stats else cells))
        self.res, self.stages = nnx.List(res), nnx.List(stages)
        C_last = cfg.C * 2 ** (cfg.num_stages - 1)
        self.head_bn = BatchNorm(C_last)
        self.head = Dense(C_last, cfg.num_classes, rngs=rngs)
        if cfg.searchable:
            self.alpha = Alpha(initializers.normal(rngs.params(), (len(cfg.edges), len(cfg.edge_ops[0])), 1e-3))
        if cfg.running_stats:
            _track(self)

    def __call__(self, x: jax.Array, mix=None, *, index=None, key=None) -> jax.Array:
        """``key``: unused (the NB201 skeleton has no drop-path)."""

        @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry, unroll=self.cfg.unroll)
        def stage(cell, h):
            return cell((h,), mix, index=index)

        h = self.stem_bn(self.stem(x))
        for s, cells in enumerate(self.stages):
            h = stage(cells, self.res[s - 1](h) if s > 0 else h)
        return self.head(jnp.mean(jax.nn.relu(self.head_bn(h)), axis=(1, 2)))


@dataclass(frozen=True)
class CellNetwork(_Boundary):
    """NB201 skeleton (Dong & Yang 2020, xautodl ``TinyNetworkDarts``): stem Conv3x3 -> BN; ``num_stages`` stages of
    ``N`` identical cells, a residual reduction block (stride 2, channels x2) between stages; BN -> ReLU -> global
    average pool -> linear. One ``alphas [E, K]`` is shared by all cells. The ``N`` cells of a stage have stacked
    parameters and run as a rolled ``nnx.scan`` (see ``unroll``).
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
    running_stats: bool = False  # BN running statistics (derived networks only; see make_derived)
    pures: dict = field(default_factory=dict, init=False, compare=False, repr=False)  # see _Boundary
    module = CellNetModule

    def __post_init__(self):
        object.__setattr__(self, "edges", tuple(tuple(e) for e in self.edges))
        object.__setattr__(self, "edge_ops", tuple(tuple(o) for o in self.edge_ops))

    @property
    def searchable(self) -> bool:
        return any(len(o) > 1 for o in self.edge_ops)

    def cell_spec(self, stage: int) -> CellSpec:
        return CellSpec(C=self.C * 2**stage, edges=self.edges, edge_ops=self.edge_ops, affine=self.affine)


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
class DartsNetwork(_Boundary):
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
    running_stats: bool = False  # BN running statistics (derived networks only; see make_derived)
    pures: dict = field(default_factory=dict, init=False, compare=False, repr=False)  # see _Boundary

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
        """Per cell: (spec, C_prev_prev, C_prev, C_curr, reduction_prev) with the DARTS channel bookkeeping."""
        C_curr = self.stem_multiplier * self.C
        C_pp, C_p = C_curr, C_curr
        out = []
        for red, red_prev, mult in _darts_cells(self.layers):
            C_curr = self.C * mult
            spec = self._spec(C_curr, red)
            out.append((spec, C_pp, C_p, C_curr, red_prev))
            C_pp, C_p = C_p, len(spec.nodes) * C_curr
        return out, C_p


class DartsLayer(nnx.Module):
    """One DARTS layer: the two input preprocessors and the cell."""

    def __init__(self, spec: CellSpec, C_pp: int, C_p: int, C: int, reduction_prev: bool, affine: bool, *,
                 rngs: nnx.Rngs):
        self.pre0 = (FactorizedReduce(C_pp, C, affine, rngs=rngs) if reduction_prev
                     else ReLUConvBN(C_pp, C, 1, 1, affine, bias=False, rngs=rngs))
        self.pre1 = ReLUConvBN(C_p, C, 1, 1, affine, bias=False, rngs=rngs)
        self.cell = Cell(spec, rngs=rngs)


class DartsNetModule(nnx.Module):
    """The NNX module of a ``DartsNetwork`` (see there): ``stem``, ``layers`` (an ``nnx.List``), ``head``,
    ``alpha``."""

    def __init__(self, cfg: "DartsNetwork", cin: int, *, rngs: nnx.Rngs):
        self.cfg = cfg
        C_stem = cfg.stem_multiplier * cfg.C
        self.stem = Conv(cin, C_stem, 3, rngs=rngs)
        self.stem_bn = BatchNorm(C_stem)
        layout, C_last = cfg._layout()
        self.layers = nnx.List([DartsLayer(spec, C_pp, C_p, C, red_prev, not cfg.searchable, rngs=rngs)
                                for spec, C_pp, C_p, C, red_prev in layout])
        self.head = Dense(C_last, cfg.num_classes, rngs=rngs)
        if cfg.searchable:
            shape = (14, len(cfg.ops))
            self.alpha = nnx.Dict({"normal": Alpha(initializers.normal(rngs.params(), shape, 1e-3)),
                                   "reduce": Alpha(initializers.normal(rngs.params(), shape, 1e-3))})
        if cfg.running_stats:
            _track(self)

    def __call__(self, x: jax.Array, mix=None, *, index=None, key=None) -> jax.Array:
        cfg = self.cfg
        s0 = s1 = self.stem_bn(self.stem(x))
        for i, layer in enumerate(self.layers):
            name = "reduce" if layer.cell.spec.reduction else "normal"
            dk = jax.random.fold_in(key, i) if (key is not None and cfg.drop_path_prob > 0) else None
            out = layer.cell((layer.pre0(s0), layer.pre1(s1)), None if mix is None else mix[name],
                             index=None if index is None else index[name], drop_key=dk, drop_prob=cfg.drop_path_prob)
            s0, s1 = s1, out
        return self.head(jnp.mean(s1, axis=(1, 2)))


DartsNetwork.module = DartsNetModule
