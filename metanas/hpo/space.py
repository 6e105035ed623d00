"""Declarative hyperparameter search spaces: numeric (linear or log scale), integer, categorical, conditional.

A space is declared in config as a list of parameter specs (``train.space`` of the HPO experiments)::

    - {name: optimizer.learning_rate, type: float, low: 1.0e-4, high: 0.3, log: true}
    - {name: train.hidden, type: int, low: 4, high: 128, log: true}
    - {name: optimizer, type: categorical, choices: [adam, sgd]}
    - {name: optimizer.momentum, type: float, low: 0.0, high: 0.99, condition: {optimizer: [sgd]}}

``condition: {parent: [values...]}`` makes a parameter active only when every named parent is active and
takes one of the listed values (SMAC/ConfigSpace "InCondition"). Parents must be declared before children.
A configuration is a plain ``dict[name, value]`` holding the active parameters only; ``to_overrides`` turns
it into Hydra command-line overrides (``name=value``), so any metanas config key can be searched.

Host-side numpy only. Randomness comes from an explicit ``np.random.Generator`` (seeded per step by the
caller, e.g. ``np.random.default_rng([seed, step])``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

INACTIVE = -1.0  # encoding of an inactive parameter (outside the unit interval of active values)


class SpaceError(ValueError):
    """A search-space declaration that cannot be used; one line naming the parameter and what is expected."""


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter. ``low/high`` for float/int, ``choices`` for categorical."""

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    condition: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # ((parent, allowed values), ...)

    @property
    def width(self) -> int:
        """Columns of this parameter in ``HyperparameterSpace.encode``."""
        return len(self.choices) if self.type == "categorical" else 1

    def sample(self, rng: np.random.Generator) -> Any:
        if self.type == "categorical":
            return self.choices[int(rng.integers(len(self.choices)))]
        return self.from_unit(float(rng.uniform()))

    def from_unit(self, u: float) -> Any:
        """Map ``u`` in [0, 1] to a value (log or linear scale); ints round to the nearest integer."""
        v = float(self.unit_value(np.float64(u)))
        return int(v) if self.type == "int" else v

    def to_unit(self, v: Any) -> float:
        return float(self.unit_of(np.float64(v)))

    def unit_value(self, u, xp=np):
        """``from_unit`` on arrays of the array module ``xp`` (numpy, or ``jax.numpy`` inside jit)."""
        lo, hi = float(self.low), float(self.high)
        v = xp.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if self.log else lo + u * (hi - lo)
        return xp.clip(xp.round(v) if self.type == "int" else v, lo, hi)

    def unit_of(self, v, xp=np):
        """``to_unit`` on arrays of the array module ``xp``."""
        lo, hi = float(self.low), float(self.high)
        if hi == lo:
            return xp.full_like(v, 0.5)
        if self.log:
            return (xp.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (v - lo) / (hi - lo)


@dataclass(frozen=True)
class HyperparameterSpace:
    """An ordered tuple of parameters; parents come before the parameters conditioned on them."""

    params: tuple[Hyperparameter, ...]
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(p.name for p in self.params))
        seen: dict[str, Hyperparameter] = {}
        for p in self.params:
            if p.name in seen:
                raise SpaceError(f"parameter '{p.name}' is declared twice; names must be unique")
            for parent, values in p.condition:
                if parent not in seen:
                    raise SpaceError(f"parameter '{p.name}' is conditioned on '{parent}', which is not declared "
                                     f"before it; declare parents first")
                par = seen[parent]
                if par.type == "categorical":
                    bad = [v for v in values if v not in par.choices]
                    if bad:
                        raise SpaceError(f"condition of '{p.name}': {bad} not among the choices {list(par.choices)} "
                                         f"of '{parent}'")
            seen[p.name] = p

    @property
    def width(self) -> int:
        return sum(p.width for p in self.params)

    def is_active(self, p: Hyperparameter, config: Mapping[str, Any]) -> bool:
        return all(parent in config and config[parent] in values for parent, values in p.condition)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One configuration with exactly the active parameters set."""
        config: dict[str, Any] = {}
        for p in self.params:
            if self.is_active(p, config):
                config[p.name] = p.sample(rng)
        return config

    def validate(self, config: Mapping[str, Any]) -> None:
        """Raise ``SpaceError`` if ``config`` sets an inactive/unknown parameter or misses an active one."""
        unknown = [k for k in config if k not in self.names]
        if unknown:
            raise SpaceError(f"configuration sets unknown parameter(s) {unknown}; the space has {list(self.names)}")
        for p in self.params:
            active = self.is_active(p, config)
            if active and p.name not in config:
                raise SpaceError(f"configuration misses active parameter '{p.name}'")
            if not active and p.name in config:
                raise SpaceError(f"configuration sets '{p.name}', which is inactive under its condition {p.condition}")

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """float32 [width]: numeric -> unit interval (log scale where declared), categorical -> one-hot,
        inactive -> ``INACTIVE`` (numeric) or all zeros (categorical)."""
        out = []
        for p in self.params:
            if p.type == "categorical":
                out.extend(float(p.name in config and config[p.name] == c) for c in p.choices)
            else:
                out.append(p.to_unit(config[p.name]) if p.name in config else INACTIVE)
        return np.asarray(out, np.float32)

    def column_groups(self) -> list[tuple[str, slice]]:
        """The encode() columns of each parameter: [(name, slice)]."""
        groups, i = [], 0
        for p in self.params:
            groups.append((p.name, slice(i, i + p.width)))
            i += p.width
        return groups


def config_key(config: Mapping[str, Any]) -> str:
    """A canonical string of a configuration (cache key, de-duplication)."""
    return ",".join(f"{k}={config[k]!r}" for k in sorted(config))


def to_overrides(config: Mapping[str, Any]) -> list[str]:
    """Hydra command-line overrides ``name=value`` (floats with full precision)."""
    out = []
    for k, v in config.items():
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, float):
            v = repr(v)
        out.append(f"{k}={v}")
    return out


_KEYS = {"name", "type", "low", "high", "log", "choices", "condition"}


def param_from_dict(d: Mapping[str, Any]) -> Hyperparameter:
    """Parse one declared parameter; errors name the parameter and the rule it breaks."""
    d = dict(d)
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise SpaceError(f"search-space entry {d} needs a 'name' (the config key to set, e.g. optimizer.learning_rate)")
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        raise SpaceError(f"parameter '{name}': unknown key(s) {unknown}; valid keys: {sorted(_KEYS)}")
    kind = d.get("type")
    if kind not in ("float", "int", "categorical"):
        raise SpaceError(f"parameter '{name}': type={kind!r}; expected one of 'float', 'int', 'categorical'")
    cond = d.get("condition") or {}
    if not isinstance(cond, Mapping):
        raise SpaceError(f"parameter '{name}': condition must be a mapping {{parent: [values]}}, got {cond!r}")
    condition = tuple((str(k), tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else (v,))
                      for k, v in cond.items())
    if kind == "categorical":
        choices = d.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or len(choices) < 1:
            raise SpaceError(f"parameter '{name}': categorical needs a non-empty list 'choices'")
        if "low" in d or "high" in d or d.get("log"):
            raise SpaceError(f"parameter '{name}': categorical takes 'choices', not low/high/log")
        return Hyperparameter(name, "categorical", choices=tuple(choices), condition=condition)
    lo, hi, log = d.get("low"), d.get("high"), bool(d.get("log", False))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
        raise SpaceError(f"parameter '{name}': {kind} needs numeric 'low' and 'high', got low={lo!r}, high={hi!r}")
    if lo > hi:
        raise SpaceError(f"parameter '{name}': low={lo} > high={hi}")
    if log and lo <= 0:
        raise SpaceError(f"parameter '{name}': log scale needs low > 0, got low={lo}")
    if "choices" in d:
        raise SpaceError(f"parameter '{name}': {kind} takes low/high, not 'choices'")
    return Hyperparameter(name, kind, low=float(lo), high=float(hi), log=log, condition=condition)


def space_from_config(entries: Sequence[Mapping[str, Any]]) -> HyperparameterSpace:
    """Build a ``HyperparameterSpace`` from the list declared in config (OmegaConf containers are accepted)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(entries):
            entries = OmegaConf.to_container(entries, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise SpaceError("the search space must be a non-empty list of parameter specs "
                         "({name, type: float|int|categorical, ...})")
    return HyperparameterSpace(tuple(param_from_dict(e) for e in entries))
