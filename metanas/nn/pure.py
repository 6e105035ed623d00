"""From a flax NNX module to the pure pair the algorithms take: ``init(key) -> params``, ``apply(params, x)``.

``metanas.meta`` (MAML, FOMAML, ANIL, Meta-SGD, Reptile, MetaNAS) and ``metanas.search`` import nothing from flax:
they take an apply function over a pytree of parameters. ``pure`` builds that pair for ANY NNX module ("bring
your own model")::

    init, apply = pure(lambda rngs: MyNet(rngs=rngs))
    params = init(jax.random.key(0))        # nested dict of arrays (nnx.to_pure_dict of the nnx.Param state)
    logits = apply(params, x)                # nnx.merge(graphdef, params)(x), pure and jittable

``params`` is a plain nested dict (``{"layer": {"kernel": ..., "bias": ...}}``), so dict-based algorithms (ANIL's
``head`` key, Meta-SGD's per-parameter step sizes) and checkpoints see ordinary pytrees. Modules that hold
other state (batch statistics, RNG counts) are not supported here: the apply function would have to return it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from metanas.nn.types import ApplyFn, InitFn, Params


def pure(make: Callable[[nnx.Rngs], nnx.Module], *, method: str = "__call__") -> tuple[InitFn, ApplyFn]:
    """``(init, apply)`` for the module ``make(rngs)`` builds; ``method``: the module method ``apply`` calls."""
    graphdef = [None]

    def init(key: jax.Array) -> Params:
        graphdef_, state = nnx.split(make(nnx.Rngs(params=key)))
        rest = nnx.state(nnx.merge(graphdef_, state), nnx.Not(nnx.Param))
        if jax.tree.leaves(rest):
            raise TypeError(f"pure() supports modules whose state is nnx.Param only; this one also holds "
                            f"{sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=_is_var)})}")
        graphdef[0] = graphdef_
        return nnx.to_pure_dict(state)

    def apply(params: Params, x: jax.Array) -> jax.Array:
        if graphdef[0] is None:  # apply before init (e.g. a restored checkpoint): build the structure abstractly
            graphdef[0] = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(params=0))))[0]
        return getattr(nnx.merge(graphdef[0], params), method)(x)

    return init, apply


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)


_GRAPHDEFS: dict = {}  # (cls, args, kwargs) -> GraphDef, filled by ``build`` and ``graphdef_of``; oldest dropped first
_GRAPHDEFS_MAX = 64


def _key(cls: type, args: tuple, kwargs: dict) -> tuple:
    return cls, args, tuple(sorted(kwargs.items()))


def _remember(key, graphdef: nnx.GraphDef) -> nnx.GraphDef:
    _GRAPHDEFS[key] = graphdef
    while len(_GRAPHDEFS) > _GRAPHDEFS_MAX:
        del _GRAPHDEFS[next(iter(_GRAPHDEFS))]
    return graphdef


def build(cls: type, *args, rngs: nnx.Rngs, **kwargs) -> nnx.Module:
    """``cls(*args, **kwargs, rngs=rngs)``, remembering its graph definition for ``graphdef_of``: an ``apply`` after
    an ``init`` in the same process then skips rebuilding the module abstractly (seconds for a supernet)."""
    module = cls(*args, **kwargs, rngs=rngs)
    _remember(_key(cls, args, kwargs), nnx.graphdef(module))
    return module


def graphdef_of(cls: type, *args, **kwargs) -> nnx.GraphDef:
    """The (cached) graph definition of ``cls(*args, **kwargs, rngs=...)``: what ``nnx.merge`` needs to run a module
    class over a params dict. Taken from a module ``build`` made, else built abstractly (no arrays drawn).
    Arguments must be hashable."""
    key = _key(cls, args, kwargs)
    graphdef = _GRAPHDEFS.get(key)
    if graphdef is None:
        graphdef = _remember(key, nnx.graphdef(nnx.eval_shape(lambda: cls(*args, **kwargs, rngs=nnx.Rngs(params=0)))))
    return graphdef


def merge(graphdef: nnx.GraphDef, params: Params) -> nnx.Module:
    """The module of ``graphdef`` holding ``params`` (a pure dict or an ``nnx.State``)."""
    return nnx.merge(graphdef, params)
