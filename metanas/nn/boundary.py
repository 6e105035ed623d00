"""The one pure boundary: from a flax NNX module to ``init(key) -> params`` and ``apply(params, x)``.

``metanas.meta`` (MAML, FOMAML, ANIL, Meta-SGD, Reptile, MetaNAS) and ``metanas.search`` import nothing from flax:
they take an apply function over a pytree of parameters. ``pure`` builds that pair for ANY NNX module ("bring
your own model")::

    init, apply = pure(lambda rngs: MyNet(rngs=rngs))
    params = init(jax.random.key(0))        # nested dict of arrays (nnx.to_pure_dict of the nnx.Param state)
    logits = apply(params, x)                # nnx.merge(graphdef, params)(x), pure and jittable

``params`` is a plain nested dict (``{"layer": {"kernel": ..., "bias": ...}}``; an ``nnx.List`` gives int keys), so
dict-based algorithms (ANIL's ``head`` key, Meta-SGD's per-parameter step sizes) and checkpoints see ordinary
pytrees. The graph definition ``nnx.merge`` needs is held by the ``Pure`` object the pair closes over: captured by
its first ``init``, or (an ``apply`` before any ``init``, e.g. of restored params) built once abstractly.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from metanas.nn.types import ApplyFn, InitFn, Params


class Pure:
    """The module ``make(rngs)`` as pure state: ``init(key)`` gives one pure dict per filter of ``filters`` (default:
    ``nnx.Param`` only; a variable no filter takes is an error), ``merge(*states)`` the module holding them."""

    def __init__(self, make: Callable[[nnx.Rngs], nnx.Module], filters: tuple = (nnx.Param,)):
        self.make, self.filters, self.graphdef = make, tuple(filters), None

    def init(self, key: jax.Array) -> tuple[Params, ...]:
        graphdef, *states, rest = nnx.split(self.make(nnx.Rngs(params=key)), *self.filters, ...)
        if jax.tree.leaves(rest):
            kinds = sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=_is_var)})
            raise TypeError(f"this module holds {kinds} besides {[getattr(f, '__name__', f) for f in self.filters]}; "
                            "pass those variable types as filters")
        if self.graphdef is None:
            self.graphdef = graphdef
        return tuple(nnx.to_pure_dict(s) for s in states)

    def merge(self, *states: Params) -> nnx.Module:
        if self.graphdef is None:  # merge before init (e.g. restored params): build the structure abstractly, once
            self.graphdef = nnx.graphdef(nnx.eval_shape(lambda: self.make(nnx.Rngs(params=0))))
        return nnx.merge(self.graphdef, *states)


def pure(make: Callable[[nnx.Rngs], nnx.Module], *, method: str = "__call__") -> tuple[InitFn, ApplyFn]:
    """``(init, apply)`` for the module ``make(rngs)`` builds (``nnx.Param`` state only); ``method``: the module
    method ``apply`` calls."""
    module = Pure(make)

    def init(key: jax.Array) -> Params:
        return module.init(key)[0]

    def apply(params: Params, x: jax.Array) -> jax.Array:
        return getattr(module.merge(params), method)(x)

    return init, apply


def _is_var(x) -> bool:
    return isinstance(x, nnx.Variable)
