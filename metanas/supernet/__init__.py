"""Supernets and derived networks: the only place that builds networks (pure JAX over op-registry layers).

Functional boundary used by search algorithms and by MetaNAS (issue 4)::

    net = make_supernet(space, C=16, N=5, num_classes=10)      # frozen dataclass, hashable (safe to close over)
    weights, alphas, batch_stats = net.init(key, sample_x)       # sample_x: [B, H, W, C_in] NHWC float32
    logits, batch_stats = net.apply(weights, alphas, batch_stats, x, train=True)   # softmax(alpha) mixing
    logits, batch_stats = net.apply_mix(weights, mix, batch_stats, x, index=None)  # explicit op weights / GDAS

``weights`` and ``alphas`` are separate pytrees (optimise them with separate optax states). ``alphas`` is
``[E, K]`` for NB201 / toy and ``{"normal": [14, K], "reduce": [14, K]}`` for DARTS. All BNs use batch statistics,
so ``batch_stats`` is ``{}`` (passed through). Derived networks (``make_derived``) have ``alphas = {}``.
"""

from __future__ import annotations

from metanas.search_spaces.base import SearchSpace
from metanas.search_spaces.darts_cnn import DartsCNNSpace
from metanas.search_spaces.nb201 import EDGES as NB201_EDGES
from metanas.search_spaces.nb201 import NB201Space
from metanas.search_spaces.toy import ToySpace
from metanas.supernet.cell import Cell, CellSpec, mixed_op
from metanas.supernet.discretize import derive_argmax, derive_darts
from metanas.supernet.network import Alpha, CellNetwork, DartsNetwork

__all__ = ["make_supernet", "make_derived", "derive", "CellNetwork", "DartsNetwork", "CellSpec", "mixed_op", "Cell",
           "Alpha", "derive_argmax", "derive_darts"]


def _cell_stages(space: SearchSpace, stages: int | None) -> int:
    """Stages of the one-input cell skeleton: NB201's 3 (toy: 1) unless ``stages`` is given (>= 1; 1 = no reduction
    blocks, as the ``debug=fast`` runs use: each stage is one more compiled scan per pass)."""
    if stages is None:
        return 3 if isinstance(space, NB201Space) else 1
    if isinstance(space, DartsCNNSpace):
        raise ValueError(f"stages={stages} applies to the NB201 / toy cell skeleton; the DARTS network's depth is N "
                         "(layers, reduction cells at 1/3 and 2/3)")
    if int(stages) < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    return int(stages)


def make_supernet(space: SearchSpace, *, C: int, N: int, num_classes: int,
                  stages: int | None = None) -> CellNetwork | DartsNetwork:
    """The weight-sharing supernet of ``space``. ``N``: cells per stage (NB201/toy) or total layers (DARTS);
    ``stages``: see ``_cell_stages`` (default NB201's 3)."""
    if isinstance(space, (NB201Space, ToySpace)):
        edges = NB201_EDGES if isinstance(space, NB201Space) else space.edges
        return CellNetwork(edges, tuple(space.ops for _ in edges), C=C, N=N, num_stages=_cell_stages(space, stages),
                           num_classes=num_classes)
    _cell_stages(space, stages)
    if isinstance(space, DartsCNNSpace):
        return DartsNetwork(ops=space.ops, C=C, layers=N, num_classes=num_classes)
    raise TypeError(f"no supernet for search space {type(space).__name__}; expected NB201Space, ToySpace or "
                    "DartsCNNSpace")


def make_derived(space: SearchSpace, arch, *, C: int, N: int, num_classes: int, drop_path_prob: float = 0.0,
                 stages: int | None = None, running_stats: bool = False) -> CellNetwork | DartsNetwork:
    """The discrete network of ``arch`` for retraining from scratch (affine BN, one op per edge). ``running_stats``:
    BN keeps running statistics and evaluates with them (the papers' retraining code, PyTorch's default); off, it
    uses the batch's statistics in evaluation too (what the committed retraining figures used)."""
    if isinstance(space, (NB201Space, ToySpace)):
        edges = NB201_EDGES if isinstance(space, NB201Space) else space.edges
        return CellNetwork(edges, tuple((space.ops[int(a)],) for a in arch), C=C, N=N,
                           num_stages=_cell_stages(space, stages), num_classes=num_classes, affine=True,
                           running_stats=running_stats)
    _cell_stages(space, stages)
    if isinstance(space, DartsCNNSpace):
        g = space.genotype(arch)
        return DartsNetwork(normal=tuple(g["normal"]), reduce=tuple(g["reduce"]), C=C, layers=N,
                            num_classes=num_classes, drop_path_prob=drop_path_prob, running_stats=running_stats)
    raise TypeError(f"no derived network for search space {type(space).__name__}")


def derive(space: SearchSpace, alphas):
    """Discrete arch (int32 [E], the space's layout) from the alphas of ``make_supernet(space)``."""
    import numpy as np

    if isinstance(space, DartsCNNSpace):
        return derive_darts({k: np.asarray(v) for k, v in alphas.items()}, space.ops)
    return derive_argmax(np.asarray(alphas))
